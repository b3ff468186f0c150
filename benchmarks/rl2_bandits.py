"""RL² on Bernoulli bandits next to Gittins indices, UCB1, Thompson sampling and random play.

For each setting (K arms, n pulls per trial; arm means ~ U[0, 1], Duan et al. 2016, §4.1) the
script trains RL² with the packaged config ``rl2/bandit-k5`` for n <= 10 and
``rl2/bandit-k5-n100`` for longer trials (``src/fastadapt/configs/rl2/``;
``env.kwargs.num_arms = K``, ``rl2.episodes_per_trial = n``; one episode = one pull),
evaluates it on the fixed held-out bandits (``--trials`` trials per bandit) and runs the
finite-horizon Gittins index policy (near Bayes-optimal under the uniform prior), UCB1 (Auer et
al. 2002; ``c = 1``), UCB1 with its coefficient tuned on separate training bandits
(:func:`~fastadapt.baselines.bandits.tune_ucb1`) and Thompson sampling with a Beta(1, 1) prior
on the *same* bandits (:mod:`fastadapt.baselines.bandits`). It prints a markdown table of the
total reward per trial (mean ± 95% CI over bandits) and the regret ``n * max_a mu_a - reward``,
then Duan et al.'s figures for the same settings, then one JSON line.

``DUAN_TABLE1`` holds Duan et al. 2016 (arXiv:1611.02779), Table 1: total reward per trial of
random play, Gittins, Thompson sampling, (tuned) UCB1 and RL². We took it from the transcription
in lucaslingle/pytorch_rl2's README; the relearn project's README independently quotes the
paper's UCB1 at K = 5, n = 10 as 6.7. The authors' evaluation script (rllab
``sandbox/rocky/neural_learner``) tunes UCB1's ``c`` over 0.0, 0.1, ..., 1.0 with Beta(1, 1)
pseudo-counts, which is what ``tune_ucb1`` does; with ``c = 1`` UCB1 explores far more.

The long-trial config scales rewards by 0.1 in the update (``rl2.reward_scale``; a trial's
return is ~n/2, too large for unscaled value targets), does not discount within the trial
(``rl2.gamma`` 1.0, ``rl2.gae_lambda`` 0.95), takes 8 PPO epochs (``rl2.ppo.epochs``), feeds
the GRU the fraction of the trial's pulls taken (``rl2.time_input``) and adds an entropy bonus
of 0.01 (``rl2.ppo.entropy_coef``); docs/rl2-experiments.md records the runs behind these
settings and their results. ``benchmarks/rl2_bandit_exploration.py`` shows where the
remaining reward goes (arms tried, late pulls on the best arm, against Gittins). Both configs
train with ``run.num_threads = 1``.

    python benchmarks/rl2_bandits.py [--settings 5x10,10x10,5x100,10x100]
        [--iterations-short 600] [--iterations-long 800] [--out runs/bench-rl2-bandits]
    python benchmarks/rl2_bandits.py --baselines-of RUN_DIR   # baselines on a run's bandits
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.baselines.bandits import gittins, thompson, tune_ucb1, ucb1
from fastadapt.evaluation.protocol import evaluate_run
from fastadapt.run.config_loading import load_train_config
from fastadapt.run.trainer import train

DUAN_TABLE1: dict[tuple[int, int], dict[str, float]] = {
    # (K, n): total reward per trial, Duan et al. 2016, Table 1
    (5, 10): {"random": 5.0, "gittins": 6.6, "thompson": 5.7, "ucb1": 6.7, "rl2": 6.7},
    (10, 10): {"random": 5.0, "gittins": 6.6, "thompson": 5.5, "ucb1": 6.7, "rl2": 6.7},
    (50, 10): {"random": 5.1, "gittins": 6.5, "thompson": 5.2, "ucb1": 6.6, "rl2": 6.8},
    (5, 100): {"random": 49.9, "gittins": 78.3, "thompson": 74.7, "ucb1": 78.0, "rl2": 78.7},
    (10, 100): {"random": 49.9, "gittins": 82.8, "thompson": 76.7, "ucb1": 82.4, "rl2": 83.5},
    (50, 100): {"random": 49.8, "gittins": 85.2, "thompson": 64.5, "ucb1": 84.3, "rl2": 84.9},
    (5, 500): {"random": 249.8, "gittins": 405.8, "thompson": 402.0, "ucb1": 405.8, "rl2": 401.6},
    (10, 500): {"random": 249.0, "gittins": 437.8, "thompson": 429.5, "ucb1": 437.1, "rl2": 432.5},
    (50, 500): {"random": 249.6, "gittins": 463.7, "thompson": 427.2, "ucb1": 457.6, "rl2": 438.9},
}
"""Duan et al. 2016, Table 1 (see the module docstring for the source)."""


def train_and_evaluate(config_path: str, overrides: list[str], run_dir: Path, tasks: int,
                       trials: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Train RL² (resuming a finished run is a no-op), evaluate it on ``tasks`` held-out tasks
    with ``trials`` trials each; ``(evaluation.json, {"env_steps", "train_seconds"})``.
    ``config_path`` is a config file or a packaged config's name (``rl2/bandit-k5``)."""
    config = load_train_config(config_path, overrides)
    rl2 = config.section
    assert isinstance(rl2, RL2Config), f"{config_path}: not an RL² config"
    start = time.perf_counter()
    train(config, run_dir, resume=(run_dir / "checkpoints").exists(), show_progress=False)
    seconds = time.perf_counter() - start
    path = evaluate_run(run_dir, tasks, rl2.episodes_per_trial - 1, trials, seed=0)
    metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(path.read_text()), {"env_steps": json.loads(metrics[-1])["env_steps"],
                                          "train_seconds": round(seconds, 1)}


def summary(totals: np.ndarray, best: np.ndarray) -> dict[str, float]:
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
    config = "rl2/bandit-k5" if pulls <= 10 else "rl2/bandit-k5-n100"
    evaluation, cost = train_and_evaluate(config, overrides,
                                          Path(args.out) / f"k{arms}-n{pulls}", args.tasks,
                                          args.trials)
    c, scores = baselines(evaluation, args.baseline_runs, args.seed)
    budget = {"arms": arms, "pulls": pulls, "iterations": iterations, **cost, "ucb1_tuned_c": c}
    return budget, scores


def baselines(evaluation: dict[str, Any], runs: int, seed: int
              ) -> tuple[float, dict[str, dict[str, float]]]:
    """RL²'s total reward per trial (``evaluation.json`` of an RL² bandit run) and the reference
    strategies' on the same held-out bandits; returns UCB1's tuned ``c`` and the scores."""
    means = np.array([task["means"] for task in evaluation["tasks"]])
    pulls = len(evaluation["returns_mean"])  # one episode = one pull
    arms = means.shape[1]
    best = pulls * means.max(axis=1)
    rl2 = np.array(evaluation["per_task_returns"]).sum(axis=1)  # reward per trial, [N]
    rng = np.random.default_rng(seed)
    c = tune_ucb1(arms, pulls, len(means), runs, rng)
    return c, {
        "rl2": summary(rl2, best),
        "ucb1": summary(ucb1(means, pulls, runs, rng), best),
        "ucb1_tuned": summary(ucb1(means, pulls, runs, rng, c, prior_counts=True), best),
        "thompson": summary(thompson(means, pulls, runs, rng), best),
        "gittins": summary(gittins(means, pulls, runs, rng), best),
        "random": summary(pulls * means.mean(axis=1), best),
    }


def cell(entry: dict[str, float]) -> str:
    return f"{entry['reward']:.2f} ± {entry['ci95']:.2f} (regret {entry['regret']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="5x10,10x10,5x100,10x100",
                        help="comma-separated KxN: arms x pulls per trial")
    parser.add_argument("--iterations-short", type=int, default=600, help="iterations, n <= 10")
    parser.add_argument("--iterations-long", type=int, default=800, help="iterations, n > 10")
    parser.add_argument("--tasks", type=int, default=500, help="held-out bandits")
    parser.add_argument("--trials", type=int, default=4, help="RL² trials per held-out bandit")
    parser.add_argument("--baseline-runs", type=int, default=20, help="UCB1/TS runs per bandit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-rl2-bandits", help="run directories")
    parser.add_argument("--baselines-of", metavar="RUN_DIR",
                        help="train nothing: the reference strategies on the held-out bandits "
                             "of an evaluated RL² bandit run (e.g. one seed of a sweep)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.baselines_of:
        evaluation = json.loads((Path(args.baselines_of) / "evaluation.json").read_text())
        c, scores = baselines(evaluation, args.baseline_runs, args.seed)
        for name, entry in scores.items():
            print(f"| {name} | {cell(entry)} |")
        print(f"UCB1's tuned c: {c}")
        return
    results = []
    print("| K | n | RL² | Gittins (FH) | UCB1 (c tuned) | UCB1 (c = 1) | Thompson | random "
          "| RL² training |")
    print("|---|---|---|---|---|---|---|---|---|")
    settings = []
    for setting in args.settings.split(","):
        arms, pulls = (int(x) for x in setting.lower().split("x"))
        iterations = args.iterations_short if pulls <= 10 else args.iterations_long
        budget, scores = run_setting(arms, pulls, iterations, args)
        results.append({**budget, **scores})
        settings.append((arms, pulls))
        names = ("rl2", "gittins", "ucb1_tuned", "ucb1", "thompson", "random")
        cells = " | ".join(cell(scores[name]) for name in names)
        print(f"| {arms} | {pulls} | {cells} | {iterations} it, {int(budget['env_steps']):,} "
              f"pulls, {budget['train_seconds']} s; UCB1 c = {budget['ucb1_tuned_c']} |",
              flush=True)
    print("\nDuan et al. 2016, Table 1 (total reward per trial):\n")
    print("| K | n | RL² | Gittins | UCB1 (tuned) | Thompson | random |")
    print("|---|---|---|---|---|---|---|")
    for arms, pulls in settings:
        paper = DUAN_TABLE1.get((arms, pulls))
        if paper is not None:
            cells = " | ".join(f"{paper[name]}" for name in
                               ("rl2", "gittins", "ucb1", "thompson", "random"))
            print(f"| {arms} | {pulls} | {cells} |")
    print(json.dumps({"benchmark": "rl2_bandits", "held_out_bandits": args.tasks,
                      "results": results,
                      "duan_table1": {f"{k}x{n}": DUAN_TABLE1.get((k, n)) for k, n in settings}}))


if __name__ == "__main__":
    main()
