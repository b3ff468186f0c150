"""Reference strategies for random tabular MDPs: the yardsticks of RL² (Duan et al. 2016, §4.2).

The tasks are those of :mod:`fastadapt.envs.tabular_mdp`: transitions ``P[s, a, :] ~
Dirichlet(1)``, mean rewards ``R[s, a] ~ N(1, 1)``, observed rewards ``~ N(R[s, a], 1)``, start
state 0, ``steps`` steps per episode. A trial is ``episodes`` episodes of one MDP. Each function
takes ``transitions [N, S, A, S]`` and ``mean_rewards [N, S, A]`` (e.g. the held-out tasks of
``TabularMDP``) and returns the total reward per trial of each MDP ``[N]``:

- :func:`oracle`: the optimal policy of the known MDP (finite-horizon value iteration): the
  upper bound no learner reaches;
- :func:`random_play`: uniform random actions, in expectation (exact);
- :func:`psrl`: posterior sampling for RL (Strens 2000; Osband et al. 2013, "(More) efficient
  reinforcement learning via posterior sampling"), one of Duan et al.'s baselines: at the start
  of every episode it samples an MDP from the exact posterior of the task prior (Dirichlet(1)
  transitions, N(1, 1) mean rewards with unit reward noise) and follows that MDP's optimal
  policy for the episode.
"""

from __future__ import annotations

import numpy as np

from fastadapt.envs.tabular_mdp import REWARD_MEAN, REWARD_NOISE_STD, REWARD_STD, START_STATE


def optimal_q_values(transitions: np.ndarray, mean_rewards: np.ndarray, steps: int) -> np.ndarray:
    """Finite-horizon optimal action values by backward induction (Bellman 1957).

    Args:
        transitions: ``[..., S, A, S]``. mean_rewards: ``[..., S, A]``.
        steps: steps per episode ``H``.

    Returns:
        ``Q [H, ..., S, A]``: ``Q[h]`` is the expected reward of taking ``a`` in ``s`` with
        ``H - h`` steps left and acting optimally afterwards.
    """
    q = np.empty((steps, *mean_rewards.shape))
    values = np.zeros(mean_rewards.shape[:-1])  # V with no step left, [..., S]
    for h in reversed(range(steps)):
        q[h] = mean_rewards + np.einsum("...sat,...t->...sa", transitions, values)
        values = q[h].max(axis=-1)
    return q


def oracle(transitions: np.ndarray, mean_rewards: np.ndarray, steps: int,
           episodes: int) -> np.ndarray:
    """Expected total reward per trial of the optimal policy of each known MDP; ``[N]``."""
    first = optimal_q_values(transitions, mean_rewards, steps)[0]  # [N, S, A]
    result: np.ndarray = episodes * first[:, START_STATE].max(axis=-1)
    return result


def random_play(transitions: np.ndarray, mean_rewards: np.ndarray, steps: int,
                episodes: int) -> np.ndarray:
    """Expected total reward per trial of uniformly random actions (exact); ``[N]``."""
    occupancy = np.zeros(transitions.shape[:2])  # state distribution, [N, S]
    occupancy[:, START_STATE] = 1.0
    uniform = transitions.mean(axis=2)  # P(s' | s) under uniform actions, [N, S, S]
    per_episode = np.zeros(len(transitions))
    for _ in range(steps):
        per_episode += (occupancy * mean_rewards.mean(axis=-1)).sum(-1)
        occupancy = np.einsum("ns,nst->nt", occupancy, uniform)
    result: np.ndarray = episodes * per_episode
    return result


def psrl(transitions: np.ndarray, mean_rewards: np.ndarray, steps: int, episodes: int,
         runs: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior sampling for RL, ``runs`` independent trials per MDP; mean total reward ``[N]``.

    Posterior of the task prior after the trial's own transitions and rewards:
    ``P[s, a, :] ~ Dirichlet(1 + counts[s, a, :])`` and ``R[s, a] ~ N(m, 1 / (1 + n))`` with
    ``m = (1 + sum of rewards) / (1 + n)`` (prior ``N(1, 1)``, unit noise: conjugate).
    """
    mdps, states, actions, _ = transitions.shape
    shape = (runs, mdps)
    counts = np.zeros((*shape, states, actions, states))
    reward_sums = np.zeros((*shape, states, actions))
    cumulative = np.cumsum(transitions, axis=-1)  # for sampling s' by inversion, [N, S, A, S]
    mdp = np.arange(mdps)[None, :]
    total = np.zeros(shape)
    prior_precision = 1.0 / REWARD_STD**2
    noise_precision = 1.0 / REWARD_NOISE_STD**2
    for _ in range(episodes):
        pulls = counts.sum(-1)
        precision = prior_precision + noise_precision * pulls
        posterior_mean = (prior_precision * REWARD_MEAN + noise_precision * reward_sums) / precision
        sampled_rewards = posterior_mean + rng.standard_normal(posterior_mean.shape) / np.sqrt(
            precision)
        gammas = rng.gamma(1.0 + counts)
        sampled_transitions = gammas / gammas.sum(-1, keepdims=True)
        q = optimal_q_values(sampled_transitions, sampled_rewards, steps)  # [H, R, N, S, A]
        state = np.full(shape, START_STATE)
        for h in range(steps):
            action = np.take_along_axis(q[h], state[..., None, None], axis=-2)[..., 0, :].argmax(-1)
            mean = mean_rewards[mdp, state, action]
            reward = mean + REWARD_NOISE_STD * rng.standard_normal(shape)
            cdf = cumulative[mdp, state, action]  # [R, N, S]
            next_state = np.minimum((rng.random(shape)[..., None] > cdf).sum(-1), states - 1)
            run_index = np.arange(runs)[:, None]
            counts[run_index, mdp, state, action, next_state] += 1
            reward_sums[run_index, mdp, state, action] += reward
            total += reward
            state = next_state
    result: np.ndarray = total.mean(axis=0)
    return result
