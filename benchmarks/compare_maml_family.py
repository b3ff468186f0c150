"""The MAML family on one protocol: MAML-TRPO, MAML-VPG, MAML-PPO, ProMP and Meta-SGD.

Every algorithm trains with its packaged config ``<algorithm>/<env>``
(``src/fastadapt/configs/<algorithm>/<env>.yaml``) for the same number of meta-iterations,
hence the same training samples (20 tasks x 20 episodes before and after adaptation per
iteration), on each environment and seed; then is evaluated on the same 40 held-out tasks
with 3 inner steps of 20 episodes. Prints, per environment, the markdown table of
``fastadapt compare`` (return before / after 1 step / after 3 steps, mean ± 95% CI over
seed x task pairs, seconds per iteration), writes one figure per environment, and ends with
one JSON line.

    python benchmarks/compare_maml_family.py [--envs 2d-navigation,bandit-k5] [--seeds 1,2,3]
        [--iterations 50] [--algorithms maml-trpo,maml-vpg,maml-ppo,promp,meta-sgd]
        [--set key=value ...] [--out runs/bench-maml-family]

Each ``--set`` goes to every run, except that a key under an algorithm's own section
(``promp.init_kl_coef=1e-3``) goes to that algorithm's runs only, and a key under ``maml.``
(``maml.adaptation_steps=2``) goes to each run's own section, which holds the MAML keys
(``maml-trpo.adaptation_steps=2``, ``promp.adaptation_steps=2``, ...).

MAML-TRPO runs with ``maml-trpo.trpo.fvp_subsample=0.1`` (the demo's setting; README: same
returns).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fastadapt.evaluation.protocol import evaluate_run
from fastadapt.plots import compare_runs, group_runs
from fastadapt.run.config_loading import load_train_config
from fastadapt.run.rundir import POLICY_FILE
from fastadapt.run.trainer import train

ALGORITHMS = ("maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd")
EXTRA = {"maml-trpo": ["maml-trpo.trpo.fvp_subsample=0.1"]}
SHARED_SECTION = "maml."
"""``--set`` prefix standing for each run's own section (the MAML keys every section holds)."""


def overrides_for(algorithm: str, overrides: list[str]) -> list[str]:
    """The ``--set`` overrides that apply to ``algorithm``'s runs: ``maml.KEY`` becomes
    ``<algorithm>.KEY``; a key under another algorithm's section is left out."""
    kept = []
    for override in overrides:
        if override.startswith(SHARED_SECTION):
            kept.append(algorithm + "." + override[len(SHARED_SECTION):])
        elif override.split(".", 1)[0] not in ALGORITHMS or override.startswith(algorithm + "."):
            kept.append(override)
    return kept


def run_one(algorithm: str, env: str, seed: int, args: argparse.Namespace) -> Path:
    """Train (unless already done) and evaluate one run; returns its directory."""
    overrides = [f"run.seed={seed}", "run.tensorboard=false", f"run.iterations={args.iterations}",
                 f"run.checkpoint_every={args.iterations}", *EXTRA.get(algorithm, []),
                 *overrides_for(algorithm, args.set)]
    config = load_train_config(f"{algorithm}/{env}", overrides)
    run_dir = Path(args.out) / env / f"{algorithm}-seed{seed}"
    if not (run_dir / POLICY_FILE).exists():
        train(config, run_dir, resume=(run_dir / "checkpoints").exists(), show_progress=False)
    evaluate_run(run_dir, args.tasks, args.adaptation_steps, args.episodes, seed=0)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="2d-navigation,bandit-k5")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--tasks", type=int, default=40, help="held-out tasks")
    parser.add_argument("--adaptation-steps", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and step")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override of every run (e.g. maml.adaptation_steps=2; see above)")
    parser.add_argument("--out", default="runs/bench-maml-family")
    args = parser.parse_args()
    summary: dict[str, dict[str, object]] = {}
    for env in args.envs.split(","):
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            for algorithm in args.algorithms.split(","):
                start = time.perf_counter()
                runs.append(run_one(algorithm, env, seed, args))
                print(f"{env} {algorithm} seed {seed}: {time.perf_counter() - start:.0f} s",
                      flush=True)
        figure, table = compare_runs(runs, Path(args.out) / env / "compare.png")
        print(f"\n{env} ({args.iterations} iterations, seeds {args.seeds})\n{table}\n"
              f"figure: {figure}\n", flush=True)
        for group in group_runs(runs):
            mean, ci = group.mean_ci()
            summary.setdefault(env, {})[group.algorithm] = {
                "returns": [round(float(m), 2) for m in mean],
                "ci95": [round(float(c), 2) for c in ci],
                "seconds_per_iteration": group.seconds_per_iteration,
                "runs": len(group.runs),
            }
    print(json.dumps({"benchmark": "compare_maml_family", "iterations": args.iterations,
                      "held_out_tasks": args.tasks, "results": summary}))


if __name__ == "__main__":
    main()
