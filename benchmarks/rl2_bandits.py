"""RL² on Bernoulli bandits next to Gittins indices, UCB1, Thompson sampling and random play.

For each setting (K arms, n pulls per trial; arm means ~ U[0, 1], Duan et al. 2016, §4.1) the
script trains RL² with ``configs/rl2/bandit-k5.yaml`` (``env.kwargs.num_arms = K``,
``rl2.episodes_per_trial = n``; one episode = one pull), evaluates it on the fixed held-out
bandits (``--trials`` trials per bandit) and runs the finite-horizon Gittins index policy
(near Bayes-optimal under the uniform prior), UCB1 (Auer et al. 2002) and Thompson sampling
with a Beta(1, 1) prior on the *same* bandits (:mod:`fastadapt.bandit_baselines`). It prints
a markdown table of the total reward per trial (mean ± 95% CI over bandits) and the regret
``n * max_a mu_a - reward``, then one JSON line.

Duan et al. 2016, Table 1 reports the same quantities; their figures are not reproduced here
because we could not check them against the paper, so the table has no "paper" column: the
Gittins column is the benchmark's own near-optimal reference (compare by hand with Table 1 of
arXiv:1611.02779).

For n > 10 the rewards are scaled by ``--reward-scale-long`` (0.1) in the update: a trial's
return is then ~n/2, and unscaled value targets of that size keep RL² at the random level
(measured: 150 iterations at n = 100 with scale 1.0 stayed at 0.50 per pull, with 0.1 it rose to
0.65-0.73).

Budget (2 cores, ``run.num_threads = 1``): about 0.25 s per iteration at n = 10 and 1.5 s at
n = 100 (32 bandits x 8 trials per iteration); the defaults take about 30 minutes in all.

    python benchmarks/rl2_bandits.py [--settings 5x10,10x10,5x100,10x100]
        [--iterations-short 400] [--iterations-long 500] [--out runs/bench-rl2-bandits]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from fastadapt.bandit_baselines import gittins, thompson, ucb1
from fastadapt.evaluate import evaluate_run
from fastadapt.run.config import load_config
from fastadapt.run.schema import TrainConfig
from fastadapt.run.train import train


def _summary(totals: np.ndarray, best: np.ndarray) -> dict[str, float]:
    ci = 1.96 * totals.std(ddof=1) / math.sqrt(len(totals))
    return {"reward": float(totals.mean()), "ci95": float(ci),
            "regret": float((best - totals).mean())}


def run_setting(arms: int, pulls: int, iterations: int, args: argparse.Namespace
                ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Train and evaluate RL² on (K, n); run the baselines on the same held-out bandits."""
    overrides = [f"env.kwargs.num_arms={arms}", f"rl2.episodes_per_trial={pulls}",
                 f"run.iterations={iterations}",
                 f"run.seed={args.seed}", "run.tensorboard=false",
                 f"run.checkpoint_every={iterations}"]
    if pulls > 10:  # trial returns ~ n / 2: keep the value loss from swamping the policy's
        overrides.append(f"rl2.reward_scale={args.reward_scale_long}")
    config = load_config(TrainConfig, "configs/rl2/bandit-k5.yaml", overrides)
    run_dir = Path(args.out) / f"k{arms}-n{pulls}"
    start = time.perf_counter()
    train(config, run_dir, resume=(run_dir / "checkpoints").exists(), show_progress=False)
    seconds = time.perf_counter() - start
    path = evaluate_run(run_dir, args.tasks, pulls - 1, args.trials, seed=0)
    evaluation = json.loads(path.read_text())
    means = np.array([task["means"] for task in evaluation["tasks"]])
    best = pulls * means.max(axis=1)
    rl2 = np.array(evaluation["per_task_returns"]).sum(axis=1)  # reward per trial, [N]
    rng = np.random.default_rng(args.seed)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    budget = {"arms": arms, "pulls": pulls, "iterations": iterations,
              "env_steps": metrics[-1]["env_steps"], "train_seconds": round(seconds, 1)}
    return budget, {
        "rl2": _summary(rl2, best),
        "ucb1": _summary(ucb1(means, pulls, args.baseline_runs, rng), best),
        "thompson": _summary(thompson(means, pulls, args.baseline_runs, rng), best),
        "gittins": _summary(gittins(means, pulls, args.baseline_runs, rng), best),
        "random": _summary(pulls * means.mean(axis=1), best),
    }


def _cell(entry: dict[str, float]) -> str:
    return f"{entry['reward']:.2f} ± {entry['ci95']:.2f} (regret {entry['regret']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="5x10,10x10,5x100,10x100",
                        help="comma-separated KxN: arms x pulls per trial")
    parser.add_argument("--iterations-short", type=int, default=400, help="iterations, n <= 10")
    parser.add_argument("--iterations-long", type=int, default=500, help="iterations, n > 10")
    parser.add_argument("--reward-scale-long", type=float, default=0.1,
                        help="rl2.reward_scale for n > 10 (1.0 for n <= 10)")
    parser.add_argument("--tasks", type=int, default=500, help="held-out bandits")
    parser.add_argument("--trials", type=int, default=4, help="RL² trials per held-out bandit")
    parser.add_argument("--baseline-runs", type=int, default=20, help="UCB1/TS runs per bandit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-rl2-bandits", help="run directories")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    print("| K | n | RL² | Gittins (FH) | UCB1 | Thompson | random | RL² training |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        arms, pulls = (int(x) for x in setting.lower().split("x"))
        iterations = args.iterations_short if pulls <= 10 else args.iterations_long
        budget, scores = run_setting(arms, pulls, iterations, args)
        results.append({**budget, **scores})
        names = ("rl2", "gittins", "ucb1", "thompson", "random")
        cells = " | ".join(_cell(scores[name]) for name in names)
        print(f"| {arms} | {pulls} | {cells} | {iterations} it, {int(budget['env_steps']):,} "
              f"pulls, {budget['train_seconds']} s |", flush=True)
    print(json.dumps({"benchmark": "rl2_bandits", "held_out_bandits": args.tasks,
                      "results": results}))


if __name__ == "__main__":
    main()
