"""Classic strategies for Bernoulli bandits: the reference points of RL² (Duan et al. 2016, §4.1).

Each strategy plays ``runs`` independent trials of ``pulls`` pulls on every bandit of ``means
[N, K]`` (arm means, e.g. the held-out tasks of ``Bandit``) and returns the mean total reward
per bandit ``[N]``. All are vectorised over runs and bandits.

- :func:`ucb1`: Auer et al. 2002 (each arm once, then ``argmax mean + c sqrt(2 ln t / n_a)``,
  ``c = 1``); :func:`tune_ucb1` picks ``c`` for a horizon on training bandits, with the
  pseudo-counts of Duan et al.'s tuned UCB1.
- :func:`thompson`: Thompson sampling with Beta(1, 1) priors (Thompson 1933).
- :func:`gittins`: the finite-horizon Gittins index policy (FH-Gittins; Kaufmann 2016, "On
  Bayesian index policies for sequential resource allocation", §3; Gittins 1979 for the
  discounted index). Under the uniform prior the tasks are drawn from, it is the standard
  near-Bayes-optimal benchmark for a known horizon ``n``: each arm's index is the per-pull
  retirement reward ``lambda`` at which, with ``r`` pulls left, playing that arm optimally
  against retiring is a fair bet. :func:`gittins_indices` computes the table.

:func:`exploration_profile` summarizes how a strategy's pulls ``[N, R, n]`` explore (arms
tried, expected reward by tenth of the trial, share of late pulls on the best arm), so a learned
strategy (RL²'s sampled actions) can be set against :func:`gittins_actions`;
:func:`gittins_choices` labels any strategy's trials with the arms Gittins would pull.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

GRID_POINTS = 1024
"""Retirement rewards ``lambda`` evaluated in ``[0, 1]`` by :func:`gittins_indices`; the index
is interpolated linearly between them (exact where no sub-state switches in between)."""


def _pull(means: np.ndarray, choice: np.ndarray, counts: np.ndarray, successes: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Pull ``choice [R, N]``; update the statistics in place; rewards ``[R, N]``."""
    p = np.take_along_axis(np.broadcast_to(means, counts.shape), choice[..., None], -1)[..., 0]
    reward = (rng.random(p.shape) < p).astype(np.float64)
    index = choice[..., None]
    np.put_along_axis(counts, index, np.take_along_axis(counts, index, -1) + 1, -1)
    np.put_along_axis(successes, index,
                      np.take_along_axis(successes, index, -1) + reward[..., None], -1)
    return reward


Chooser = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
"""``(t, counts [R, N, K], successes [R, N, K]) -> arms [R, N]``: a strategy's pull at ``t``."""


def _play(means: np.ndarray, pulls: int, runs: int, rng: np.random.Generator,
          choose: Chooser, choices: list[np.ndarray] | None = None) -> np.ndarray:
    """Play ``choose`` for ``pulls`` pulls, ``runs`` times; mean total reward per bandit ``[N]``.

    ``choices``, if given, receives the arms pulled at each ``t`` (``[R, N]`` each).
    """
    counts = np.zeros((runs, *means.shape))
    successes = np.zeros_like(counts)
    total = np.zeros(counts.shape[:2])
    for t in range(pulls):
        choice = choose(t, counts, successes)
        if choices is not None:
            choices.append(choice)
        total += _pull(means, choice, counts, successes, rng)
    result: np.ndarray = total.mean(axis=0)
    return result


def ucb1(means: np.ndarray, pulls: int, runs: int, rng: np.random.Generator,
         exploration: float = 1.0, prior_counts: bool = False) -> np.ndarray:
    """UCB1: ``argmax mean_a + c * sqrt(2 ln t / n_a)`` (Auer et al. 2002); ``[N]``.

    Args:
        exploration: ``c``. 1.0 is Auer et al.'s UCB1, 0.0 greedy; :func:`tune_ucb1` picks one
            for a horizon, as the RL² authors' evaluation script did for Duan et al. 2016,
            Table 1.
        prior_counts: start every arm at one success in two pulls (the posterior mean of a
            Beta(1, 1) prior, as that script does) instead of pulling each arm once first.
    """
    arms = means.shape[-1]
    prior_successes, prior_pulls = (1.0, 2.0) if prior_counts else (0.0, 0.0)

    def choose(t: int, counts: np.ndarray, successes: np.ndarray) -> np.ndarray:
        if not prior_counts and t < arms:
            return np.full(counts.shape[:2], t)
        n = counts + prior_pulls
        bonus = exploration * np.sqrt(2.0 * math.log(max(t, 1)) / n)
        arms_chosen: np.ndarray = np.argmax((successes + prior_successes) / n + bonus, axis=-1)
        return arms_chosen

    return _play(means, pulls, runs, rng, choose)


UCB1_GRID = tuple(i / 10 for i in range(11))
"""Exploration coefficients :func:`tune_ucb1` tries: 0.0, 0.1, ..., 1.0, the grid of the RL²
authors' evaluation script (rllab ``sandbox/rocky/neural_learner``)."""


def tune_ucb1(arms: int, pulls: int, bandits: int, runs: int, rng: np.random.Generator,
              grid: tuple[float, ...] = UCB1_GRID) -> float:
    """The coefficient ``c`` of ``grid`` with the highest mean reward of :func:`ucb1` with
    ``prior_counts`` on ``bandits`` fresh bandits with arm means ~ U[0, 1] (training bandits:
    never the held-out ones it is then compared on), ``runs`` plays each; every coefficient
    plays the same bandits."""
    means = rng.uniform(0.0, 1.0, size=(bandits, arms))
    scores = [float(ucb1(means, pulls, runs, rng, c, prior_counts=True).mean()) for c in grid]
    return grid[int(np.argmax(scores))]


def thompson(means: np.ndarray, pulls: int, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Thompson sampling with Beta(1, 1) priors; mean total reward per bandit ``[N]``."""

    def choose(t: int, counts: np.ndarray, successes: np.ndarray) -> np.ndarray:
        samples = rng.beta(1.0 + successes, 1.0 + counts - successes)
        arms_chosen: np.ndarray = np.argmax(samples, axis=-1)
        return arms_chosen

    return _play(means, pulls, runs, rng, choose)


def gittins_indices(pulls: int, grid_points: int = GRID_POINTS) -> np.ndarray:
    """Finite-horizon Gittins indices of a Bernoulli arm under a Beta(1, 1) prior.

    ``G[r, s, f]`` is the index of an arm seen ``s`` successes and ``f`` failures with ``r``
    pulls left (``1 <= r``, ``s + f + r <= pulls``; other entries are NaN): the ``lambda`` at
    which ``C_r(s, f; lambda) = 0`` in the optimal-stopping recursion

        W_0 = 0,   W_r(s, f) = max(0, C_r(s, f)),
        C_r(s, f) = p - lambda + p W_{r-1}(s + 1, f) + (1 - p) W_{r-1}(s, f + 1),

    with ``p = (s + 1) / (s + f + 2)`` (play the arm for one more pull, then continue or
    retire for good on ``lambda`` per pull). ``C_r`` falls strictly in ``lambda``, so the
    root is found on a grid of ``grid_points`` values of ``lambda`` in ``[0, 1]`` and
    interpolated. With one pull left the index is the posterior mean ``p``.

    Cost: ``grid_points * pulls^3 / 3`` elementwise operations.

    Returns:
        ``[pulls + 1, pulls + 1, pulls + 1]`` float64 (indexed ``[r, s, f]``).
    """
    lam = np.linspace(0.0, 1.0, grid_points)[:, None, None]  # [L, 1, 1]
    step = 1.0 / (grid_points - 1)  # grid spacing
    table = np.full((pulls + 1,) * 3, np.nan)
    w_prev = np.zeros((grid_points, pulls + 1, pulls + 1))  # W_{r-1} on s, f <= pulls - r + 1
    for r in range(1, pulls + 1):
        size = pulls - r + 1  # s, f in [0, size): the states with s + f + r <= pulls
        s = np.arange(size)[:, None]
        f = np.arange(size)[None, :]
        p = (s + 1.0) / (s + f + 2.0)  # [size, size]
        win, loss = w_prev[:, 1 : size + 1, :size], w_prev[:, :size, 1 : size + 1]
        cont = (p - lam) + p * win + (1 - p) * loss  # C_r(s, f; lambda) [L, size, size]
        # index: the last grid point with C >= 0, then linear interpolation to the root
        nonneg = cont >= 0
        last = np.clip(nonneg.sum(axis=0) - 1, 0, grid_points - 2)  # C is decreasing
        c0 = np.take_along_axis(cont, last[None], 0)[0]
        c1 = np.take_along_axis(cont, last[None] + 1, 0)[0]
        root = last * step + step * np.clip(c0 / np.where(c0 > c1, c0 - c1, 1.0), 0.0, 1.0)
        valid = s + f + r <= pulls
        table[r, :size, :size] = np.where(valid, root, np.nan)
        w_prev = np.maximum(cont, 0.0)
    return table


def _checked_table(pulls: int, table: np.ndarray | None) -> np.ndarray:
    """``table`` (:func:`gittins_indices` of ``pulls`` if ``None``), checked to cover ``pulls``."""
    indices = gittins_indices(pulls) if table is None else table
    if indices.shape[0] <= pulls:
        raise ValueError(f"the Gittins table covers {indices.shape[0] - 1} pulls, need {pulls}")
    return indices


def _arm_indices(indices: np.ndarray, left: int | np.ndarray, counts: np.ndarray,
                 successes: np.ndarray) -> np.ndarray:
    """Each arm's index with ``left`` pulls to go, given its pulls and successes so far
    (arrays of one shape, ``[..., K]``)."""
    s = successes.astype(np.int64)
    found: np.ndarray = indices[left, s, counts.astype(np.int64) - s]
    return found


def _gittins_chooser(pulls: int, table: np.ndarray | None) -> Chooser:
    indices = _checked_table(pulls, table)

    def choose(t: int, counts: np.ndarray, successes: np.ndarray) -> np.ndarray:
        arms_chosen: np.ndarray = np.argmax(_arm_indices(indices, pulls - t, counts, successes),
                                            axis=-1)
        return arms_chosen

    return choose


def gittins(means: np.ndarray, pulls: int, runs: int, rng: np.random.Generator,
            table: np.ndarray | None = None) -> np.ndarray:
    """The FH-Gittins index policy; mean total reward per bandit ``[N]``.

    Args:
        table: :func:`gittins_indices` of at least ``pulls`` (computed if ``None``).
    """
    return _play(means, pulls, runs, rng, _gittins_chooser(pulls, table))


def gittins_actions(means: np.ndarray, pulls: int, runs: int, rng: np.random.Generator,
                    table: np.ndarray | None = None) -> np.ndarray:
    """The arms the FH-Gittins policy pulls, ``[N, runs, pulls]`` int (see :func:`gittins`)."""
    choices: list[np.ndarray] = []
    _play(means, pulls, runs, rng, _gittins_chooser(pulls, table), choices)
    return np.stack(choices, axis=-1).transpose(1, 0, 2)


def gittins_choices(actions: np.ndarray, rewards: np.ndarray, num_arms: int,
                    table: np.ndarray | None = None) -> np.ndarray:
    """The arms the FH-Gittins policy would pull after each prefix of played trials.

    For trials ``actions [N, n]`` (int) and their rewards ``[N, n]`` (0/1) played by any
    strategy, entry ``[i, t, a]`` is True where arm ``a`` has the largest index
    (:func:`gittins_indices`) given the successes and failures of the pulls before ``t``,
    with ``n - t`` pulls left; ties are all True (every arm at ``t = 0``). Labels for imitating
    Gittins on the imitator's own trials (DAgger, Ross et al. 2011), ``[N, n, K]`` bool.
    """
    pulls = actions.shape[-1]
    indices = _checked_table(pulls, table)
    onehot = np.eye(num_arms)[actions]  # [N, n, K]
    counts = np.cumsum(onehot, axis=1) - onehot  # before each pull
    won = onehot * rewards[..., None]
    successes = np.cumsum(won, axis=1) - won
    left = np.broadcast_to((pulls - np.arange(pulls))[None, :, None], counts.shape)
    index = _arm_indices(indices, left, counts, successes)  # [N, n, K]
    choices: np.ndarray = index >= index.max(axis=-1, keepdims=True) - 1e-12
    return choices


class ExplorationProfile(NamedTuple):
    """How a strategy spreads its pulls, averaged over bandits and trials.

    Attributes:
        reward_by_tenth: expected reward (the pulled arm's mean) summed over each tenth of the
            trial's pulls ``[10]``; their sum is the expected total reward per trial.
        arms_tried: distinct arms pulled per trial.
        best_arm_share: share of the last fifth of the pulls that went to the best arm.
    """

    reward_by_tenth: np.ndarray
    arms_tried: float
    best_arm_share: float


def exploration_profile(means: np.ndarray, actions: np.ndarray) -> ExplorationProfile:
    """Summarize pulls ``actions [N, R, n]`` (int, ``n`` a multiple of 10) on bandits
    ``means [N, K]``; see :class:`ExplorationProfile`."""
    num_bandits, runs, pulls = actions.shape
    if pulls % 10:
        raise ValueError(f"need a multiple of 10 pulls per trial, got {pulls}")
    expected = np.take_along_axis(means[:, None, :], actions, axis=-1)  # [N, R, n]
    by_tenth = expected.reshape(num_bandits, runs, 10, pulls // 10).sum(-1).mean((0, 1))
    tried = np.zeros((num_bandits, runs, means.shape[1]), dtype=bool)
    np.put_along_axis(tried, actions, True, axis=-1)
    late = actions[..., pulls - max(pulls // 5, 1):]
    best = means.argmax(-1)[:, None, None]
    return ExplorationProfile(by_tenth, float(tried.sum(-1).mean()),
                              float((late == best).mean()))
