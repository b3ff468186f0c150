"""RL² on random tabular MDPs next to PSRL, greedy play, random play and the oracle.

For each trial length ``n`` (episodes of 10 steps in one MDP; S = 10 states, A = 5 actions,
``P[s, a, :] ~ Dirichlet(1)``, ``R[s, a] ~ N(1, 1)``, Duan et al. 2016, §4.2) the script trains
RL² with the packaged config ``rl2/tabular-mdp`` (``src/fastadapt/configs/rl2/``;
``rl2.episodes_per_trial = n``), evaluates it on the fixed held-out MDPs (``--trials`` trials
per MDP) and runs PSRL (Osband et al. 2013), certainty-equivalent greedy play, uniform random
play and the optimal policy of the known MDP on the *same* MDPs
(:mod:`fastadapt.baselines.mdps`). It prints a markdown table of the total reward per trial
(mean ± 95% CI over MDPs) with the gap to the oracle, then Duan et al.'s figures, then one
JSON line.

``DUAN_TABLE2`` holds Duan et al. 2016 (arXiv:1611.02779), Table 2, from the same transcription
as ``rl2_bandits.DUAN_TABLE1`` (lucaslingle/pytorch_rl2's README).

The config trains 256 GRU units with ``run.num_threads = 1``.

    python benchmarks/rl2_tabular_mdp.py [--episodes 10,25] [--iterations 800]
        [--out runs/bench-rl2-mdp]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rl2_bandits import cell, summary, train_and_evaluate

from fastadapt.baselines.mdps import greedy, oracle, psrl, random_play

DUAN_TABLE2: dict[int, dict[str, float]] = {
    # n (episodes per trial): total reward per trial, Duan et al. 2016, Table 2
    10: {"random": 100.1, "psrl": 138.1, "ucrl2": 146.6, "beb": 150.2, "greedy": 134.8,
         "rl2": 156.2},
    25: {"random": 250.2, "psrl": 408.8, "ucrl2": 424.1, "beb": 427.8, "greedy": 368.8,
         "rl2": 445.7},
    50: {"random": 499.7, "psrl": 904.4, "ucrl2": 918.9, "beb": 917.8, "greedy": 769.3,
         "rl2": 936.1},
    75: {"random": 749.9, "psrl": 1417.1, "ucrl2": 1427.6, "beb": 1422.6, "greedy": 1172.9,
         "rl2": 1428.8},
    100: {"random": 999.4, "psrl": 1939.5, "ucrl2": 1942.1, "beb": 1935.1, "greedy": 1578.5,
          "rl2": 1913.7},
}
"""Duan et al. 2016, Table 2 (see the module docstring for the source)."""

STEPS_PER_EPISODE = 10
CONFIG = "rl2/tabular-mdp"
"""The packaged RL² config on TabularMDP."""


def run_setting(episodes: int, args: argparse.Namespace
                ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Train and evaluate RL² on trials of ``episodes`` episodes; baselines on the same MDPs."""
    overrides = [f"rl2.episodes_per_trial={episodes}", f"run.iterations={args.iterations}",
                 f"run.seed={args.seed}", "run.tensorboard=false",
                 f"run.checkpoint_every={args.iterations}"]
    evaluation, cost = train_and_evaluate(CONFIG, overrides,
                                          Path(args.out) / f"n{episodes}", args.tasks, args.trials)
    transitions = np.array([task["transitions"] for task in evaluation["tasks"]])
    rewards = np.array([task["mean_rewards"] for task in evaluation["tasks"]])
    best = oracle(transitions, rewards, STEPS_PER_EPISODE, episodes)
    rl2 = np.array(evaluation["per_task_returns"]).sum(axis=1)  # reward per trial, [N]
    rng = np.random.default_rng(args.seed)
    played = psrl(transitions, rewards, STEPS_PER_EPISODE, episodes, args.baseline_runs, rng)
    estimated = greedy(transitions, rewards, STEPS_PER_EPISODE, episodes, args.baseline_runs, rng)
    budget = {"episodes": episodes, "iterations": args.iterations, **cost}
    return budget, {
        "rl2": summary(rl2, best),
        "psrl": summary(played, best),
        "greedy": summary(estimated, best),
        "random": summary(random_play(transitions, rewards, STEPS_PER_EPISODE, episodes), best),
        "oracle": summary(best, best),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", default="10", help="comma-separated episodes per trial")
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--tasks", type=int, default=500, help="held-out MDPs")
    parser.add_argument("--trials", type=int, default=4, help="RL² trials per held-out MDP")
    parser.add_argument("--baseline-runs", type=int, default=4,
                        help="PSRL and greedy trials per MDP")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-rl2-mdp", help="run directories")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results, settings = [], []
    print("| n | RL² | PSRL | greedy | random | oracle (known MDP) | RL² training |")
    print("|---|---|---|---|---|---|---|")
    for episodes in (int(n) for n in args.episodes.split(",")):
        budget, scores = run_setting(episodes, args)
        results.append({**budget, **scores})
        settings.append(episodes)
        cells = " | ".join(cell(scores[name]) for name in ("rl2", "psrl", "greedy", "random"))
        print(f"| {episodes} | {cells} | {scores['oracle']['reward']:.1f} | {args.iterations} it, "
              f"{int(budget['env_steps']):,} steps, {budget['train_seconds']} s |", flush=True)
    print("\nDuan et al. 2016, Table 2 (total reward per trial; regret is not reported):\n")
    print("| n | RL² | PSRL | UCRL2 | BEB | greedy | random |")
    print("|---|---|---|---|---|---|---|")
    for episodes in settings:
        paper = DUAN_TABLE2.get(episodes)
        if paper is not None:
            names = ("rl2", "psrl", "ucrl2", "beb", "greedy", "random")
            print(f"| {episodes} | " + " | ".join(f"{paper[name]}" for name in names) + " |")
    print(json.dumps({"benchmark": "rl2_tabular_mdp", "held_out_mdps": args.tasks,
                      "results": results,
                      "duan_table2": {str(n): DUAN_TABLE2.get(n) for n in settings}}))


if __name__ == "__main__":
    main()
