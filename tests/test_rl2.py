"""RL²: hidden-state handling of the trial sampler and the recurrent policy, the PPO update."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from torch import Tensor

from fastadapt.algorithms.common.ppo import PPOConfig
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.update import RL2PPO
from fastadapt.envs.navigation import BatchedNavigation, Navigation2D, NavigationTask
from fastadapt.policies.recurrent import (
    Cell,
    RecurrentPolicy,
    RecurrentPolicySpec,
    Unroll,
    make_recurrent_policy,
)
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params, Trials

HORIZON, EPISODES = 6, 3
CellT = TypeVar("CellT", torch.nn.GRUCell, torch.nn.LSTMCell)


class _EarlyEndNavigation(Navigation2D):
    """Navigation whose episodes of task 0 terminate after 2 steps: holes inside trials."""

    name = "EarlyEndNavigation"

    def make_batched(self, tasks: list[NavigationTask], episodes_per_task: int,
                     rng: Any) -> BatchedNavigation:
        env = super().make_batched(tasks, episodes_per_task, rng)
        step, reset, counter = env.step, env.reset, [0]

        def early_step(actions: np.ndarray) -> Any:
            obs, rewards, terminated = step(actions)
            counter[0] += 1
            terminated = terminated.copy()
            terminated[0] |= counter[0] >= 2
            return obs, rewards, terminated

        def counting_reset() -> np.ndarray:
            counter[0] = 0
            return reset()

        env.step, env.reset = early_step, counting_reset  # type: ignore[method-assign]
        return env


def _sample(family: Any, calls: int = 1, time_input: bool = False, cell: Cell = "gru"
            ) -> tuple[RecurrentPolicy, list[Trials]]:
    """``calls`` successive samples of 3 tasks x 2 trials with one sampler."""
    torch.manual_seed(0)
    policy = make_recurrent_policy(2, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=0.5, time_input=time_input, cell=cell))
    sampler = VectorSampler(family, policy, HORIZON, seed=0)
    tasks = family.sample_tasks(np.random.default_rng(0), 3)
    return policy, [sampler.sample_trials(policy.params(), tasks, 2, EPISODES)
                    for _ in range(calls)]


@pytest.mark.parametrize("cell", ["gru", "lstm", "relu_gru"])
def test_recomputed_hidden_states_equal_the_rollout_for_any_minibatch(cell: Cell) -> None:
    policy, (trials,) = _sample(_EarlyEndNavigation(), cell=cell)
    masks = trials.masks.flatten(0, 1)
    assert masks[:2].sum() < masks[2:4].sum(), "task 0 must have holes"
    for index in (torch.arange(6), torch.tensor([4, 0]), torch.tensor([3])):
        inputs = trials.inputs.flatten(0, 1)[index]
        unroll = policy.unroll(policy.params(), inputs, masks[index],
                               policy.initial_hidden(len(index)))
        assert torch.allclose(unroll.hidden, trials.hidden.flatten(0, 1)[index], atol=1e-6)
        log_probs = policy.log_prob(unroll.out, trials.actions.flatten(0, 1)[index])
        assert torch.allclose(log_probs, trials.log_probs.flatten(0, 1)[index], atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm", "relu_gru"])
def test_sampler_keeps_hidden_state_across_episodes_and_resets_it_between_trials(
        cell: Cell) -> None:
    policy, (trials, again) = _sample(Navigation2D(), calls=2, cell=cell)
    params, n = policy.params(), 6
    inputs, hidden = trials.inputs.flatten(0, 1), trials.hidden.flatten(0, 1)
    ones = torch.ones(n, 1)
    # every trial starts from h = 0 (also those of a second call to sample)
    first = policy.unroll(params, inputs[:, :1], ones, policy.initial_hidden(n)).hidden[:, 0]
    assert torch.allclose(hidden[:, 0], first, atol=1e-6)
    first = policy.unroll(params, again.inputs.flatten(0, 1)[:, :1], ones,
                          policy.initial_hidden(n)).hidden[:, 0]
    assert torch.allclose(again.hidden.flatten(0, 1)[:, 0], first, atol=1e-6)
    for start in range(HORIZON, EPISODES * HORIZON, HORIZON):
        # episode k > 0 continues from the previous episode's last state, not from zero
        carried = policy.unroll(params, inputs[:, start:start + 1], ones,
                                hidden[:, start - 1]).hidden[:, 0]
        fresh = policy.unroll(params, inputs[:, start:start + 1], ones,
                              policy.initial_hidden(n)).hidden[:, 0]
        assert torch.allclose(hidden[:, start], carried, atol=1e-6)
        assert not torch.allclose(hidden[:, start], fresh, atol=1e-3)
    flags = inputs[..., -1]  # 1.0 exactly on the first step of episodes 2..N
    expected = torch.zeros(EPISODES * HORIZON)
    expected[HORIZON::HORIZON] = 1.0
    assert torch.equal(flags, expected.expand_as(flags))


def test_time_input_reads_the_fraction_of_the_trial_already_taken() -> None:
    plain, (without,) = _sample(_EarlyEndNavigation())
    policy, (trials,) = _sample(_EarlyEndNavigation(), time_input=True)
    assert policy.input_size == plain.input_size + 1
    length = EPISODES * HORIZON
    # t / L at every step of every trial, masked steps included; before it, the first step
    # reads what the plain policy reads
    expected = torch.arange(length, dtype=torch.float32) / length
    assert torch.equal(trials.inputs[..., -1], expected.expand_as(trials.inputs[..., -1]))
    assert torch.equal(trials.inputs[0, 0, :1, :-1], without.inputs[0, 0, :1])
    # the PPO update's recomputation from the trial start sees the same inputs
    inputs, masks = trials.inputs.flatten(0, 1), trials.masks.flatten(0, 1)
    unroll = policy.unroll(policy.params(), inputs, masks, policy.initial_hidden(6))
    assert torch.allclose(unroll.hidden, trials.hidden.flatten(0, 1), atol=1e-6)


def _torch_cell(params: Params, trunk: str, input_size: int, kind: type[CellT]) -> CellT:
    """``torch.nn.GRUCell`` or ``LSTMCell`` of 8 units holding ``trunk``'s parameters."""
    cell = kind(input_size, 8)
    cell.load_state_dict({
        "weight_ih": params[f"{trunk}_input.weight"], "weight_hh": params[f"{trunk}_hidden.weight"],
        "bias_ih": params[f"{trunk}_input.bias"], "bias_hh": params[f"{trunk}_hidden.bias"],
    })
    return cell


@pytest.mark.parametrize("separate", [False, True])
def test_unroll_equals_gru_cell_stepped_by_hand_skipping_masked_steps(separate: bool) -> None:
    torch.manual_seed(0)
    policy = make_recurrent_policy(3, Navigation2D().action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, separate_value_gru=separate))
    params = policy.params()
    trunks = ["gru", "value_gru"] if separate else ["gru"]
    cells = [_torch_cell(params, trunk, policy.input_size, torch.nn.GRUCell)
             for trunk in trunks]
    inputs = torch.randn(4, 7, policy.input_size)
    masks = (torch.rand(4, 7) > 0.3).float()
    unroll = policy.unroll(params, inputs, masks, policy.initial_hidden(4))
    assert unroll.hidden.shape == (4, 7, 8 * len(trunks)) == (4, 7, policy.state_size)
    hidden = [torch.zeros(4, 8) for _ in cells]
    with torch.no_grad():
        for t in range(7):
            alive = masks[:, t, None] > 0
            hidden = [torch.where(alive, cell(inputs[:, t], h), h)
                      for cell, h in zip(cells, hidden, strict=True)]
            assert torch.allclose(unroll.hidden[:, t], torch.cat(hidden, -1), atol=1e-6)
            # the value head reads the last GRU's state: the policy's own, or the value GRU's
            value = hidden[-1] @ params["value.weight"].T + params["value.bias"]
            assert torch.allclose(unroll.values[:, t], value[:, 0], atol=1e-6)
            head = hidden[0] @ params["head.weight"].T + params["head.bias"]
            assert torch.allclose(unroll.out[:, t, :2], head, atol=1e-6)
    # a masked step keeps the state (up to float32 rounding)
    frozen = masks[:, 1:] == 0
    assert frozen.any()
    assert torch.allclose(unroll.hidden[:, 1:][frozen], unroll.hidden[:, :-1][frozen], atol=1e-6)


def _lstm_stepped_by_hand(params: Params, trunks: list[str], inputs: Tensor, masks: Tensor,
                          start: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.nn.LSTMCell`` stepped with ``params`` (gradients flow to them), a masked step
    keeping ``c`` and exposing ``h = tanh(c)``: states ``[N, L, 16 * trunks]``, values
    ``[N, L]`` and the distribution head's means ``[N, L, 2]``."""
    cell = torch.nn.LSTMCell(inputs.shape[-1], 8)
    states = [(start[:, 16 * k : 16 * k + 8], start[:, 16 * k + 8 : 16 * k + 16])
              for k in range(len(trunks))]
    hidden, values, heads = [], [], []
    for t in range(inputs.shape[1]):
        alive = masks[:, t, None] > 0
        stepped = [torch.func.functional_call(cell, {
            "weight_ih": params[f"{trunk}_input.weight"],
            "weight_hh": params[f"{trunk}_hidden.weight"],
            "bias_ih": params[f"{trunk}_input.bias"], "bias_hh": params[f"{trunk}_hidden.bias"],
        }, (inputs[:, t], state)) for trunk, state in zip(trunks, states, strict=True)]
        states = [(torch.where(alive, h, torch.tanh(c_old)), torch.where(alive, c, c_old))
                  for (h, c), (_, c_old) in zip(stepped, states, strict=True)]
        hidden.append(torch.cat([torch.cat(state, -1) for state in states], -1))
        values.append((states[-1][0] @ params["value.weight"].T + params["value.bias"])[:, 0])
        heads.append(states[0][0] @ params["head.weight"].T + params["head.bias"])
    return torch.stack(hidden, 1), torch.stack(values, 1), torch.stack(heads, 1)


def _assert_same_gradients(params: Params, unroll: Unroll, reference: tuple[Tensor, Tensor, Tensor],
                           atol: float) -> None:
    """The gradients of one loss of (states, values, head means) with respect to every parameter
    (but ``log_std``) agree through ``unroll`` and through the ``reference`` stepped by hand."""
    weights = torch.randn_like(reference[0])
    names = [name for name in params if name != "log_std"]

    def loss(h: Tensor, v: Tensor, m: Tensor) -> Tensor:
        return (h * weights).sum() + v.pow(2).sum() + m.pow(2).sum()

    ours = torch.autograd.grad(loss(unroll.hidden, unroll.values, unroll.out[..., :2]),
                               [params[n] for n in names])
    theirs = torch.autograd.grad(loss(*reference), [params[n] for n in names])
    for name, a, b in zip(names, ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=atol), name


@pytest.mark.parametrize("separate", [False, True])
def test_lstm_unroll_equals_lstm_cell_stepped_by_hand_keeping_c_on_masked_steps(
        separate: bool) -> None:
    torch.manual_seed(0)
    policy = make_recurrent_policy(3, Navigation2D().action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, separate_value_gru=separate, cell="lstm"))
    params = {name: p.requires_grad_(True) for name, p in policy.params().items()}
    trunks = ["lstm", "value_lstm"] if separate else ["lstm"]
    assert all(params[f"{t}_input.bias"][8:16].mean() > 0.5 for t in trunks)  # forget bias +1
    inputs = torch.randn(4, 7, policy.input_size)
    masks = (torch.rand(4, 7) > 0.3).float()
    assert (masks == 0).any()
    start = torch.randn(4, policy.state_size)  # a state carried in from earlier steps
    unroll = policy.unroll(params, inputs, masks, start)
    assert unroll.hidden.shape == (4, 7, 16 * len(trunks)) == (4, 7, policy.state_size)
    hidden, values, heads = _lstm_stepped_by_hand(params, trunks, inputs, masks, start)
    assert torch.allclose(unroll.hidden, hidden, atol=1e-5)
    assert torch.allclose(unroll.values, values, atol=1e-5)
    assert torch.allclose(unroll.out[..., :2], heads, atol=1e-5)
    # gradients through every state, value and output agree with autograd through the cell
    _assert_same_gradients(params, unroll, (hidden, values, heads), atol=1e-4)
    params = {name: p.detach() for name, p in params.items()}
    # stepping one step at a time from the carried state gives the same states
    hidden = start
    for t in range(7):
        hidden = policy.unroll(params, inputs[:, t : t + 1], masks[:, t : t + 1],
                               hidden).hidden[:, 0]
        assert torch.allclose(hidden, unroll.hidden[:, t], atol=1e-5)


def _relu_gru_stepped_by_hand(params: Params, trunk: str, inputs: Tensor, masks: Tensor,
                              start: Tensor) -> Tensor:
    """Duan et al.'s GRU with a ReLU candidate, one gate at a time: states ``[N, L, 8]``."""
    w_x, w_h = params[f"{trunk}_input.weight"], params[f"{trunk}_hidden.weight"]
    b_x, b_h = params[f"{trunk}_input.bias"], params[f"{trunk}_hidden.bias"]

    def gate(k: int, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """Gate ``k``'s input and hidden parts (0: reset, 1: update, 2: candidate)."""
        rows = slice(8 * k, 8 * k + 8)
        return x @ w_x[rows].T + b_x[rows], h @ w_h[rows].T + b_h[rows]

    def summed(parts: tuple[Tensor, Tensor]) -> Tensor:
        return parts[0] + parts[1]

    h, states = start, []
    for t in range(inputs.shape[1]):
        x = inputs[:, t]
        reset = torch.sigmoid(summed(gate(0, x, h)))
        update = torch.sigmoid(summed(gate(1, x, h)))
        x_n, h_n = gate(2, x, h)
        candidate = torch.relu(x_n + reset * h_n)
        h = torch.where(masks[:, t, None] > 0, (1 - update) * candidate + update * h, h)
        states.append(h)
    return torch.stack(states, 1)


@pytest.mark.parametrize("separate", [False, True])
def test_relu_gru_unroll_equals_its_equations_stepped_by_hand(separate: bool) -> None:
    torch.manual_seed(0)
    policy = make_recurrent_policy(3, Navigation2D().action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, separate_value_gru=separate,
                            cell="relu_gru"))
    params = {name: p.requires_grad_(True) for name, p in policy.params().items()}
    trunks = ["relu_gru", "value_relu_gru"] if separate else ["relu_gru"]
    inputs = torch.randn(4, 7, policy.input_size)
    masks = (torch.rand(4, 7) > 0.3).float()
    assert (masks == 0).any()
    start = torch.rand(4, policy.state_size)  # a (non-negative) state carried in
    unroll = policy.unroll(params, inputs, masks, start)
    hidden = torch.cat([_relu_gru_stepped_by_hand(params, trunk, inputs, masks,
                                                  start[:, 8 * k : 8 * k + 8])
                        for k, trunk in enumerate(trunks)], dim=-1)
    assert torch.allclose(unroll.hidden, hidden, atol=1e-6)
    values = hidden[..., -8:] @ params["value.weight"].T[:, 0] + params["value.bias"]
    assert torch.allclose(unroll.values, values, atol=1e-6)
    heads = hidden[..., :8] @ params["head.weight"].T + params["head.bias"]
    assert torch.allclose(unroll.out[..., :2], heads, atol=1e-6)
    assert (hidden >= 0).all()  # a ReLU candidate mixed with a non-negative state
    _assert_same_gradients(params, unroll, (hidden, values, heads), atol=1e-5)


def test_relu_gru_state_counts_where_the_tanh_gru_saturates() -> None:
    # unit 0: reset gate open, update gate z = 1/2, candidate n = act(h + 1), everything else 0:
    # ReLU: h' = (h + 1) / 2 + h / 2 = h + 1/2, a count; tanh: h' = (tanh(h + 1) + h) / 2 < 1
    counts = {}
    for cell in ("relu_gru", "gru"):
        policy = make_recurrent_policy(3, Navigation2D().action_space,
            RecurrentPolicySpec(hidden_size=8, init_std=1.0, cell=cell))
        params = {name: torch.zeros_like(p) for name, p in policy.params().items()}
        params[f"{cell}_input.bias"][0] = 50.0  # reset gate of unit 0 open
        params[f"{cell}_input.bias"][16] = 1.0  # candidate of unit 0: act(1 + h)
        params[f"{cell}_hidden.weight"][16, 0] = 1.0
        inputs, masks = torch.zeros(1, 100, policy.input_size), torch.ones(1, 100)
        hidden = policy.unroll(params, inputs, masks, policy.initial_hidden(1)).hidden
        counts[cell] = hidden[0, :, 0]
    assert torch.allclose(counts["relu_gru"], 0.5 * torch.arange(1.0, 101.0))
    assert counts["gru"].max() < 1.0


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm", "relu_gru"])
def test_unroll_without_all_states_returns_the_last_state_and_the_same_outputs(
        cell: Cell, separate: bool) -> None:
    torch.manual_seed(0)
    policy = make_recurrent_policy(3, Navigation2D().action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, separate_value_gru=separate, cell=cell))
    inputs, masks = torch.randn(4, 7, policy.input_size), (torch.rand(4, 7) > 0.3).float()
    full = policy.unroll(policy.params(), inputs, masks, policy.initial_hidden(4))
    last = policy.unroll(policy.params(), inputs, masks, policy.initial_hidden(4),
                         all_states=False)
    assert last.hidden.shape == (4, 1, policy.state_size)
    assert torch.allclose(last.hidden, full.hidden[:, -1:], atol=1e-6)
    assert torch.equal(last.out, full.out) and torch.equal(last.values, full.values)


def test_separate_value_gru_keeps_the_value_regression_off_the_policy_features() -> None:
    torch.manual_seed(0)
    policy = make_recurrent_policy(3, Navigation2D().action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, separate_value_gru=True))
    params = {n: p.requires_grad_(True) for n, p in policy.params().items()}
    inputs, masks = torch.randn(4, 7, policy.input_size), torch.ones(4, 7)
    unroll = policy.unroll(params, inputs, masks, policy.initial_hidden(4))
    value_grads = torch.autograd.grad(unroll.values.pow(2).sum(), list(params.values()),
                                      allow_unused=True, retain_graph=True)
    policy_grads = torch.autograd.grad((unroll.out + 1).pow(2).sum(), list(params.values()),
                                       allow_unused=True)
    for name, by_value, by_policy in zip(params, value_grads, policy_grads, strict=True):
        value_side = name.startswith(("value_gru", "value."))
        assert (by_value is not None and bool(by_value.abs().sum() > 0)) == value_side, name
        assert (by_policy is None or bool(by_policy.abs().sum() == 0)) == value_side, name


@pytest.mark.parametrize("cell", ["gru", "lstm", "relu_gru"])
def test_masked_steps_freeze_the_hidden_state_and_inputs_carry_the_last_real_step(
        cell: Cell) -> None:
    _, (trials,) = _sample(_EarlyEndNavigation(), cell=cell)
    hidden, masks, inputs = trials.hidden[0, 0], trials.masks[0, 0], trials.inputs[0, 0]
    assert masks[:HORIZON].tolist() == [1, 1, 0, 0, 0, 0]
    if cell == "lstm":  # c is kept; h becomes tanh(c) at the first masked step, then stays
        h, c = hidden[..., :8], hidden[..., 8:]
        assert torch.allclose(c[2:HORIZON], c[1].expand(HORIZON - 2, -1), atol=1e-6)
        assert torch.allclose(h[2:HORIZON], torch.tanh(c[1]).expand(HORIZON - 2, -1), atol=1e-6)
    else:
        assert torch.allclose(hidden[2:HORIZON], hidden[1].expand(HORIZON - 2, -1), atol=1e-6)
    # the next episode's first input holds the last real action and reward (step 1)
    assert torch.allclose(inputs[HORIZON, 2:4], trials.actions[0, 0, 1])
    assert inputs[HORIZON, 4] == trials.rewards[0, 0, 1]
    assert trials.rewards[0, 0, 2:HORIZON].abs().sum() == 0


def test_entropy_weight_of_the_schedule_is_the_one_the_update_uses() -> None:
    # halfway through a 0.2 -> 0 schedule the update equals one with a constant weight of 0.1
    policy, (trials,) = _sample(Navigation2D())
    updated = []
    for ppo, fraction_done in [(PPOConfig(entropy_coef=0.2, entropy_coef_final=0.0), 0.5),
                               (PPOConfig(entropy_coef=0.1), 0.0),
                               (PPOConfig(entropy_coef=0.2), 0.0)]:
        config = RL2Config(tasks_per_iteration=3, trials_per_task=2,
                           episodes_per_trial=EPISODES, hidden_size=8, ppo=ppo)
        update = RL2PPO(policy, policy.params(), config, seed=0)
        assert update.step(trials, fraction_done)["entropy_coef"] == pytest.approx(
            ppo.entropy_coef_at(fraction_done))
        updated.append({name: p.detach().clone() for name, p in update.params.items()})
    for name, value in updated[0].items():
        torch.testing.assert_close(value, updated[1][name], rtol=0, atol=0)
    assert any(not torch.equal(value, updated[2][name]) for name, value in updated[0].items())
