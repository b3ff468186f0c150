"""The building blocks a plugin algorithm is written with: a stable, documented public surface.

Everything here is defined elsewhere in fastadapt and re-exported under this one import path,
which keeps working when the modules behind it move::

    from fastadapt.algorithms.toolkit import adapt, collect_meta_batch, expand_to_tasks

Shapes: ``T`` tasks, ``E`` episodes per task, ``H`` steps per episode, ``O`` observation
features, ``D`` distribution parameters per step (a Gaussian's mean and log-std, a categorical's
logits). Parameters are :data:`Params` dicts ``{name: tensor}``; per-task parameters carry a
leading ``[T]`` axis. Nothing here mutates a module: functions take parameters explicitly.

Sampling and the inner loop (MAML, Finn et al. 2017):

- :func:`collect_meta_batch` ``(sampler, policy, theta, tasks, config, adaptation_steps=None,
  inner_lr=None, valid_episodes_per_task=None)`` samples ``E`` episodes per task with
  ``theta``, takes a first-order inner step (:func:`adapt`), and repeats ``K`` times, then
  samples the validation episodes with the adapted parameters; no graph is kept. Returns a
  :class:`MetaBatch`: ``train`` (``K`` :class:`Batch` es ``[T, E, H, ...]``), ``valid``
  (``[T, E', H, ...]``), ``task_returns`` (``K + 1`` tensors ``[T]``), ``returns`` (their means
  over tasks, before to after: what :class:`~fastadapt.algorithms.base.Iteration` reports) and
  ``env_steps``. ``inner_lr`` may be a float or one step size per parameter tensor.
- :func:`adapt` ``(policy, params, batch, inner_lr, first_order=False)``: one inner
  policy-gradient step per task, ``phi_i = params_i - inner_lr * grad L_i(params_i)``, with
  per-task ``params [T, ...]`` and ``batch [T, E, H, ...]``; returns per-task parameters
  ``[T, ...]``. Differentiable in ``params`` and in ``inner_lr`` (second order unless
  ``first_order``).
- :func:`adapt_steps` ``(policy, params, batches, inner_lr, first_order=False)``: :func:`adapt`
  once per batch of the list, step ``k`` on ``batches[k]``; returns ``[T, ...]``.
- :func:`expand_to_tasks` ``(params, num_tasks)``: shared parameters as per-task ones
  ``[T, ...]`` (a view, no copy): what :func:`adapt` starts from.
- :func:`per_task_output` ``(policy, params, obs)``: the distribution parameters of per-task
  ``params [T, ...]`` at ``obs [T, ..., O]``; returns ``[T, ..., D]``, for the policy's
  ``log_prob(out, actions)`` and ``kl(old, new)``.
- :func:`masked_task_mean` ``(values, masks)``: the mean over each task's unmasked steps, then
  over tasks: ``[T, E, H]`` to a scalar (the outer losses' reduction).

Configs (frozen dataclasses, the base of an algorithm's section):

- :class:`InnerStepConfig`: a :class:`~fastadapt.config.AlgorithmConfig` with the inner step's
  keys ``episodes_per_task``, ``inner_lr``, ``gamma``, ``gae_lambda``.
- :class:`MAMLConfig`: adds ``adaptation_steps``, ``first_order`` and ``estimator``; the
  settings :func:`collect_meta_batch` reads.
- :func:`require` ``(condition, key, problem)``: raises a
  :class:`~fastadapt.errors.ConfigError` naming ``key`` and ``problem`` unless ``condition``
  (the checks of a section's ``__post_init__``; the loader prefixes the section's name).

Policies and values:

- :func:`make_policy` ``(obs_dim, action_space, hidden_sizes, activation, init_std)``: the MLP
  :class:`Policy` (Gaussian for a box, categorical for discrete actions) the samplers step.
- :class:`Batch`: episodes ready for a loss: ``observations [T, E, H, O]``, ``actions``
  (``[T, E, H, A]`` or ``[T, E, H]``), ``masks [T, E, H]`` (1.0 inside episodes) and
  ``advantages [T, E, H]``; :data:`Params`: ``dict[str, Tensor]``.

Agents (for :meth:`~fastadapt.algorithms.base.Algorithm.make_agent`, what
``fastadapt.load_agent`` returns):

- :class:`GradientAgent` ``(policy, theta, settings, inner_lr, num_envs, observation_space,
  action_space, device, seed=0)``: the agent of an algorithm that adapts like MAML (inner
  policy-gradient steps from ``theta`` with ``settings.gamma`` / ``settings.gae_lambda``, a
  :class:`MAMLConfig`); ``make_agent`` returns one in a line.
- :class:`Agent`: the interface (``reset``, ``act``, ``observe``, ``new_episode``, ``adapt``)
  an algorithm that adapts otherwise implements.

Checkpoints (for :meth:`~fastadapt.algorithms.base.Algorithm.state_dict`):

- :func:`adam_state_tensors` ``(optimizer, names)``: an Adam optimizer's moments and step counts
  as named tensors ``adam/<name>/<key>`` (``names``: its leaves' names in its order); returns a
  ``dict[str, Tensor]`` a checkpoint holds.
- :func:`load_adam_state` ``(optimizer, names, tensors)``: restores them, so a resumed run
  continues bit for bit.
"""

from __future__ import annotations

from fastadapt.algorithms.agent import Agent
from fastadapt.algorithms.common.adam import adam_state_tensors, load_adam_state
from fastadapt.algorithms.maml.adapt import adapt, adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.agent import GradientAgent
from fastadapt.algorithms.maml.config import InnerStepConfig, MAMLConfig
from fastadapt.algorithms.maml.losses import masked_task_mean
from fastadapt.algorithms.maml.meta_batch import MetaBatch, collect_meta_batch
from fastadapt.errors import require
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.mlp import Policy, make_policy
from fastadapt.types import Batch, Params

__all__ = [
    "Agent",
    "Batch",
    "GradientAgent",
    "InnerStepConfig",
    "MAMLConfig",
    "MetaBatch",
    "Params",
    "Policy",
    "adam_state_tensors",
    "adapt",
    "adapt_steps",
    "collect_meta_batch",
    "expand_to_tasks",
    "load_adam_state",
    "make_policy",
    "masked_task_mean",
    "per_task_output",
    "require",
]
