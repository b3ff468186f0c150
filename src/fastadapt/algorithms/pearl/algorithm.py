"""PEARL (Rakelly et al. 2019) as an :class:`~fastadapt.algorithms.base.Algorithm`: off-policy
meta-RL by probabilistic task inference.

A fixed set of ``pearl.train_tasks`` training tasks is drawn once; each has a replay buffer (all
its data, for the RL batch) and an encoder buffer (its most recent data, for the context). One
iteration (the reference's ``train`` loop, oyster ``rl_algorithm.py``):

1. the first fills every training task's buffers with ``initial_episodes`` episodes, each with
   its own ``z`` from the prior;
2. for each of the iteration's ``tasks_per_iteration`` tasks: clear its encoder buffer, collect
   ``prior_episodes`` with ``z`` from the prior, ``posterior_episodes`` and then
   ``extra_posterior_episodes`` (the latter to the replay buffer only) with ``z`` from the
   posterior of a context drawn from its encoder buffer, re-inferred after each episode (the
   first of each phase from the prior, as the reference's ``clear_z``);
3. ``gradient_steps`` steps of :class:`~fastadapt.algorithms.pearl.update.PEARLLearner`.

The sampler steps a :class:`~fastadapt.policies.squashed.SquashedGaussianPolicy` of the
observation whose per-task parameters carry each episode's ``z`` in the first layer's bias, so
every sampler kind (in-process, processes, Ray) collects PEARL's episodes; each (task, episode)
pair is one entry of the sampler's batch.

Meta-test (:meth:`PEARL.meta_test`): on each held-out task, ``exploration_episodes`` episodes
each with a fresh ``z`` from the prior, then each episode with ``z`` from the posterior of every
transition gathered on the task so far (the reference's ``collect_paths``), mean actions
(``deterministic_eval``); point ``k`` is the return of episode ``k + 1``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.algorithms.base import (
    Algorithm,
    Iteration,
    MetaTestCurves,
    MetaTestProtocol,
    example_paths,
    on_cpu,
)
from fastadapt.algorithms.pearl.agent import PEARLAgent
from fastadapt.algorithms.pearl.config import PEARLConfig
from fastadapt.algorithms.pearl.networks import fold_latent
from fastadapt.algorithms.pearl.update import (
    PEARLLearner,
    context_rows,
    episode_context,
    posterior_sample,
)
from fastadapt.buffers.replay import TaskReplay
from fastadapt.config import AlgorithmConfig, PolicyConfig, TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.errors import ConfigError
from fastadapt.policies.squashed import SquashedGaussianPolicy
from fastadapt.sampling.base import Sampler
from fastadapt.sampling.success import outcome_metrics
from fastadapt.types import Params, Trajectories, Transitions

_TASK_STREAM = 3
"""``default_rng([run.seed, 3])`` draws the training tasks."""


def _check_family(family: TaskFamily[Any], settings: PEARLConfig, policy: PolicyConfig
                  ) -> gym.spaces.Box:
    """The family's action box, if PEARL can serve it.

    Raises:
        ConfigError: discrete or unbounded actions, dense critic rewards the family does not
            report, or ``policy:`` keys (PEARL sizes its networks in ``pearl:``).
    """
    space = family.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"pearl needs continuous actions (SAC's tanh-Gaussian policy); "
                          f"{family.name} has {space}")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ConfigError(f"pearl squashes actions into a bounded box; {family.name}'s "
                          f"action space {space} is unbounded")
    if settings.dense_critic_rewards and not family.reports_dense_rewards:
        raise ConfigError(f"pearl.dense_critic_rewards needs a family that reports dense "
                          f"rewards beside its sparse ones (SparsePointRobot); {family.name} "
                          "does not")
    if policy != PolicyConfig():
        raise ConfigError("policy: is not read by pearl, whose networks are sized by "
                          "pearl.hidden_sizes and pearl.encoder_hidden_sizes; remove it")
    return space



def phase_outcomes(phases: list[list[Trajectories]], collected: list[Trajectories]
                   ) -> dict[str, float]:
    """``success_rate_before`` / ``success_rate_after``: the fraction of the episodes of the
    first phase (``z`` from the prior) and of the last (``z`` from a posterior) that succeeded,
    for families with success (Meta-World); ``unstable_episodes``: the ``collected`` episodes
    ended by a physics blow-up, for MuJoCo families. ``phases`` are non-empty."""
    rates = None
    if phases and all(b.successes is not None for phase in phases for b in phase):
        by_phase = [float(torch.cat([b.episode_successes().flatten() for b in phase]).mean())
                    for phase in phases]
        rates = (by_phase[0], by_phase[-1])
    unstable = [b.unstable for b in collected if b.unstable is not None]
    count = (float(sum(float(u.sum()) for u in unstable))
             if collected and len(unstable) == len(collected) else None)
    return outcome_metrics(rates, count)


class PEARL(Algorithm[PEARLConfig]):
    """PEARL: SAC on (observation, latent task) with an amortised posterior over tasks;
    reads ``pearl:``."""

    config_class = PEARLConfig
    adapts_by = "episodes"

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """``gradient_steps``."""
        assert isinstance(section, PEARLConfig)
        return section.gradient_steps

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        super().__init__(family, config, device)
        pearl = self.settings
        space = _check_family(family, pearl, config.policy)
        self.obs_dim = int(np.prod(family.observation_space.shape))
        self.action_dim = int(space.shape[0])
        self.center = torch.as_tensor((space.high + space.low) / 2, dtype=torch.float32)
        self.half_width = torch.as_tensor((space.high - space.low) / 2, dtype=torch.float32)
        seed = config.run.seed
        self.policy: SquashedGaussianPolicy = SquashedGaussianPolicy(
            self.obs_dim, space.low, space.high, pearl.hidden_sizes)
        self.train_tasks = family.sample_tasks(np.random.default_rng([seed, _TASK_STREAM]),
                                               pearl.train_tasks)
        self.learner = PEARLLearner(self.obs_dim, self.action_dim, pearl, seed, device)
        self.replay, self.encoder_buffer = (
            TaskReplay(pearl.train_tasks, self.obs_dim, self.action_dim, pearl.buffer_transitions,
                       device) for _ in range(2))
        collect_seed = int(np.random.SeedSequence([seed, 6]).generate_state(1)[0])
        self.generator = torch.Generator(device).manual_seed(collect_seed)
        """Draws the latents and contexts of data collection."""
        self.dropped = 0
        """Non-finite transitions dropped in the current iteration."""

    # ------------------------------------------------------------------ parameters, state

    def initial_parameters(self) -> Params:
        """The encoder's and the policy's parameters (what acts at meta-test)."""
        return {n: p.clone() for n, p in self.learner.policy_params().items()}

    def parameters(self) -> Params:
        return self.learner.policy_params()

    def load_parameters(self, params: Params) -> None:
        self.learner.load_policy_params(params)

    def state_dict(self) -> dict[str, Tensor]:
        """The learner's state, the collection generator and both buffers."""
        return {**self.learner.state_dict(), "generator/collect": self.generator.get_state(),
                **self.replay.state_dict("replay/"), **self.encoder_buffer.state_dict("encoder/")}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        self.learner.load_state_dict(tensors)
        self.generator.set_state(tensors["generator/collect"])
        self.replay.load_state_dict(tensors, "replay/")
        self.encoder_buffer.load_state_dict(tensors, "encoder/")

    # ------------------------------------------------------------------ collection

    def training_tasks(self, rng: np.random.Generator, count: int) -> list[Any]:
        """Indices of ``count`` distinct training tasks to collect on this iteration."""
        return [int(i) for i in rng.choice(self.settings.train_tasks, count, replace=False)]

    def _prior(self, entries: int, generator: torch.Generator) -> Tensor:
        """``z ~ N(0, I)`` for ``entries`` episodes ``[M, L]``."""
        return torch.randn(entries, self.settings.latent_dim, generator=generator,
                           device=self.device)

    def _posterior_sample(self, context: Tensor, generator: torch.Generator,
                          mask: Tensor | None = None) -> Tensor:
        """``z ~ q(z | c)`` for each row of ``context [M, C, D]`` (``mask [M, C]``)."""
        return posterior_sample(self.learner.params, context, self.settings.latent_dim,
                                generator, mask)

    def _episodes(self, sampler: Sampler, tasks: list[Any], z: Tensor,
                  deterministic: bool = False) -> Trajectories:
        """One episode of each of ``tasks`` with its latent ``z [M, L]``, ``[M, 1, H, ...]``."""
        # folded on the CPU, where the sampler runs: the shared layers stay views, not copies
        params = fold_latent(on_cpu(self.learner.policy_params()), "actor.", z.cpu(),
                             self.obs_dim)
        if deterministic:
            params["noise_scale"] = torch.zeros_like(params["noise_scale"])
        return sampler.sample(params, tasks, 1)

    def _store(self, episodes: Trajectories, task_ids: list[int], encoder: bool) -> int:
        """Add each entry's finite transitions (actions in squashed units) to its task's
        buffers (the replay buffer's rewards dense ones with ``dense_critic_rewards``);
        returns how many were dropped: the non-finite ones (a NaN reward) and the last of an
        episode ended by a physics blow-up (not a true terminal state)."""
        dropped = 0
        entries = episodes.transitions()
        critic = entries
        if self.settings.dense_critic_rewards:
            assert episodes.dense_rewards is not None
            critic = episodes._replace(rewards=episodes.dense_rewards).transitions()
        for entry, (task, transitions, critic_transitions) in enumerate(
                zip(task_ids, entries, critic, strict=True)):
            transitions = transitions._replace(
                actions=(transitions.actions - self.center) / self.half_width)
            finite = torch.isfinite(critic_transitions.rewards)
            for field in transitions:
                finite &= torch.isfinite(field.reshape(len(finite), -1)).all(dim=1)
            if episodes.unstable is not None and bool(episodes.unstable[entry].any()):
                finite &= transitions.terminated == 0
            if not bool(finite.all()):
                dropped += int((~finite).sum())
            kept = Transitions(*(field[finite] for field in transitions))
            self.replay.add(task, kept._replace(rewards=critic_transitions.rewards[finite]))
            if encoder:
                self.encoder_buffer.add(task, kept)
        self.dropped += dropped
        return dropped

    def _collect(self, sampler: Sampler, task_ids: list[int], episodes: int,
                 posterior_phase: bool, encoder: bool) -> list[Trajectories]:
        """``episodes`` episodes of each task: all at once with prior latents, or one at a
        time with posterior latents (see the module docstring)."""
        if episodes == 0:
            return []
        if not posterior_phase:
            ids = [task for task in task_ids for _ in range(episodes)]
            batch = self._episodes(sampler, [self.train_tasks[i] for i in ids],
                                   self._prior(len(ids), self.generator))
            self._store(batch, ids, encoder)
            return [batch]
        tasks = [self.train_tasks[i] for i in task_ids]
        z = self._prior(len(task_ids), self.generator)
        batches = []
        for _ in range(episodes):
            batch = self._episodes(sampler, tasks, z)
            self._store(batch, task_ids, encoder)
            batches.append(batch)
            z = self._prior(len(task_ids), self.generator)
            informed = [i for i, task in enumerate(task_ids) if self.encoder_buffer.sizes[task]]
            if informed:  # tasks whose data so far were all non-finite keep the prior
                context = self.encoder_buffer.sample(torch.tensor(task_ids)[informed],
                                                     self.settings.context_transitions,
                                                     self.generator)
                z[informed] = self._posterior_sample(
                    context_rows(context, self.settings.next_obs_in_context), self.generator)
        return batches

    def train_iteration(self, sampler: Sampler, tasks: list[Any], fraction_done: float
                        ) -> Iteration:
        """Collect on ``tasks`` (indices from :meth:`training_tasks`), then take
        ``gradient_steps`` steps. ``returns`` are the mean return of the episodes with
        ``z`` from the prior and, when there are any, of those with ``z`` from a
        posterior."""
        pearl = self.settings
        task_ids = [int(t) for t in tasks]
        batches: list[Trajectories] = []
        self.dropped = 0
        if int(self.replay.sizes.sum()) == 0:
            batches += self._collect(sampler, list(range(pearl.train_tasks)),
                                     pearl.initial_episodes, False, True)
        for task in task_ids:
            self.encoder_buffer.clear(task)
        prior = self._collect(sampler, task_ids, pearl.prior_episodes, False, True)
        informed = [*self._collect(sampler, task_ids, pearl.posterior_episodes, True, True),
                    *self._collect(sampler, task_ids, pearl.extra_posterior_episodes, True,
                                   False)]
        phases = [phase for phase in (prior, [b for i, b in enumerate(informed)
                                              if i not in (0, pearl.posterior_episodes)])
                  if phase]
        returns = [float(torch.cat([b.episode_returns().flatten() for b in phase]).mean())
                   for phase in phases]
        collected = [*batches, *prior, *informed]
        metrics = self.learner.train(self.replay, self.encoder_buffer, pearl.gradient_steps)
        nonfinite = bool(metrics.pop("nonfinite"))
        metrics.update(phase_outcomes(phases, collected))
        metrics["buffer_mb"] = (self.replay.nbytes + self.encoder_buffer.nbytes) / 2**20
        metrics["replay_transitions"] = float(self.replay.sizes.sum())
        metrics["dropped_transitions"] = float(self.dropped)
        env_steps = sum(b.num_env_steps for b in collected)
        return Iteration(env_steps, returns or [float("nan")], metrics, nonfinite)

    # ------------------------------------------------------------------ meta-test

    def make_agent(self, num_envs: int, seed: int = 0) -> Agent:
        """A :class:`~fastadapt.algorithms.pearl.agent.PEARLAgent` of the current encoder and
        actor."""
        return PEARLAgent(self.policy, self.learner.policy_params(), self.settings.latent_dim,
                          self.settings.next_obs_in_context, num_envs,
                          self.family.observation_space, self.family.action_space,
                          self.device, seed)

    def meta_test(self, sampler: Sampler, tasks: list[Any], protocol: MetaTestProtocol
                  ) -> MetaTestCurves:
        """``episodes_per_task`` trials of ``adaptation_steps + 1`` episodes on each
        held-out task (see the module docstring); point ``k`` is the mean return of the
        trials' ``k``-th episodes.

        Raises:
            ConfigError: ``eval_episodes_per_task`` is set (PEARL adapts within episodes).
        """
        if protocol.eval_episodes_per_task is not None:
            raise ConfigError("--eval-episodes applies to gradient-adapted runs; PEARL adapts "
                              "within its episodes (use --adaptation-steps and --episodes)")
        pearl = self.settings
        generator = torch.Generator(self.device).manual_seed(protocol.seed)
        trials = protocol.episodes_per_task
        entries = [task for task in tasks for _ in range(trials)]
        contexts: list[Tensor] = []
        masks: list[Tensor] = []
        episodes: list[Trajectories] = []
        for k in range(protocol.adaptation_steps + 1):
            if k < pearl.exploration_episodes or not contexts:
                z = self._prior(len(entries), generator)
            else:
                z = self._posterior_sample(torch.cat(contexts, dim=1), generator,
                                           torch.cat(masks, dim=1))
            batch = self._episodes(sampler, entries, z, pearl.deterministic_eval)
            episodes.append(batch)
            context, mask = episode_context(batch.to(self.device), self.center.to(self.device),
                                            self.half_width.to(self.device),
                                            pearl.next_obs_in_context)
            contexts.append(context)
            masks.append(mask)
        returns = torch.stack([b.episode_returns()[:, 0] for b in episodes], dim=1)  # [M, K+1]
        successes = None
        if episodes[0].successes is not None:
            successes = torch.stack([b.episode_successes()[:, 0] for b in episodes], dim=1)
            successes = successes.view(len(tasks), trials, -1).mean(dim=1).double()
        unstable = [b.unstable for b in episodes]
        return MetaTestCurves(
            returns=returns.view(len(tasks), trials, -1).mean(dim=1).double(),
            episodes_per_step=1,
            successes=successes,
            unstable_episodes=(None if unstable[0] is None
                               else int(sum(float(u.sum()) for u in unstable if u is not None))),
            trajectories=self._example_paths(episodes, trials),
        )

    def _example_paths(self, episodes: list[Trajectories], trials: int
                       ) -> list[dict[str, Any]] | None:
        """Positions in the first and the last episode of the first trial of the first
        tasks."""

        def episode(i: int, which: int) -> Tensor:
            batch = (episodes[0], episodes[-1])[which]
            return batch.observations[i * trials, 0, :int(batch.masks[i * trials, 0].sum())]

        return example_paths(self.family, episodes[0].masks.shape[0] // trials, episode)
