"""MAML-TRPO, RL², fine-tuning, random-init and the oracle on 2D navigation, 3 seeds each.

Every algorithm trains with its packaged config (``maml-trpo/2d-navigation``,
``rl2/2d-navigation``, ``finetune/2d-navigation`` for finetune, random-init and the oracle;
files under ``src/fastadapt/configs/``) for the same budget of training env steps
(``--train-steps``, default 800,000: MAML-TRPO 10 iterations of 20 tasks x 20 episodes
x 100 steps before and after adaptation; finetune and oracle 20 pretraining iterations of
20 x 20 x 100; RL² 50 iterations of 20 tasks x 4 trials x 2 episodes x 100 steps;
random-init none), then is evaluated on the same 40 held-out goals: 3 gradient steps of
20 episodes each for the gradient-based methods, the 2 episodes of a trial for RL². It prints
the markdown table of ``fastadapt compare`` (runs of one algorithm pooled over seeds), writes
the figure, and ends with one JSON line.

The budget is small: the benchmark compares the methods early in training, not at convergence
(MAML's published 2D-navigation figures use 500 iterations; RL² typically needs far more
samples than 0.8M steps).

    python benchmarks/compare_navigation.py [--seeds 1,2,3] [--train-steps 800000]
        [--out runs/bench-compare-navigation]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.transfer.algorithm import FinetuneConfig
from fastadapt.config import TrainConfig
from fastadapt.evaluation.protocol import evaluate_run
from fastadapt.plots import compare_runs, group_runs
from fastadapt.run.config_loading import load_train_config
from fastadapt.run.rundir import POLICY_FILE
from fastadapt.run.trainer import train

FINETUNE = "finetune/2d-navigation"
ALGORITHMS = {
    "maml-trpo": "maml-trpo/2d-navigation",
    "rl2": "rl2/2d-navigation",
    "finetune": FINETUNE,
    "random-init": FINETUNE,
    "oracle": FINETUNE,
}


def steps_per_iteration(config: TrainConfig, horizon: int = 100) -> int:
    """Training env steps of one iteration (an upper bound: episodes may end early)."""
    section = config.section
    if isinstance(section, MAMLConfig):  # maml-trpo
        return section.tasks_per_iteration * section.episodes_per_task * horizon * (
            section.adaptation_steps + 1)
    if isinstance(section, RL2Config):
        return (section.tasks_per_iteration * section.trials_per_task
                * section.episodes_per_trial * horizon)
    assert isinstance(section, FinetuneConfig)  # finetune, random-init, oracle
    return section.tasks_per_iteration * section.episodes_per_task * horizon


def run_one(algorithm: str, seed: int, args: argparse.Namespace) -> tuple[Path, float]:
    """Train (unless already done) and evaluate one run; returns its directory and seconds."""
    overrides = [f"algorithm={algorithm}", f"run.seed={seed}", "run.tensorboard=false"]
    config = load_train_config(ALGORITHMS[algorithm], overrides)
    iterations = max(1, args.train_steps // steps_per_iteration(config))
    config = load_train_config(ALGORITHMS[algorithm],
                               [*overrides, f"run.iterations={iterations}",
                                f"run.checkpoint_every={iterations}"])
    run_dir = Path(args.out) / f"{algorithm}-seed{seed}"
    start = time.perf_counter()
    if not (run_dir / POLICY_FILE).exists():
        train(config, run_dir, resume=(run_dir / "checkpoints").exists(), show_progress=False)
    seconds = time.perf_counter() - start
    steps = None if algorithm == "rl2" else args.adaptation_steps
    evaluate_run(run_dir, args.tasks, steps, args.episodes, seed=0)
    return run_dir, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--train-steps", type=int, default=800_000,
                        help="training env steps per run (iterations are derived from it)")
    parser.add_argument("--tasks", type=int, default=40, help="held-out goals")
    parser.add_argument("--adaptation-steps", type=int, default=3,
                        help="gradient steps at meta-test (not RL²)")
    parser.add_argument("--episodes", type=int, default=20,
                        help="episodes per task and step (RL²: trials per task)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--out", default="runs/bench-compare-navigation")
    args = parser.parse_args()
    runs: list[Path] = []
    seconds: dict[str, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for algorithm in args.algorithms.split(","):
            run_dir, elapsed = run_one(algorithm, seed, args)
            runs.append(run_dir)
            seconds.setdefault(algorithm, []).append(elapsed)
            print(f"{algorithm} seed {seed}: {elapsed:.0f} s", flush=True)
    figure, table = compare_runs(runs, Path(args.out) / "compare.png")
    print(table)
    print(f"figure: {figure}")
    summary = {}
    for group in group_runs(runs):
        mean, ci = group.mean_ci()
        summary[group.algorithm] = {
            "return_before": round(float(mean[0]), 2), "ci_before": round(float(ci[0]), 2),
            "return_after": round(float(mean[-1]), 2), "ci_after": round(float(ci[-1]), 2),
            "episodes_used": group.experience[-1], "runs": len(group.runs),
            "train_seconds_mean": round(float(np.mean(seconds[group.algorithm])), 1),
        }
    print(json.dumps({"benchmark": "compare_navigation", "train_steps": args.train_steps,
                      "held_out_tasks": args.tasks, "results": summary}))


if __name__ == "__main__":
    main()
