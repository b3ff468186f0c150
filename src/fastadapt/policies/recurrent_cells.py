"""The recurrent cells of RL²'s policies (:mod:`fastadapt.policies.recurrent`), run over
sequences with explicit params: GRU, ReLU-candidate GRU and LSTM.

GRU update (Cho et al. 2014; the gate layout of ``torch.nn.GRUCell``)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The recurrence runs in ``torch.gru`` (the kernel of ``torch.nn.GRU``, much faster on a CPU than
a Python loop over steps). A step whose mask is 0 (after its episode terminated) gets an extra
input that saturates its update gate (:data:`FREEZE_LOGIT`), which is how the kernel keeps ``h``
unchanged. Tests compare it with ``torch.nn.GRUCell`` stepped by hand.

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

Each function takes a trunk's parameters by name (``{trunk}_input.*``, ``{trunk}_hidden.*``)
and ``inputs [N, L, I + 1]`` whose last column is the frozen flag (1.0 on masked steps).
Shapes: ``N`` sequences, ``L`` steps, ``I`` input size, ``S`` units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from fastadapt.types import Params

FREEZE_LOGIT = 1e4
"""Added to the update gate's pre-activation on masked steps: ``z = sigmoid(.)`` is then 1.0
exactly (float32 and float64), so ``h' = n + z (h - n) = h`` up to one rounding (the kernel's
form of the update) and no gradient flows through the gate."""
FORGET_BIAS = 1.0
"""Added to the LSTM forget gate's initial bias (Jozefowicz et al. 2015): memory kept by
default at the start of training."""

Cell = Literal["gru", "lstm", "relu_gru"]
"""The recurrent cell of the trunk(s)."""


def _hidden_size(params: Params, trunk: str) -> int:
    """``S``: the width of the trunk's state ``h`` (its hidden weight is ``[gates * S, S]``)."""
    return int(params[f"{trunk}_hidden.weight"].shape[1])


def gru(params: Params, trunk: str, inputs: Tensor, hidden: Tensor,
        all_states: bool) -> tuple[Tensor, Tensor]:
    """One GRU's outputs ``h`` ``[N, L, S]`` over ``inputs [N, L, I + 1]`` (last: frozen
    flag), and its states: ``h`` again, or ``h`` after the last step ``[N, 1, S]``."""
    size = _hidden_size(params, trunk)
    gate = torch.zeros(3 * size, 1, dtype=inputs.dtype, device=inputs.device)
    gate[size : 2 * size] = FREEZE_LOGIT  # the update gate's rows
    weights = [torch.cat([params[f"{trunk}_input.weight"], gate], dim=1),
               params[f"{trunk}_hidden.weight"], params[f"{trunk}_input.bias"],
               params[f"{trunk}_hidden.bias"]]
    stacked, _ = torch.gru(inputs, hidden[None], weights, True, 1, 0.0, True, False, True)
    return stacked, stacked if all_states else stacked[:, -1:]


def relu_gru(params: Params, trunk: str, inputs: Tensor, hidden: Tensor,
             all_states: bool) -> tuple[Tensor, Tensor]:
    """:func:`gru` with a ReLU candidate ``n = relu(W_in x + b_in + r * (W_hn h + b_hn))``
    (same gate layout), stepped in Python; a frozen step keeps ``h`` exactly."""
    size = _hidden_size(params, trunk)
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


def lstm(params: Params, trunk: str, inputs: Tensor, state: Tensor,
         all_states: bool) -> tuple[Tensor, Tensor]:
    """One LSTM's outputs ``h`` ``[N, L, S]`` over ``inputs [N, L, I + 1]`` (last: frozen
    flag) from ``state [N, 2S]``, and its states ``[h, c]``: ``[N, L, 2S]``, or after the
    last step only ``[N, 1, 2S]``."""
    size = _hidden_size(params, trunk)
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


CELLS: dict[str, Callable[[Params, str, Tensor, Tensor, bool], tuple[Tensor, Tensor]]] = {
    "gru": gru, "lstm": lstm, "relu_gru": relu_gru}
"""Each :data:`Cell`'s function: ``(params, trunk, inputs, state, all_states) -> (h, states)``."""
