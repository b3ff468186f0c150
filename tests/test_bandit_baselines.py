"""Bandit baselines: hand-computed indices, an exact Bayes-optimal reference, and sanity plays."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from fastadapt.baselines.bandits import (
    UCB1_GRID,
    exploration_profile,
    gittins,
    gittins_actions,
    gittins_choices,
    gittins_indices,
    thompson,
    tune_ucb1,
    ucb1,
)


def _bisect_index(s: int, f: int, r: int) -> float:
    """The FH-Gittins index by bisection on an independent recursion: a Bayesian player with an
    unknown arm (s, f) and a known arm paying ``lam`` takes the unknown arm first iff that is
    optimal (once on the known arm there is nothing left to learn, so it stays there)."""

    def play_first_minus_retire(lam: float) -> float:
        @cache
        def value(s: int, f: int, r: int) -> float:  # Bayes-optimal value, r pulls left
            if r == 0:
                return 0.0
            p = (s + 1) / (s + f + 2)
            play = p * (1 + value(s + 1, f, r - 1)) + (1 - p) * value(s, f + 1, r - 1)
            return max(lam * r, play)

        p = (s + 1) / (s + f + 2)
        play = p * (1 + value(s + 1, f, r - 1)) + (1 - p) * value(s, f + 1, r - 1)
        return play - lam * r

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if play_first_minus_retire(mid) >= 0 else (lo, mid)
    return lo


def test_one_pull_left_index_is_the_posterior_mean() -> None:
    table = gittins_indices(6)
    # Beta(1 + s, 1 + f): mean (s + 1) / (s + f + 2)
    assert table[1, 2, 1] == pytest.approx(3 / 5, abs=1e-12)
    assert table[1, 0, 0] == pytest.approx(1 / 2, abs=1e-12)
    assert table[1, 0, 4] == pytest.approx(1 / 6, abs=1e-12)


def test_indices_match_a_bisection_on_an_independent_recursion() -> None:
    table = gittins_indices(8)
    for s, f, r in [(0, 0, 8), (0, 0, 4), (1, 0, 5), (0, 2, 3), (3, 1, 2), (2, 2, 4)]:
        assert table[r, s, f] == pytest.approx(_bisect_index(s, f, r), abs=2e-4)


def test_indices_add_an_exploration_bonus_that_shrinks_with_the_horizon() -> None:
    table = gittins_indices(10)
    mean = 0.5
    bonuses = [table[r, 0, 0] - mean for r in range(1, 11)]
    assert bonuses[0] == pytest.approx(0.0, abs=1e-12)
    assert all(b2 > b1 for b1, b2 in itertools.pairwise(bonuses))
    assert table[5, 2, 0] > table[5, 1, 0] > table[5, 0, 0] > table[5, 0, 1]  # more wins, higher
    valid = ~np.isnan(table)
    assert not valid[3, 4, 4] and valid[2, 4, 4]  # s + f + r <= pulls


@pytest.mark.parametrize("arms,pulls", [(2, 6), (3, 4)])
def test_gittins_policy_is_bayes_optimal_on_small_problems(arms: int, pulls: int) -> None:
    """Exact expected reward under the uniform prior, by enumerating the beliefs: the index
    policy equals the Bayes-optimal dynamic programme on these sizes."""
    table = gittins_indices(pulls)

    def predictive(state: tuple[int, ...], arm: int) -> float:
        return (state[2 * arm] + 1) / (state[2 * arm] + state[2 * arm + 1] + 2)

    def after(state: tuple[int, ...], arm: int, win: bool) -> tuple[int, ...]:
        new = list(state)
        new[2 * arm + (0 if win else 1)] += 1
        return tuple(new)

    @cache
    def optimal(state: tuple[int, ...], r: int) -> float:
        if r == 0:
            return 0.0
        return max(_expected(state, arm, r, optimal) for arm in range(arms))

    @cache
    def index_policy(state: tuple[int, ...], r: int) -> float:
        if r == 0:
            return 0.0
        arm = int(np.argmax([table[r, state[2 * a], state[2 * a + 1]] for a in range(arms)]))
        return _expected(state, arm, r, index_policy)

    def _expected(state: tuple[int, ...], arm: int, r: int,
                  value: Callable[[tuple[int, ...], int], float]) -> float:
        p = predictive(state, arm)
        win = value(after(state, arm, True), r - 1)
        loss = value(after(state, arm, False), r - 1)
        return float(p * (1 + win) + (1 - p) * loss)

    start = (0,) * (2 * arms)
    assert index_policy(start, pulls) == pytest.approx(optimal(start, pulls), abs=1e-12)
    assert optimal(start, pulls) > pulls / 2 + 0.1  # learning pays off against random play


def test_ucb1_and_thompson_on_deterministic_arms() -> None:
    rng = np.random.default_rng(0)
    means = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    # UCB1 pulls each arm once first: exactly the sum of the means after K pulls
    assert ucb1(means, 3, 4, rng) == pytest.approx([2.0, 0.0])
    assert thompson(np.ones((2, 4)), 7, 3, rng) == pytest.approx([7.0, 7.0])
    assert gittins(np.array([[1.0, 1.0]]), 5, 2, rng) == pytest.approx([5.0])


def test_exploration_profile_by_hand() -> None:
    means = np.array([[0.2, 0.8, 0.5]])
    # trial 1 tries arm 0 twice, then stays on the best arm; trial 2 never leaves arm 0
    actions = np.array([[[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [0] * 10]])
    profile = exploration_profile(means, actions)
    assert profile.reward_by_tenth == pytest.approx([0.2, 0.2] + [0.5] * 8)
    assert profile.arms_tried == 1.5
    assert profile.best_arm_share == 0.5  # the last 2 of 10 pulls: both, then neither
    with pytest.raises(ValueError, match="multiple of 10"):
        exploration_profile(means, actions[..., :5])


def test_gittins_actions_are_the_pulls_gittins_is_scored_on() -> None:
    # 0/1 arm means make every reward deterministic: the total is the sum over the pulls
    means = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    table = gittins_indices(20)
    actions = gittins_actions(means, 20, 3, np.random.default_rng(0), table)
    assert actions.shape == (3, 3, 20)
    totals = gittins(means, 20, 3, np.random.default_rng(0), table)
    assert totals == pytest.approx(
        np.take_along_axis(means[:, None], actions, -1).sum(-1).mean(-1))
    assert exploration_profile(means[:2], actions[:2]).best_arm_share == 1.0


def test_gittins_choices_by_hand_and_on_gittins_own_pulls() -> None:
    # 2 arms, 3 pulls: arm 0 wins, then loses, then arm 1 is pulled
    choices = gittins_choices(np.array([[0, 0, 1]]), np.array([[1.0, 0.0, 0.0]]), 2)
    # t = 0: nothing seen, a tie; t = 1: arm 0 at (1 win, 0 losses) beats an unseen arm;
    # t = 2, one pull left: each index is the posterior mean, 2/4 for arm 0 and 1/2 unseen
    assert choices.tolist() == [[[True, True], [True, False], [True, True]]]
    # every pull Gittins makes is one of its choices (0/1 means: rewards are the means)
    means = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    table = gittins_indices(20)
    actions = gittins_actions(means, 20, 2, np.random.default_rng(0), table)  # [N, R, n]
    rewards = np.take_along_axis(means[:, None], actions, -1)
    labels = gittins_choices(actions.reshape(6, 20), rewards.reshape(6, 20), 3, table)
    assert np.take_along_axis(labels, actions.reshape(6, 20, 1), -1).all()
    assert labels[:, 0].all()  # the first pull: every arm ties


def test_ucb1_with_prior_counts_by_hand() -> None:
    rng = np.random.default_rng(0)
    # every arm starts at 1/2 and ties go to the first arm: [1, 0] pays every pull; on [0, 1]
    # arm 0 fails once (1/3 < 1/2), then arm 1 pays and stays ahead (greedy, c = 0)
    means = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ucb1(means, 5, 3, rng, 0.0, prior_counts=True) == pytest.approx([5.0, 4.0])
    # c = 1 on [1, 0]: no bonus at t = 0, 1 (ln 1 = 0), so arm 0 twice (3/4 after); at t = 2,
    # 3/4 + sqrt(2 ln 2 / 4) = 1.339 > 1/2 + sqrt(2 ln 2 / 2) = 1.333 (arm 0 again, 4/5); at
    # t = 3, 4/5 + sqrt(2 ln 3 / 5) = 1.463 < 1/2 + sqrt(2 ln 3 / 2) = 1.548: the fourth pull
    # goes to arm 1 and pays nothing
    assert ucb1(means[:1], 4, 2, rng, 1.0, prior_counts=True) == pytest.approx([3.0])


def test_tuned_ucb1_explores_less_than_auer_ucb1_at_long_horizons() -> None:
    rng = np.random.default_rng(2)
    c = tune_ucb1(5, 100, 100, 5, rng)
    assert c in UCB1_GRID and c < 1.0
    means = rng.random((200, 5))
    tuned = ucb1(means, 100, 5, rng, c, prior_counts=True).mean()
    assert tuned > ucb1(means, 100, 5, rng).mean() + 5.0  # measured: 77.5 against 65.2


def test_gittins_beats_ucb1_and_thompson_on_uniform_bandits() -> None:
    rng = np.random.default_rng(1)
    means = rng.random((300, 5))
    scores = {name: float(play(means, 10, 10, rng).mean())
              for name, play in [("gittins", gittins), ("ucb1", ucb1), ("thompson", thompson)]}
    assert scores["gittins"] > scores["thompson"] + 0.3
    assert scores["gittins"] > scores["ucb1"] + 0.3
    assert scores["gittins"] < 10 * float(means.max(axis=1).mean())  # below the oracle
    with pytest.raises(ValueError, match="covers 4 pulls"):
        gittins(means, 10, 1, rng, table=gittins_indices(4))
