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

GRU update (Cho et al. 2014; the gate layout of ``torch.nn.GRUCell``)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

``h'`` feeds a distribution head (``out [..., D]``, see :mod:`fastadapt.policies.distributions`)
and a value head ``V(h')`` (or, with ``separate_value_gru``, ``V`` reads a second GRU of its
own over the same inputs, as Duan et al. 2016's RNN baseline). With ``critic_features = F > 0``
the value head also reads the training task's features ``f`` (``[N, F]``, the same at every
step of a sequence) through one hidden layer of ``S`` tanh units, ``V(h', f)``: a critic that
knows the task, which the policy never sees (``rl2.task_critic``). With
``belief_features = F > 0`` a linear belief head reads ``h'`` and predicts those features,
``b(h') [..., F]``, for an auxiliary task-inference loss (``rl2.task_inference_coef``), the
only reader of its output. A step whose mask is 0 (after its episode terminated) leaves the
GRU's ``h`` unchanged (the LSTM's ``c``, see below), and the sampler and the PPO update
compute the same states. The recurrence runs in
``torch.gru`` (the kernel of ``torch.nn.GRU``, much faster on a CPU than a Python loop over
steps); a masked step gets an extra input that saturates its update gate
(:data:`FREEZE_LOGIT`), which is how the kernel keeps ``h`` unchanged. Tests compare it with
``torch.nn.GRUCell`` stepped by hand.

With ``cell="relu_gru"`` the candidate is ``n = relu(.)`` instead of ``tanh(.)``, the GRU of
Duan et al.'s final bandit runs (rllab's ``GRULayer`` with ``hidden_nonlinearity=relu``,
``launchers/102016/1019/mab_9.py`` in florensacc/rllab-curriculum). Its state is unbounded
above: with ``n = h + 1`` on the units that count an event, ``h' = h + (1 - z)`` adds instead
of saturating, so a count of pulls or successes can grow across a long trial where ``tanh``
squashes it into ``(-1, 1)``. No fused kernel computes it: the steps run in a Python loop
(the input projection of all steps is one matrix product); a masked step keeps ``h``
exactly.

With ``cell="lstm"`` the trunk is an LSTM (Hochreiter & Schmidhuber 1997; the gate layout of
``torch.nn.LSTMCell``, Wang et al. 2016's cell), whose additive cell state can count (Weiss et
al. 2018: an LSTM keeps exact counts where a GRU's convex update cannot, and counts of what
each action returned are what a Bayes-optimal bandit or MDP player needs)::

    i, f, g, o = sigmoid(.), sigmoid(.), tanh(.), sigmoid(.)   of W_i x + b_i + W_h h + b_h
    c' = f * c + i * g
    h' = o * tanh(c')

The carried state is then ``[h, c]`` (``2S`` per trunk); the forget gate's bias starts at +1
(Jozefowicz et al. 2015). A masked step saturates ``i`` shut and ``f``, ``o`` open, so ``c``
is kept exactly and ``h' = tanh(c)`` (only what the previous output gate masked out of ``h``
is lost; an LSTM kernel cannot keep ``h`` itself: ``o`` would have to repeat its previous
value). ``torch.lstm`` returns ``h`` at every step but ``c`` only at the last, so when every
step's state is asked for (``all_states``), ``c`` is recomputed from the gates (two matrix
products, then an elementwise loop over steps). Tests compare it with ``torch.nn.LSTMCell``
stepped by hand, values and gradients.

Shapes: ``N`` sequences (flattened tasks x trials), ``L`` steps, ``I`` input size, ``S`` GRU
or LSTM units, ``D`` distribution parameters.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, get_args

import gymnasium as gym
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastadapt.policies.distributions import CategoricalLogits, DiagonalGaussian
from fastadapt.types import Params

FREEZE_LOGIT = 1e4
"""Added to the update gate's pre-activation on masked steps: ``z = sigmoid(.)`` is then 1.0
exactly (float32 and float64), so ``h' = n + z (h - n) = h`` up to one rounding (the kernel's
form of the update) and no gradient flows through the gate."""
FORGET_BIAS = 1.0
"""Added to the LSTM forget gate's initial bias (Jozefowicz et al. 2015): memory kept by
default at the start of training."""
HEAD_INIT_SCALE = 0.01
"""The distribution head's initial weights are scaled by this: a near-uniform first policy."""


Cell = Literal["gru", "lstm", "relu_gru"]
"""The recurrent cell of the trunk(s)."""


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

    def __init__(self, obs_dim: int, action_features: int, head_dim: int, hidden_size: int,
                 separate_value_gru: bool = False, time_input: bool = False,
                 cell: Cell = "gru", transition_input: bool = False,
                 critic_features: int = 0, belief_features: int = 0) -> None:
        super().__init__()
        if cell not in get_args(Cell):
            raise ValueError(f"cell must be one of {get_args(Cell)}, got {cell!r}")
        self.obs_dim, self.action_features, self.hidden_size = obs_dim, action_features, hidden_size
        self.time_input, self.cell, self.transition_input = time_input, cell, transition_input
        self.transition_features = 2 * (obs_dim + 1) * action_features if transition_input else 0
        """Width of the ``transition_input`` columns (0 without it)."""
        self.input_size = (obs_dim + action_features + 2 + int(time_input)
                           + self.transition_features)
        self.separate_value_gru = separate_value_gru
        self.trunks = (cell, f"value_{cell}") if separate_value_gru else (cell,)
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
               progress: float = 0.0, prev_obs: Tensor | None = None) -> Tensor:
        """The input ``x = [s, a_prev, r_prev, d]``, then ``t / L`` with ``time_input`` and
        the transition columns with ``transition_input`` (see the module docstring), ``[N, I]``.

        Args:
            obs: ``[N, O]``.
            prev_actions: encoded previous actions ``[N, action_features]`` (zeros at the
                start of a trial), see :meth:`action_encoding`.
            prev_rewards: ``[N]`` (zero at the start of a trial).
            first: ``[N]``, 1.0 on the first step of an episode other than the trial's first.
            progress: ``t / L`` for the trial's step ``t = 0..L-1``, the same for all ``N``
                (read only with ``time_input``).
            prev_obs: the observation the previous action was taken in ``[N, O]`` (any value
                at the start of a trial, where ``prev_actions`` is zero); needed with
                ``transition_input`` only.
        """
        columns = [obs, prev_actions, prev_rewards[:, None], first[:, None]]
        if self.time_input:
            columns.append(torch.full_like(first[:, None], progress))
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
        run = {"gru": self._gru, "lstm": self._lstm, "relu_gru": self._relu_gru}[self.cell]
        trunk_states = [run(params, trunk, inputs, hidden[:, k * width : (k + 1) * width],
                            all_states) for k, trunk in enumerate(self.trunks)]
        policy_h, value_h = (trunk_states[0][0][..., :size], trunk_states[-1][0][..., :size])
        states = torch.cat([s for _, s in trunk_states], dim=-1)
        values = self._values(params, value_h, task_features)
        predicted = (F.linear(policy_h, params["belief.weight"], params["belief.bias"])
                     if beliefs and self.belief_features else None)
        return Unroll(self._distribution_out(params, policy_h), values, states, predicted)

    def _gru(self, params: Params, trunk: str, inputs: Tensor, hidden: Tensor,
             all_states: bool) -> tuple[Tensor, Tensor]:
        """One GRU's outputs ``h`` ``[N, L, S]`` over ``inputs [N, L, I + 1]`` (last: frozen
        flag), and its states: ``h`` again, or ``h`` after the last step ``[N, 1, S]``."""
        size = self.hidden_size
        gate = torch.zeros(3 * size, 1, dtype=inputs.dtype, device=inputs.device)
        gate[size : 2 * size] = FREEZE_LOGIT  # the update gate's rows
        weights = [torch.cat([params[f"{trunk}_input.weight"], gate], dim=1),
                   params[f"{trunk}_hidden.weight"], params[f"{trunk}_input.bias"],
                   params[f"{trunk}_hidden.bias"]]
        stacked, _ = torch.gru(inputs, hidden[None], weights, True, 1, 0.0, True, False, True)
        return stacked, stacked if all_states else stacked[:, -1:]

    def _relu_gru(self, params: Params, trunk: str, inputs: Tensor, hidden: Tensor,
                  all_states: bool) -> tuple[Tensor, Tensor]:
        """:meth:`_gru` with a ReLU candidate ``n = relu(W_in x + b_in + r * (W_hn h + b_hn))``
        (same gate layout), stepped in Python; a frozen step keeps ``h`` exactly."""
        size = self.hidden_size
        frozen = inputs[..., -1:] > 0  # [N, L, 1]
        any_frozen = bool(frozen.any())
        x_gates = F.linear(inputs[..., :-1], params[f"{trunk}_input.weight"],
                           params[f"{trunk}_input.bias"])  # [N, L, 3S], all steps at once
        w_hidden, b_hidden = params[f"{trunk}_hidden.weight"], params[f"{trunk}_hidden.bias"]
        h, outputs = hidden, []
        # unbind, not x_gates[:, t]: a slice's backward writes a zero [N, L, 3S] gradient per step
        for x_t, frozen_t in zip(x_gates.unbind(1), frozen.unbind(1), strict=True):
            h_gates = torch.addmm(b_hidden, h, w_hidden.t())
            reset, update = torch.sigmoid(x_t[:, : 2 * size]
                                          + h_gates[:, : 2 * size]).chunk(2, dim=-1)
            candidate = torch.relu(torch.addcmul(x_t[:, 2 * size :], reset,
                                                 h_gates[:, 2 * size :]))
            stepped = torch.addcmul(candidate, update, h - candidate)  # n + z (h - n)
            h = torch.where(frozen_t, h, stepped) if any_frozen else stepped
            outputs.append(h)
        stacked = torch.stack(outputs, dim=1)
        return stacked, stacked if all_states else stacked[:, -1:]

    def _lstm(self, params: Params, trunk: str, inputs: Tensor, state: Tensor,
              all_states: bool) -> tuple[Tensor, Tensor]:
        """One LSTM's outputs ``h`` ``[N, L, S]`` over ``inputs [N, L, I + 1]`` (last: frozen
        flag) from ``state [N, 2S]``, and its states ``[h, c]``: ``[N, L, 2S]``, or after the
        last step only ``[N, 1, 2S]``."""
        size = self.hidden_size
        gate = torch.zeros(4 * size, 1, dtype=inputs.dtype, device=inputs.device)
        gate[:size] = -FREEZE_LOGIT  # input gate shut
        gate[size : 2 * size] = FREEZE_LOGIT  # forget gate open
        gate[3 * size :] = FREEZE_LOGIT  # output gate open
        w_input = torch.cat([params[f"{trunk}_input.weight"], gate], dim=1)
        w_hidden = params[f"{trunk}_hidden.weight"]
        b_input, b_hidden = params[f"{trunk}_input.bias"], params[f"{trunk}_hidden.bias"]
        h0, c0 = state[:, :size], state[:, size:]
        outputs, _, c_last = torch.lstm(inputs, (h0[None], c0[None]),
                                        [w_input, w_hidden, b_input, b_hidden],
                                        True, 1, 0.0, True, False, True)
        if inputs.shape[1] == 1 or not all_states:
            return outputs, torch.cat([outputs[:, -1:], c_last[0][:, None]], dim=-1)
        # c at every step: c_t = f_t c_{t-1} + i_t g_t, gates from x_t and h_{t-1}
        h_before = torch.cat([h0[:, None], outputs[:, :-1]], dim=1)
        pre = F.linear(inputs, w_input, b_input) + F.linear(h_before, w_hidden, b_hidden)
        forget = torch.sigmoid(pre[..., size : 2 * size])
        written = torch.sigmoid(pre[..., :size]) * torch.tanh(pre[..., 2 * size : 3 * size])
        cells, c = [], c0
        for t in range(inputs.shape[1]):
            c = forget[:, t] * c + written[:, t]
            cells.append(c)
        return outputs, torch.cat([outputs, torch.stack(cells, dim=1)], dim=-1)

    def params(self) -> Params:
        """The module's own parameters as a detached ``Params`` dict (a fresh initialisation)."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}


class CategoricalRecurrentPolicy(CategoricalLogits, _RecurrentCore):
    """Recurrent policy over ``K`` discrete actions; ``out`` are the logits ``[..., K]``."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_size: int = 64,
                 separate_value_gru: bool = False, time_input: bool = False,
                 cell: Cell = "gru", transition_input: bool = False,
                 critic_features: int = 0, belief_features: int = 0) -> None:
        super().__init__(obs_dim, num_actions, num_actions, hidden_size, separate_value_gru,
                         time_input, cell, transition_input, critic_features, belief_features)
        self.num_actions = num_actions


class GaussianRecurrentPolicy(DiagonalGaussian, _RecurrentCore):
    """Recurrent policy with a diagonal Gaussian head and state-independent ``log sigma``;
    ``out = [mu, log sigma]`` ``[..., 2A]``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int = 64,
                 init_std: float = 1.0, min_std: float = 1e-6,
                 separate_value_gru: bool = False, time_input: bool = False,
                 cell: Cell = "gru", critic_features: int = 0,
                 belief_features: int = 0) -> None:
        super().__init__(obs_dim, action_dim, action_dim, hidden_size, separate_value_gru,
                         time_input, cell, critic_features=critic_features,
                         belief_features=belief_features)
        self.action_dim = action_dim
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def _distribution_out(self, params: Params, hidden: Tensor) -> Tensor:
        mean = F.linear(hidden, params["head.weight"], params["head.bias"])
        log_std = params["log_std"].clamp(min=self.min_log_std).expand_as(mean)
        return torch.cat([mean, log_std], dim=-1)


RecurrentPolicy = CategoricalRecurrentPolicy | GaussianRecurrentPolicy


def make_recurrent_policy(obs_dim: int, action_space: gym.spaces.Space[Any], hidden_size: int,
                          init_std: float, separate_value_gru: bool = False,
                          time_input: bool = False, cell: Cell = "gru",
                          transition_input: bool = False, critic_features: int = 0,
                          belief_features: int = 0) -> RecurrentPolicy:
    """A categorical recurrent policy for a ``Discrete`` action space, Gaussian for a ``Box``
    (``transition_input``: discrete actions only; ``critic_features`` / ``belief_features``:
    the width of the task features the value head reads / the belief head predicts, 0 for
    none)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalRecurrentPolicy(obs_dim, int(action_space.n), hidden_size,
                                          separate_value_gru, time_input, cell, transition_input,
                                          critic_features, belief_features)
    if transition_input:
        raise ValueError(f"transition_input needs a Discrete action space, got {action_space!r}")
    if isinstance(action_space, gym.spaces.Box):
        return GaussianRecurrentPolicy(obs_dim, int(action_space.shape[0]), hidden_size,
                                       init_std, separate_value_gru=separate_value_gru,
                                       time_input=time_input, cell=cell,
                                       critic_features=critic_features,
                                       belief_features=belief_features)
    raise TypeError(f"unsupported action space {action_space!r}")
