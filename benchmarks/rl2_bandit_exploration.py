"""How trained RL² bandit players explore, next to the FH-Gittins policy on the same bandits.

For each RL² run directory on ``Bandit`` (trials of ``n`` pulls, ``n`` a multiple of 10) the
script plays ``--trials`` trials of each of ``--tasks`` held-out bandits with the run's final
policy (the held-out bandits and sampler seed of ``fastadapt evaluate``), plays the FH-Gittins
index policy (:func:`fastadapt.baselines.bandits.gittins_actions`) on the same bandits (once per
set of bandits), and prints :func:`~fastadapt.baselines.bandits.exploration_profile` of both as
a markdown table: expected reward per trial and per tenth of the trial, distinct arms tried per
trial, and the share of the last fifth of the pulls that went to the best arm. Where RL² loses
reward against Gittins (too few arms tried, committing to a worse arm) shows up in the last two
columns. With ``--greedy`` each run also plays its policy's most likely arm at every pull
instead of sampling (the same bandits and seed), which separates the policy's choices from its
sampling noise.

    python benchmarks/rl2_bandit_exploration.py RUN_DIR [RUN_DIR ...] [--tasks 500]
        [--trials 4] [--seed 0] [--greedy]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.registry import build_algorithm
from fastadapt.algorithms.rl2.algorithm import RL2
from fastadapt.baselines.bandits import (
    ExplorationProfile,
    exploration_profile,
    gittins_actions,
    gittins_indices,
)
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.run.config_loading import resolve
from fastadapt.run.rundir import final_policy_tensors, load_run_config
from fastadapt.run.trainer import load_policy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params, Trials


def most_likely(out: Tensor, noise: Tensor | None = None) -> Tensor:
    """Greedy play: the most likely arm ``[...]`` from the logits ``[..., K]`` (no draw)."""
    return out.argmax(-1)


def rl2_trials(run_dir: Path, num_tasks: int, trials: int, seed: int, greedy: bool = False
               ) -> tuple[np.ndarray, Trials, RecurrentPolicy, Params]:
    """Arm means ``[N, K]`` of the held-out bandits and RL²'s trials on them (``[N, R, ...]``),
    with the policy and its parameters; with ``greedy`` every pull is the policy's most
    likely arm (:func:`most_likely`) instead of a draw."""
    config = load_run_config(run_dir)
    if config.algorithm != "rl2" or config.env.name != "Bandit":
        raise SystemExit(f"{run_dir}: not an RL² run on Bandit")
    rl2 = build_algorithm(resolve(config), torch.device("cpu"))
    assert isinstance(rl2, RL2)
    load_policy(rl2, *final_policy_tensors(run_dir))
    params = rl2.parameters()
    if greedy:
        rl2.policy.sample = most_likely  # type: ignore[method-assign]
    tasks = rl2.family.test_tasks(num_tasks)
    with VectorSampler(rl2.family, rl2.policy, rl2.horizon, seed) as sampler:
        sampled = sampler.sample_trials(params, tasks, trials, rl2.settings.episodes_per_trial)
    return np.array([task.means for task in tasks]), sampled, rl2.policy, params


def rl2_actions(run_dir: Path, num_tasks: int, trials: int, seed: int, greedy: bool = False
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Arm means ``[N, K]`` of the held-out bandits, RL²'s pulls ``[N, R, n]`` and ``n``."""
    means, sampled, _, _ = rl2_trials(run_dir, num_tasks, trials, seed, greedy)
    return means, sampled.actions.numpy(), sampled.actions.shape[-1]  # actions [N, R, L]


def row(name: str, profile: ExplorationProfile) -> str:
    tenths = " / ".join(f"{r:.2f}" for r in profile.reward_by_tenth)
    return (f"| {name} | {profile.reward_by_tenth.sum():.2f} | {tenths} | "
            f"{profile.arms_tried:.2f} | {profile.best_arm_share:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="RL² run directories on Bandit")
    parser.add_argument("--tasks", type=int, default=500, help="held-out bandits")
    parser.add_argument("--trials", type=int, default=4, help="trials per bandit")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (evaluate's default)")
    parser.add_argument("--greedy", action="store_true",
                        help="also play each run's most likely arm at every pull")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| player | expected reward per trial | by tenth of the trial | arms tried | "
          "best-arm share, last fifth |")
    print("|---|---|---|---|---|")
    tables: dict[int, np.ndarray] = {}
    played: set[tuple[bytes, int]] = set()  # Gittins is printed once per set of bandits
    for run_dir in args.runs:
        means, actions, pulls = rl2_actions(run_dir, args.tasks, args.trials, args.seed)
        print(row(f"RL² {run_dir.name} (K = {means.shape[1]}, n = {pulls})",
                  exploration_profile(means, actions)))
        if args.greedy:
            _, greedy, _ = rl2_actions(run_dir, args.tasks, args.trials, args.seed, greedy=True)
            print(row(f"RL² {run_dir.name}, most likely arm at every pull",
                      exploration_profile(means, greedy)))
        if (means.tobytes(), pulls) in played:
            continue
        played.add((means.tobytes(), pulls))
        if pulls not in tables:  # one table per trial length
            tables[pulls] = gittins_indices(pulls)
        table = tables[pulls]
        reference = gittins_actions(means, pulls, args.trials, np.random.default_rng(args.seed),
                                    table)
        print(row(f"FH-Gittins (K = {means.shape[1]}, n = {pulls}, same bandits)",
                  exploration_profile(means, reference)))


if __name__ == "__main__":
    main()
