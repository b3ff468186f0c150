"""PEARL's learner: the networks, Adam, the target networks and the gradient steps
(Rakelly et al. 2019, Algorithm 1, lines 8-15).

A gradient step draws ``tasks_per_step`` training tasks (with replacement), an RL batch of
``batch_transitions`` transitions of each from its replay buffer and a context of
``context_transitions`` from its encoder buffer, sums PEARL's losses
(:func:`~fastadapt.algorithms.pearl.losses.pearl_loss`), differentiates once, takes one Adam
step over every network and moves the target networks by Polyak averaging. A step whose loss
is NaN/inf is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.common.adam import adam_state_tensors, load_adam_state
from fastadapt.algorithms.pearl.config import PEARLConfig
from fastadapt.algorithms.pearl.losses import SACBatch, StepNoise, pearl_loss, posterior
from fastadapt.algorithms.pearl.networks import POLICY_LAST_LAYER_SCALE, init_mlp
from fastadapt.buffers.replay import TaskReplay, TransitionBatch
from fastadapt.types import Params, Trajectories

POLICY_PREFIXES = ("actor.", "encoder.")
"""The networks that act at meta-test: the policy file's parameters."""

_GENERATORS = ("generator/tasks", "generator/device")


def context_rows(batch: TransitionBatch, next_obs_in_context: bool) -> Tensor:
    """Transitions as context rows ``[..., D]``: ``[s, a, r]`` or ``[s, a, r, s']``."""
    fields = [batch.observations, batch.actions, batch.rewards[..., None]]
    if next_obs_in_context:
        fields.append(batch.next_observations)
    return torch.cat(fields, dim=-1)


def episode_context(episodes: Trajectories, center: Tensor, half_width: Tensor,
                    next_obs_in_context: bool) -> tuple[Tensor, Tensor]:
    """Episodes ``[M, E, H, ...]`` as each entry's context: rows ``[M, E * H, D]`` (actions
    rescaled to ``[-1, 1]`` from the box of centre ``center`` and half-width ``half_width``)
    and their mask ``[M, E * H]``. Meta-test and the PEARL agent build contexts through it.

    Raises:
        ValueError: the episodes carry no terminations or final observations.
    """
    if episodes.terminated is None or episodes.final_observations is None:
        raise ValueError("PEARL's context needs terminations and final observations")
    obs = episodes.observations
    next_obs = torch.cat([obs[:, :, 1:], episodes.final_observations[:, :, None]], dim=2)
    rows = TransitionBatch(obs, (episodes.actions - center) / half_width, episodes.rewards,
                           next_obs, episodes.terminated)
    entries = obs.shape[0]
    context = context_rows(rows, next_obs_in_context)
    return context.reshape(entries, -1, context.shape[-1]), episodes.masks.reshape(entries, -1)


def posterior_sample(params: Params, context: Tensor, latent_dim: int,
                     generator: torch.Generator, mask: Tensor | None = None) -> Tensor:
    """``z ~ q(z | c)`` for each row of ``context [M, C, D]`` (``mask [M, C]``), ``[M, L]``
    (no graph)."""
    with torch.no_grad():
        mean, variance = posterior(params, context, latent_dim, mask)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + variance.sqrt() * noise


def context_width(obs_dim: int, action_dim: int, next_obs_in_context: bool) -> int:
    """``D``: the width of a context row."""
    return obs_dim + action_dim + 1 + (obs_dim if next_obs_in_context else 0)


def initial_networks(obs_dim: int, action_dim: int, config: PEARLConfig, seed: int
                     ) -> tuple[Params, Params]:
    """Fresh ``(params, targets)`` on the CPU, drawn from ``seed``: the encoder, the policy,
    the twin Qs, V (``v_net``), ``log_alpha`` (``auto_entropy``), and the targets (copies)."""
    generator = torch.Generator().manual_seed(seed)
    latent, hidden = config.latent_dim, list(config.hidden_sizes)
    width = context_width(obs_dim, action_dim, config.next_obs_in_context)
    params = {
        **init_mlp("encoder.", [width, *config.encoder_hidden_sizes, 2 * latent], 1, generator),
        **init_mlp("actor.", [obs_dim + latent, *hidden, 2 * action_dim], 1, generator,
                   POLICY_LAST_LAYER_SCALE),
        **init_mlp("q.", [obs_dim + action_dim + latent, *hidden, 1], 2, generator),
    }
    if config.critic == "v_net":
        params.update(init_mlp("v.", [obs_dim + latent, *hidden, 1], 1, generator))
    if config.auto_entropy:
        params["log_alpha"] = torch.tensor(math.log(config.alpha))
    source = "v." if config.critic == "v_net" else "q."
    targets = {f"target_{name}": p.clone() for name, p in params.items()
               if name.startswith(source)}
    return params, targets


class PEARLLearner:
    """The networks and their optimiser; :meth:`train` takes an iteration's gradient steps.

    Args:
        obs_dim, action_dim: ``O`` and ``A``.
        config: the ``pearl:`` section.
        seed: seeds the initial networks and the learner's random draws.
        device: where networks, optimiser state and draws live.
    """

    def __init__(self, obs_dim: int, action_dim: int, config: PEARLConfig, seed: int,
                 device: torch.device) -> None:
        self.config, self.device = config, device
        self.target_entropy = (-float(action_dim) if config.target_entropy is None
                               else config.target_entropy)
        init_seed, task_seed, device_seed = np.random.SeedSequence([seed, 5]).generate_state(3)
        params, targets = initial_networks(obs_dim, action_dim, config, int(init_seed))
        self.params = {n: p.to(device).requires_grad_(True) for n, p in params.items()}
        self.targets = {n: p.to(device) for n, p in targets.items()}
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=config.learning_rate,
                                          fused=fused)
        self.loss: Callable[..., tuple[Tensor, dict[str, Tensor]]] = pearl_loss
        """The summed loss (replaceable by a compiled version, ``benchmarks/pearl_update.py``)."""
        self.task_generator = torch.Generator().manual_seed(int(task_seed))
        """Draws each step's meta-batch of tasks (on the CPU)."""
        self.generator = torch.Generator(device).manual_seed(int(device_seed))
        """Draws each step's rows and noise (on the device)."""

    def policy_params(self) -> Params:
        """The encoder's and the policy's parameters (detached)."""
        return {n: p.detach() for n, p in self.params.items() if n.startswith(POLICY_PREFIXES)}

    def load_policy_params(self, params: Params) -> None:
        """Overwrite the encoder and the policy in place (Adam keeps its leaves)."""
        with torch.no_grad():
            for name, value in params.items():
                self.params[name].copy_(value)

    def _draw(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.generator, device=self.device)

    def _noise(self, tasks: int, per_task: int, action_dim: int) -> StepNoise:
        return StepNoise(self._draw(tasks, self.config.latent_dim),
                         self._draw(tasks, per_task, action_dim),
                         self._draw(tasks, per_task, action_dim)
                         if self.config.critic == "twin_q" else None)

    def batch(self, replay: TaskReplay, encoder_buffer: TaskReplay, available: Tensor
              ) -> SACBatch:
        """One step's data: ``tasks_per_step`` of the ``available`` tasks (indices ``[K']``)
        drawn with replacement, their RL batches and contexts."""
        config = self.config
        draws = torch.randint(len(available), (config.tasks_per_step,),
                              generator=self.task_generator)
        tasks = available[draws]
        rl = replay.sample(tasks, config.batch_transitions, self.generator)
        context = encoder_buffer.sample(tasks, config.context_transitions, self.generator)
        return SACBatch(rl.observations, rl.actions, rl.rewards, rl.next_observations,
                        rl.terminated, context_rows(context, config.next_obs_in_context))

    def step(self, batch: SACBatch) -> tuple[bool, dict[str, Tensor]]:
        """One gradient step on ``batch``; returns whether it was applied (the loss was
        finite) and the loss terms."""
        tasks, per_task, action_dim = batch.actions.shape
        loss, metrics = self.loss(self.params, self.targets, batch,
                                   self._noise(tasks, per_task, action_dim), self.config,
                                   self.target_entropy)
        if not bool(torch.isfinite(loss)):
            return False, metrics
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        with torch.no_grad():
            prefix = len("target_")
            sources = [self.params[name[prefix:]] for name in self.targets]
            torch._foreach_lerp_(list(self.targets.values()), sources, self.config.tau)
        return True, metrics

    def train(self, replay: TaskReplay, encoder_buffer: TaskReplay, steps: int
              ) -> dict[str, float]:
        """``steps`` gradient steps on the tasks whose buffers hold data; returns the mean
        of each loss term over the applied steps and ``nonfinite_steps``, the skipped ones
        (``nonfinite`` is 1.0 when every step was skipped, or when no task has data: every
        transition collected so far was dropped as non-finite)."""
        available = torch.nonzero((replay.sizes > 0) & (encoder_buffer.sizes > 0)).flatten()
        if len(available) == 0:
            return {"nonfinite_steps": float(steps), "nonfinite": 1.0}
        totals: dict[str, Tensor] = {}
        skipped = 0
        for _ in range(steps):
            applied, metrics = self.step(self.batch(replay, encoder_buffer, available))
            if not applied:
                skipped += 1
                continue
            for name, value in metrics.items():
                totals[name] = totals[name] + value if name in totals else value
        applied_steps = max(steps - skipped, 1)
        result = {name: float(value) / applied_steps for name, value in totals.items()}
        return {**result, "nonfinite_steps": float(skipped), "nonfinite": float(skipped == steps)}

    def state_dict(self) -> dict[str, Tensor]:
        """The Q, V and entropy parameters, the targets, Adam's state and both generators
        (the policy file holds the encoder and the policy)."""
        tensors = {f"learner/{n}": p.detach().cpu().clone() for n, p in self.params.items()
                   if not n.startswith(POLICY_PREFIXES)}
        tensors.update({f"learner/{n}": p.cpu().clone() for n, p in self.targets.items()})
        tensors.update(adam_state_tensors(self.optimizer, list(self.params)))
        tensors[_GENERATORS[0]] = self.task_generator.get_state()
        tensors[_GENERATORS[1]] = self.generator.get_state()
        return tensors

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            KeyError: a tensor is missing.
            ValueError: a tensor's shape differs from this config's network.
        """
        with torch.no_grad():
            for store, names in ((self.params, [n for n in self.params
                                                if not n.startswith(POLICY_PREFIXES)]),
                                 (self.targets, list(self.targets))):
                for name in names:
                    value = tensors[f"learner/{name}"]
                    if value.shape != store[name].shape:
                        raise ValueError(f"learner/{name} has shape {list(value.shape)}, "
                                         f"this config's {list(store[name].shape)}")
                    store[name].copy_(value)
        load_adam_state(self.optimizer, list(self.params), tensors)
        self.task_generator.set_state(tensors[_GENERATORS[0]])
        self.generator.set_state(tensors[_GENERATORS[1]])
