"""Tabular-MDP baselines: value iteration against policy enumeration, hand values, PSRL and
greedy plays, and the RL²-against-baselines benchmark."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastadapt.baselines.mdps import greedy, optimal_q_values, oracle, psrl, random_play


def _random_mdps(count: int, states: int, actions: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.ones(states), size=(count, states, actions))
    return transitions, rng.normal(1.0, 1.0, size=(count, states, actions))


def _policy_return(transitions: np.ndarray, rewards: np.ndarray,
                   policy: tuple[tuple[int, ...], ...]) -> float:
    """Expected episode return from state 0 of a deterministic non-stationary policy
    ``policy[h][s]``, by propagating the state distribution."""
    occupancy = np.eye(len(rewards))[0]
    total = 0.0
    for choice in policy:
        actions = np.array(choice)
        states = np.arange(len(rewards))
        total += float(occupancy @ rewards[states, actions])
        occupancy = occupancy @ transitions[states, actions]
    return total


def test_value_iteration_equals_the_best_enumerated_policy() -> None:
    transitions, rewards = _random_mdps(3, states=2, actions=2, seed=0)
    steps = 3
    for p, r in zip(transitions, rewards, strict=True):
        per_step = list(itertools.product(range(2), repeat=2))  # an action for each state
        best = max(_policy_return(p, r, policy)
                   for policy in itertools.product(per_step, repeat=steps))
        assert optimal_q_values(p, r, steps)[0, 0].max() == pytest.approx(best, abs=1e-12)
    assert oracle(transitions, rewards, steps, 4) == pytest.approx(
        4 * optimal_q_values(transitions, rewards, steps)[0][:, 0].max(-1))


def test_hand_values_on_a_two_state_chain() -> None:
    # action 1 moves 0 -> 1 and pays 0; in state 1 everything stays and action 0 pays 3;
    # action 0 in state 0 stays and pays 1
    transitions = np.zeros((1, 2, 2, 2))
    transitions[0, 0, 0, 0] = transitions[0, 0, 1, 1] = 1.0
    transitions[0, 1, :, 1] = 1.0
    rewards = np.array([[[1.0, 0.0], [3.0, 0.0]]])
    # three steps: move (0), then 3 + 3 = 6 beats staying (3)
    assert oracle(transitions, rewards, 3, 2) == pytest.approx([12.0])
    # random: step 1 pays 0.5; half the time in state 1 afterwards (mean 1.5), else 0.5 and
    # half of those move: step 2 = 0.5 * 0.5 + 0.5 * 1.5 = 1.0, step 3 = 0.25 * 0.5 + 0.75 * 1.5
    assert random_play(transitions, rewards, 3, 2) == pytest.approx([2 * (0.5 + 1.0 + 1.25)])


def test_psrl_finds_an_obvious_best_action() -> None:
    # one state, action 1 pays 5 more. The first episode follows a draw from the prior (either
    # action for all 10 steps, so -20 or 30); once action 0 has paid about -2 ten times, its
    # posterior mean is near -1.7 and every later episode takes action 1: expected total
    # 0.5 * (-20 + 4 * 30) + 0.5 * 150 = 125 of the oracle's 150
    transitions = np.ones((1, 1, 2, 1))
    rewards = np.array([[[-2.0, 3.0]]])
    total = psrl(transitions, rewards, 10, 5, 200, np.random.default_rng(0))
    assert total[0] == pytest.approx(125.0, abs=8.0)


def test_greedy_acts_on_the_posterior_mean() -> None:
    # one state, action 1 pays 5 more. In the first episode both actions have the prior's mean
    # (a tie at every step, broken at random: 10 * 0.5 expected); afterwards action 0's
    # posterior mean (1 - 2k) / (1 + k) is below 1 and action 1's above, so episodes 2-5 take
    # action 1: expected total 5 + 4 * 30 = 125 of the oracle's 150
    transitions = np.ones((1, 1, 2, 1))
    rewards = np.array([[[-2.0, 3.0]]])
    total = greedy(transitions, rewards, 10, 5, 400, np.random.default_rng(0))
    assert total[0] == pytest.approx(125.0, abs=3.0)


def test_psrl_lies_between_random_play_and_the_oracle() -> None:
    transitions, rewards = _random_mdps(200, states=10, actions=5, seed=1)
    rng = np.random.default_rng(2)
    steps, episodes = 10, 10
    played = psrl(transitions, rewards, steps, episodes, 2, rng).mean()
    # measured on 500 MDPs: random 100.6, PSRL 134.0 (Duan et al. Table 2: 100.1 and 138.1)
    assert random_play(transitions, rewards, steps, episodes).mean() + 20 < played
    assert played < oracle(transitions, rewards, steps, episodes).mean() - 40
    # measured on 500 MDPs: greedy ~155, above PSRL with so few episodes
    assert greedy(transitions, rewards, steps, episodes, 2, rng).mean() > played + 10


def test_tabular_benchmark_scores_rl2_and_the_baselines_on_the_same_mdps(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "benchmarks/rl2_tabular_mdp.py", "--iterations", "1",
                           "--tasks", "5", "--trials", "1", "--baseline-runs", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, check=True,
                          timeout=300, cwd=Path(__file__).parents[1])
    result = json.loads(done.stdout.splitlines()[-1])
    (scores,) = result["results"]
    assert scores["env_steps"] == 32 * 4 * 10 * 10  # MDPs x trials x episodes x steps
    oracle_reward = scores["oracle"]["reward"]
    for name in ("rl2", "psrl", "greedy", "random"):
        # each regret is against the oracle on the same 5 MDPs
        assert scores[name]["regret"] == pytest.approx(oracle_reward - scores[name]["reward"])
        assert scores[name]["reward"] < oracle_reward
    # the table prints every column: n, RL², PSRL, greedy, random, oracle, training budget
    header = next(line for line in done.stdout.splitlines() if line.startswith("| n | RL²"))
    assert "| greedy |" in header
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 10 | "))
    assert row.count("|") == header.count("|") == 8
    assert f"{scores['greedy']['reward']:.2f}" in row
