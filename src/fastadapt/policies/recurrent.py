"""Recurrent (GRU or LSTM) policies of RL² (Duan et al. 2016, §2.2; Wang et al. 2016), called
with explicit params.

At every step the network reads ``x_t = [s_t, a_{t-1}, r_{t-1}, d_t]``: the observation, the
previous action (one-hot for discrete actions, the raw sample for continuous ones), the
previous reward and a flag that is 1.0 on the first step of every episode but the trial's
first. With ``time_input`` it also reads ``t / L``, the fraction of the trial's ``L`` steps
already taken (Wang et al. 2016 feed the time step: in a trial of fixed length the best action
depends on how many steps remain, which a GRU otherwise has to count for itself). With
``transition_input`` (discrete actions only) it also reads the previous step's
``vec([1, s_{t-1}] (x) a_{t-1}) (x) [1, r_{t-1}]``: for one-hot states, a slot per
(state, action) pair that holds 1 and a slot that holds the reward, so that a sum over the
trial is the visit count and reward total of every pair, the sufficient statistics of a
bandit's or tabular MDP's rewards. Without it the trunk has to form the product of its
inputs ``s_{t-1}`` (seen one step earlier), ``a_{t-1}`` and ``r_{t-1}`` itself, which a gated
cell can only approximate. Not in Duan et al. 2016. The hidden
state ``h`` is carried across the episodes of one trial (one task) and starts at zero for every
trial, so the activations are the "fast" learner's memory.

``h'`` (the trunk's state after the step; the cells, :mod:`fastadapt.policies.recurrent_cells`)
feeds a distribution head (``out [..., D]``, see :mod:`fastadapt.policies.distributions`)
and a value head ``V(h')`` (or, with ``separate_value_gru``, ``V`` reads a second GRU of its
own over the same inputs, as Duan et al. 2016's RNN baseline). With ``critic_features = F > 0``
the value head also reads the training task's features ``f`` (``[N, F]``, the same at every
step of a sequence) through one hidden layer of ``S`` tanh units, ``V(h', f)``: a critic that
knows the task, which the policy never sees (``rl2.task_critic``). With
``belief_features = F > 0`` a linear belief head reads ``h'`` and predicts those features,
``b(h') [..., F]``, for an auxiliary task-inference loss (``rl2.task_inference_coef``), the
only reader of its output. A step whose mask is 0 (after its episode terminated) leaves the
GRU's ``h`` unchanged (the LSTM's ``c``), and the sampler and the PPO update compute the same
states. The choices are one :class:`RecurrentPolicySpec`.

Shapes: ``N`` sequences (flattened tasks x trials), ``L`` steps, ``I`` input size, ``S`` GRU
or LSTM units, ``D`` distribution parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, get_args

import gymnasium as gym
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastadapt.policies.distributions import CategoricalLogits, DiagonalGaussian
from fastadapt.policies.recurrent_cells import CELLS, FORGET_BIAS, Cell
from fastadapt.types import Params

__all__ = [
    "HEAD_INIT_SCALE",
    "CategoricalRecurrentPolicy",
    "Cell",
    "GaussianRecurrentPolicy",
    "RecurrentPolicy",
    "RecurrentPolicySpec",
    "Unroll",
    "make_recurrent_policy",
]

HEAD_INIT_SCALE = 0.01
"""The distribution head's initial weights are scaled by this: a near-uniform first policy."""


@dataclass(frozen=True)
class RecurrentPolicySpec:
    """The architecture of a recurrent policy (the observation and action sizes come from the
    task family; see the module docstring)."""

    hidden_size: int = 64
    """``S``: units of each trunk."""
    cell: Cell = "gru"
    """The trunk's cell (:mod:`fastadapt.policies.recurrent_cells`)."""
    separate_value_gru: bool = False
    """The value head reads a second trunk of its own over the same inputs."""
    time_input: bool = False
    """Also read ``t / L``, the fraction of the trial's steps already taken."""
    transition_input: bool = False
    """Also read the previous transition's columns (discrete actions only)."""
    critic_features: int = 0
    """Width ``F`` of the task features the value head reads (0: it reads ``h`` only)."""
    belief_features: int = 0
    """Width ``F`` of the task features the belief head predicts (0: no belief head)."""
    init_std: float = 1.0
    """Initial ``sigma`` of a Gaussian policy's actions."""
    min_std: float = 1e-6
    """Lower bound on a Gaussian policy's ``sigma``."""


class Unroll(NamedTuple):
    """What the recurrent trunk computes along sequences.

    Attributes:
        out: distribution parameters ``[N, L, D]``.
        values: state values ``V(h_t)`` (``V(h_t, f)`` with a task critic) ``[N, L]``.
        hidden: state after each step, ``[N, L, state_size]`` (``hidden[:, -1]`` continues);
            after the last step only, ``[N, 1, state_size]``, when unrolled with
            ``all_states=False``.
        beliefs: the belief head's predicted task features ``[N, L, F]`` (policy built with
            ``belief_features = F > 0`` and unrolled with ``beliefs=True``), else ``None``.
    """

    out: Tensor
    values: Tensor
    hidden: Tensor
    beliefs: Tensor | None = None


class _RecurrentCore(nn.Module):
    """Recurrent trunk (GRU or LSTM) with distribution and value heads; subclasses add the
    distribution.

    With ``separate_value_gru`` the value head reads a second trunk of the same cell and size
    over the same inputs (Duan et al. 2016 fit their baseline as a separate RNN), so the
    critic's regression never moves the policy's hidden state; the state is then both trunks'
    states side by side (policy trunk first). Parameters are named ``{trunk}_input.*`` and
    ``{trunk}_hidden.*`` with ``trunk`` in ``gru``, ``value_gru`` (or ``lstm``, ``value_lstm``).
    """

    def __init__(self, obs_dim: int, action_features: int, head_dim: int,
                 spec: RecurrentPolicySpec) -> None:
        super().__init__()
        hidden_size, cell, transition_input = spec.hidden_size, spec.cell, spec.transition_input
        critic_features, belief_features = spec.critic_features, spec.belief_features
        if cell not in get_args(Cell):
            raise ValueError(f"cell must be one of {get_args(Cell)}, got {cell!r}")
        self.obs_dim, self.action_features, self.hidden_size = obs_dim, action_features, hidden_size
        self.time_input, self.cell, self.transition_input = spec.time_input, cell, transition_input
        self.transition_features = 2 * (obs_dim + 1) * action_features if transition_input else 0
        """Width of the ``transition_input`` columns (0 without it)."""
        self.input_size = (obs_dim + action_features + 2 + int(spec.time_input)
                           + self.transition_features)
        self.separate_value_gru = spec.separate_value_gru
        self.trunks = (cell, f"value_{cell}") if spec.separate_value_gru else (cell,)
        self.trunk_state_size = hidden_size * (2 if cell == "lstm" else 1)
        """Width of one trunk's state: ``h`` (GRU, ``S``) or ``[h, c]`` (LSTM, ``2S``)."""
        self.state_size = len(self.trunks) * self.trunk_state_size
        """Width of the carried state (both trunks' with a separate value trunk)."""
        gates = 4 if cell == "lstm" else 3
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn.GRU's and torch.nn.LSTM's initialisation
        for trunk in self.trunks:
            layers = (nn.Linear(self.input_size, gates * hidden_size),
                      nn.Linear(hidden_size, gates * hidden_size))
            for name, layer in zip(("input", "hidden"), layers, strict=True):
                self.add_module(f"{trunk}_{name}", layer)
            for layer in layers:
                nn.init.uniform_(layer.weight, -bound, bound)
                nn.init.uniform_(layer.bias, -bound, bound)
            if cell == "lstm":
                with torch.no_grad():
                    layers[0].bias[hidden_size : 2 * hidden_size] += FORGET_BIAS
        self.head = nn.Linear(hidden_size, head_dim)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            self.head.bias.zero_()
        self.critic_features = critic_features
        """Width ``F`` of the task features the value head reads (0: it reads ``h`` only)."""
        if critic_features:
            self.value_hidden = nn.Linear(hidden_size + critic_features, hidden_size)
        self.value = nn.Linear(hidden_size, 1)
        self.belief_features = belief_features
        """Width ``F`` of the task features the belief head predicts (0: no belief head)."""
        if belief_features:
            self.belief = nn.Linear(hidden_size, belief_features)

    @property
    def reads_task_features(self) -> bool:
        """Whether an update needs each trial's task features (a task critic or a belief
        head); the policy's actions never depend on them."""
        return bool(self.critic_features or self.belief_features)

    def initial_hidden(self, num_sequences: int, device: torch.device | None = None) -> Tensor:
        """The state every trial starts from: zeros ``[N, state_size]`` (on ``device``)."""
        return torch.zeros(num_sequences, self.state_size, device=device)

    def action_encoding(self, actions: Tensor) -> Tensor:
        """Actions as network inputs: ``[N, A]`` float (identity) or ``[N]`` int -> one-hot."""
        if not actions.is_floating_point():
            return F.one_hot(actions.long(), self.action_features).to(torch.float32)
        return actions.to(torch.float32)

    def encode(self, obs: Tensor, prev_actions: Tensor, prev_rewards: Tensor, first: Tensor,
               progress: float | Tensor = 0.0, prev_obs: Tensor | None = None) -> Tensor:
        """The input ``x = [s, a_prev, r_prev, d]``, then ``t / L`` with ``time_input`` and
        the transition columns with ``transition_input`` (see the module docstring), ``[N, I]``.

        Args:
            obs: ``[N, O]``.
            prev_actions: encoded previous actions ``[N, action_features]`` (zeros at the
                start of a trial), see :meth:`action_encoding`.
            prev_rewards: ``[N]`` (zero at the start of a trial).
            first: ``[N]``, 1.0 on the first step of an episode other than the trial's first.
            progress: ``t / L`` for the trial's step ``t = 0..L-1``, the same for all ``N``
                (a float) or one per sequence (``[N]``); read only with ``time_input``.
            prev_obs: the observation the previous action was taken in ``[N, O]`` (any value
                at the start of a trial, where ``prev_actions`` is zero); needed with
                ``transition_input`` only.
        """
        columns = [obs, prev_actions, prev_rewards[:, None], first[:, None]]
        if self.time_input:
            columns.append(progress.to(first.dtype)[:, None] if isinstance(progress, Tensor)
                           else torch.full_like(first[:, None], progress))
        if self.transition_input:
            if prev_obs is None:
                raise ValueError("transition_input needs prev_obs")
            state = torch.cat([torch.ones_like(first[:, None]), prev_obs], dim=-1)  # [N, O+1]
            pair = (state[:, :, None] * prev_actions[:, None, :]).flatten(1)  # [N, (O+1) A]
            columns += [pair, pair * prev_rewards[:, None]]
        return torch.cat(columns, dim=-1)

    def _distribution_out(self, params: Params, hidden: Tensor) -> Tensor:
        out: Tensor = F.linear(hidden, params["head.weight"], params["head.bias"])
        return out

    def _values(self, params: Params, hidden: Tensor, task_features: Tensor | None) -> Tensor:
        """``V(h)`` ``[N, L]`` from the value trunk's ``h`` ``[N, L, S]``; with a task critic,
        ``V(h, f) = w . tanh(W [h, f] + b) + c`` for the task features ``f`` ``[N, F]``
        (``W f + b`` computed once per sequence).

        Raises:
            ValueError: a task critic without ``task_features`` ``[N, F]`` of its width.
        """
        if not self.critic_features:
            return F.linear(hidden, params["value.weight"], params["value.bias"]).squeeze(-1)
        expected = (hidden.shape[0], self.critic_features)
        if task_features is None or tuple(task_features.shape) != expected:
            got = None if task_features is None else tuple(task_features.shape)
            raise ValueError(f"this policy's value head reads the task: task_features must be "
                             f"[N, F] = {list(expected)}, got {got}")
        weight, size = params["value_hidden.weight"], self.hidden_size
        task = F.linear(task_features, weight[:, size:], params["value_hidden.bias"])  # [N, S]
        layer = torch.tanh(F.linear(hidden, weight[:, :size]) + task[:, None])
        return F.linear(layer, params["value.weight"], params["value.bias"]).squeeze(-1)

    def unroll(self, params: Params, inputs: Tensor, masks: Tensor, hidden: Tensor,
               all_states: bool = True, task_features: Tensor | None = None,
               beliefs: bool = False) -> Unroll:
        """Run the trunk(s) over sequences with explicit ``params`` (named as
        ``named_parameters``).

        Args:
            inputs: ``[N, L, I]`` from :meth:`encode`.
            masks: ``[N, L]``; where 0 the state is carried over (see the module docstring
                for the LSTM's ``h``).
            hidden: the state before the first step, ``[N, state_size]``.
            all_states: return the state after every step; ``False`` returns the last one
                only (what a loss over the outputs needs: the LSTM then skips recomputing
                ``c`` at every step).
            task_features: the task features ``[N, F]`` of each sequence, read by the value
                head only; needed when the policy was built with ``critic_features = F > 0``
                (ignored otherwise).
            beliefs: also compute the belief head's predictions (a policy built with
                ``belief_features > 0``; only the task-inference loss reads them, so sampling
                skips them).

        Returns:
            :class:`Unroll` with outputs, values and the states ``[N, L, state_size]`` of
            every step (``[N, 1, state_size]``, the last, without ``all_states``), and the
            beliefs when asked for and the policy has a belief head.
        """
        frozen = (masks <= 0).to(inputs.dtype).unsqueeze(-1)  # [N, L, 1]
        inputs = torch.cat([inputs, frozen], dim=-1)
        width, size = self.trunk_state_size, self.hidden_size
        run = CELLS[self.cell]
        trunk_states = [run(params, trunk, inputs, hidden[:, k * width : (k + 1) * width],
                            all_states) for k, trunk in enumerate(self.trunks)]
        policy_h, value_h = (trunk_states[0][0][..., :size], trunk_states[-1][0][..., :size])
        states = torch.cat([s for _, s in trunk_states], dim=-1)
        values = self._values(params, value_h, task_features)
        predicted = (F.linear(policy_h, params["belief.weight"], params["belief.bias"])
                     if beliefs and self.belief_features else None)
        return Unroll(self._distribution_out(params, policy_h), values, states, predicted)

    def params(self) -> Params:
        """The module's own parameters as a detached ``Params`` dict (a fresh initialisation)."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}


class CategoricalRecurrentPolicy(CategoricalLogits, _RecurrentCore):
    """Recurrent policy over ``K`` discrete actions; ``out`` are the logits ``[..., K]``.

    Args:
        obs_dim: observation size ``O``.
        num_actions: ``K``.
        spec: the architecture (``init_std`` and ``min_std`` unused).
    """

    def __init__(self, obs_dim: int, num_actions: int, spec: RecurrentPolicySpec) -> None:
        super().__init__(obs_dim, num_actions, num_actions, spec)
        self.num_actions = num_actions


class GaussianRecurrentPolicy(DiagonalGaussian, _RecurrentCore):
    """Recurrent policy with a diagonal Gaussian head and state-independent ``log sigma``;
    ``out = [mu, log sigma]`` ``[..., 2A]``.

    Args:
        obs_dim: observation size ``O``.
        action_dim: ``A``.
        spec: the architecture.

    Raises:
        ValueError: ``spec.transition_input`` (discrete actions only).
    """

    def __init__(self, obs_dim: int, action_dim: int, spec: RecurrentPolicySpec) -> None:
        if spec.transition_input:
            raise ValueError("transition_input needs a Discrete action space")
        super().__init__(obs_dim, action_dim, action_dim, spec)
        self.action_dim = action_dim
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(spec.init_std)))
        self.min_log_std = math.log(spec.min_std)

    def _distribution_out(self, params: Params, hidden: Tensor) -> Tensor:
        mean = F.linear(hidden, params["head.weight"], params["head.bias"])
        log_std = params["log_std"].clamp(min=self.min_log_std).expand_as(mean)
        return torch.cat([mean, log_std], dim=-1)


RecurrentPolicy = CategoricalRecurrentPolicy | GaussianRecurrentPolicy


def make_recurrent_policy(obs_dim: int, action_space: gym.spaces.Space[Any],
                          spec: RecurrentPolicySpec) -> RecurrentPolicy:
    """A categorical recurrent policy for a ``Discrete`` action space, Gaussian for a ``Box``.

    Raises:
        ValueError: ``spec.transition_input`` with an action space that is not ``Discrete``.
        TypeError: another action space.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalRecurrentPolicy(obs_dim, int(action_space.n), spec)
    if spec.transition_input:
        raise ValueError(f"transition_input needs a Discrete action space, got {action_space!r}")
    if isinstance(action_space, gym.spaces.Box):
        return GaussianRecurrentPolicy(obs_dim, int(action_space.shape[0]), spec)
    raise TypeError(f"unsupported action space {action_space!r}")
