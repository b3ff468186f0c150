"""The MAML family on one protocol: MAML-TRPO, MAML-VPG, MAML-PPO, ProMP and Meta-SGD.

Every algorithm trains with its config (``configs/<algorithm>/<env>.yaml``) for the same number
of meta-iterations, hence the same training samples (20 tasks x 20 episodes before and after
adaptation per iteration), on each environment and seed; then is evaluated on the same 40
held-out tasks with 3 inner steps of 20 episodes. Prints, per environment, the markdown table
of ``fastadapt compare`` (return before / after 1 step / after 3 steps, mean ± 95% CI over
seed x task pairs, seconds per iteration), writes one figure per environment, and ends with
one JSON line.

    python benchmarks/compare_maml_family.py [--envs 2d-navigation,bandit-k5] [--seeds 1,2,3]
        [--iterations 50] [--algorithms maml-trpo,maml-vpg,maml-ppo,promp,meta-sgd]
        [--set key=value ...] [--out runs/bench-maml-family]

MAML-TRPO runs with ``trpo.fvp_subsample=0.1`` (the demo's setting; README: same returns).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fastadapt.evaluate import evaluate_run
from fastadapt.plots import compare_runs, group_runs
from fastadapt.run.config import load_config
from fastadapt.run.schema import TrainConfig
from fastadapt.run.train import POLICY_FILE, train

ALGORITHMS = ("maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd")
EXTRA = {"maml-trpo": ["trpo.fvp_subsample=0.1"]}


def run_one(algorithm: str, env: str, seed: int, args: argparse.Namespace) -> Path:
    """Train (unless already done) and evaluate one run; returns its directory."""
    overrides = [f"run.seed={seed}", "run.tensorboard=false", f"run.iterations={args.iterations}",
                 f"run.checkpoint_every={args.iterations}", *EXTRA.get(algorithm, []),
                 *args.set]
    config = load_config(TrainConfig, f"configs/{algorithm}/{env}.yaml", overrides)
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
                        help="override applied to every run (e.g. maml.adaptation_steps=2)")
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
