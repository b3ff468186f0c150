"""The fast forward passes and the vector sampler against the plain computations.

- the vector sampler: same seed, same trajectories; masks after termination (hand values);
- ``mlp_forward``, ``MLPProducts`` and the sampler's ``SamplingForward`` against
  ``functional_call`` of the policy module vmapped over tasks;
- ``weight_gradient`` against ``einsum``; the policies' ``tanh`` against ``torch.tanh``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from fastadapt.algorithms.maml.adapt import expand_to_tasks, per_task_output
from fastadapt.backends.products import MLPProducts, mlp_forward, weight_gradient
from fastadapt.backends.sampling_forward import SamplingForward
from fastadapt.envs.navigation import Navigation2D, NavigationTask
from fastadapt.policies.mlp import Activation, CategoricalMLPPolicy, GaussianMLPPolicy, Policy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params

T = 3  # tasks
HIDDEN = (8, 8)


# --- the vector sampler -----------------------------------------------------------------------


def test_sampler_same_seed_gives_identical_trajectories() -> None:
    torch.manual_seed(0)
    family = Navigation2D()
    policy = GaussianMLPPolicy(2, 2, HIDDEN)
    params = expand_to_tasks(dict(policy.named_parameters()), T)
    tasks = family.sample_tasks(np.random.default_rng(1), T)
    runs = []
    for seed in (5, 5, 6):
        with VectorSampler(family, policy, horizon=10, seed=seed) as sampler:
            runs.append(sampler.sample(params, tasks, episodes_per_task=4))
    for a, b in zip(runs[0][:4], runs[1][:4], strict=True):  # successes: None (Navigation2D)
        assert torch.equal(a, b)
    assert not torch.equal(runs[0].actions, runs[2].actions)
    assert runs[0].observations.shape == (T, 4, 10, 2)
    assert runs[0].actions.shape == (T, 4, 10, 2)


def test_sampler_masks_steps_after_termination() -> None:
    # The mean action is exactly (0.05, 0) and the std is tiny: the goal (0.05, 0) is reached
    # at the first step, the goal (0.25, 0) at the fifth, (0.5, 0.5) never.
    family = Navigation2D()
    policy = GaussianMLPPolicy(2, 2, HIDDEN)
    params = {n: torch.zeros_like(p) for n, p in policy.named_parameters()}
    params["mean.4.bias"] = torch.tensor([0.05, 0.0])
    params["log_std"] = torch.full((2,), -30.0)  # clamped to log(min_std) = log(1e-6)
    tasks = [NavigationTask(0.05, 0.0), NavigationTask(0.25, 0.0), NavigationTask(0.5, 0.5)]
    horizon = 8
    with VectorSampler(family, policy, horizon=horizon, seed=0) as sampler:
        trajectories = sampler.sample(expand_to_tasks(params, 3), tasks, episodes_per_task=2)
    lengths = torch.tensor([1, 5, horizon])
    expected_masks = (torch.arange(horizon) < lengths[:, None, None]).float().expand(3, 2, -1)
    assert torch.equal(trajectories.masks, expected_masks)
    assert (trajectories.rewards[trajectories.masks == 0] == 0).all()
    # Inside the episode the reward is minus the distance to the goal after the move.
    assert trajectories.rewards[0, :, 0].abs().max() < 1e-4
    assert_close(trajectories.rewards[2, :, 0], torch.full((2,), -float(np.hypot(0.45, 0.5))))
    assert trajectories.num_env_steps == 2 * (1 + 5 + horizon)


def _per_task_policy(kind: str, hidden: tuple[int, ...], scale: float,
                     activation: Activation = "tanh", num_tasks: int = T
                     ) -> tuple[Policy, Params]:
    """A Gaussian (2 actions) or categorical (3) MLP policy and the tasks' perturbed params."""
    torch.manual_seed(0)
    policy: Policy = GaussianMLPPolicy(2, 2, hidden, activation)
    if kind == "categorical":
        policy = CategoricalMLPPolicy(2, 3, hidden, activation)
    params = {n: p.detach() + scale * torch.randn(num_tasks, *p.shape)
              for n, p in policy.named_parameters()}
    return policy, params


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_fast_mlp_forward_equals_vmapped_functional_call(kind: str) -> None:
    policy, params = _per_task_policy(kind, (8, 8), 0.1)
    obs = torch.randn(3, 4, 5, 2)
    assert_close(mlp_forward(policy, params, obs), per_task_output(policy, params, obs))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_cached_products_forward_is_exactly_the_module(kind: str) -> None:
    """The in-place tanh of MLPProducts (2z from doubled weights) changes no bit."""
    policy, params = _per_task_policy(kind, (16, 16), 0.3)
    obs = torch.randn(3, 4, 5, 2)
    products = MLPProducts(policy, params, obs)
    module = per_task_output(policy, params, obs)
    assert torch.equal(products.out, module.reshape(products.out.shape))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_sampling_forward_equals_mlp_forward(float64: None, kind: str,
                                             activation: Activation) -> None:
    """The sampler's prepared forward (tanh folded into sigmoids, std precomputed)."""
    policy, params = _per_task_policy(kind, (8, 8), 0.3, activation)
    obs = torch.randn(3, 4, 2)
    forward = SamplingForward(policy, params)
    expected = mlp_forward(policy, params, obs)
    net_dim = 2 if kind == "gaussian" else 3
    assert_close(forward(obs), expected[..., :net_dim], rtol=1e-12, atol=1e-12)
    if kind == "gaussian":
        noise = torch.randn(3, 4, 2)
        expected_actions = expected[..., :2] + noise * expected[..., 2:].exp()
        assert_close(forward.gaussian_actions(obs, noise), expected_actions, rtol=1e-12,
                     atol=1e-12)
    else:
        assert forward.std is None
        with pytest.raises(TypeError, match="GaussianMLPPolicy"):
            forward.gaussian_actions(obs, torch.zeros(3, 4, 3))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize(("num_tasks", "episodes", "hidden"),
                         [(5, 3, (16, 16)), (41, 9, (100, 100)), (70, 1, (1,))])
@pytest.mark.parametrize("threads", [1, 2])
def test_sampling_forward_of_a_task_does_not_depend_on_the_others(
    kind: str, num_tasks: int, episodes: int, hidden: tuple[int, ...], threads: int
) -> None:
    """Bit for bit, whatever the batch and the thread count: the worker samplers rely on it.
    The sizes leave remainders of ATen's vector loops (240 and 36900 elements per hidden
    layer, the second above its parallel grain; 70 stds and 70 hidden units)."""
    policy, params = _per_task_policy(kind, hidden, 0.3, "tanh", num_tasks)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(num_tasks, episodes, 2, generator=generator)
    noise = torch.randn(num_tasks, episodes, 2, generator=generator)

    def outputs(tasks: slice, num_threads: int) -> torch.Tensor:
        old = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            forward = SamplingForward(policy, {n: p[tasks] for n, p in params.items()})
            if kind == "gaussian":
                return forward.gaussian_actions(obs[tasks], noise[tasks])
            return forward(obs[tasks])
        finally:
            torch.set_num_threads(old)

    full = outputs(slice(None), threads)
    for chunk in (slice(0, 2), slice(2, num_tasks), slice(num_tasks - 1, num_tasks)):
        assert torch.equal(outputs(chunk, 1), full[chunk])


@pytest.mark.parametrize("sizes", [(2, 16), (16, 16), (16, 2)])
def test_weight_gradient_is_delta_transposed_times_inputs(sizes: tuple[int, int]) -> None:
    fan_in, fan_out = sizes
    generator = torch.Generator().manual_seed(0)
    delta = torch.randn(3, 50, fan_out, generator=generator)
    inputs = torch.randn(3, 50, fan_in, generator=generator)
    expected = torch.einsum("tno,tni->toi", delta, inputs)
    assert_close(weight_gradient(delta, inputs), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_policy_tanh_equals_torch_tanh(dtype: torch.dtype) -> None:
    from fastadapt.policies.mlp import Tanh, tanh

    x = torch.cat([torch.linspace(-30, 30, 10_001, dtype=dtype), torch.tensor([0.0, 1e-8],
                                                                                dtype=dtype)])
    tolerance = 2.5e-7 if dtype == torch.float32 else 1e-15
    assert (tanh(x) - torch.tanh(x)).abs().max() <= tolerance
    assert torch.equal(Tanh()(x), tanh(x))
    assert tanh(torch.tensor([-1e4, 1e4], dtype=dtype)).tolist() == [-1.0, 1.0]
