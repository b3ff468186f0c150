"""PEARL's pieces against hand computations and an independent reference: the product of
Gaussians, the KL, the tanh-Gaussian log-density, the summed SAC loss on hand-set networks, the
gradient each network receives, and the latent folded into the sampler's policy."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from fastadapt.algorithms.pearl.config import PEARLConfig
from fastadapt.algorithms.pearl.losses import (
    SACBatch,
    StepNoise,
    kl_to_standard_normal,
    pearl_loss,
    product_of_gaussians,
    squashed_sample,
)
from fastadapt.algorithms.pearl.networks import fold_latent, init_mlp, mlp
from fastadapt.algorithms.pearl.update import initial_networks
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.squashed import SquashedGaussianPolicy

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def test_product_of_two_gaussians_by_hand() -> None:
    # N(1, 1) x N(3, 3): precision 1 + 1/3 = 4/3, variance 3/4, mean 3/4 (1/1 + 3/3) = 1.5
    means = torch.tensor([[[1.0], [3.0]]])
    variances = torch.tensor([[[1.0], [3.0]]])
    mean, variance = product_of_gaussians(means, variances)
    assert mean.item() == pytest.approx(1.5)
    assert variance.item() == pytest.approx(0.75)
    # the mask drops the second factor: the first alone
    mean, variance = product_of_gaussians(means, variances, torch.tensor([[1.0, 0.0]]))
    assert (mean.item(), variance.item()) == pytest.approx((1.0, 1.0))
    # order does not matter (permutation invariance)
    flipped = product_of_gaussians(means.flip(1), variances.flip(1))
    assert flipped[0].item() == pytest.approx(1.5)


def test_product_clamps_tiny_variances() -> None:
    mean, variance = product_of_gaussians(torch.tensor([[[2.0], [5.0]]]),
                                          torch.tensor([[[0.0], [1.0]]]))
    # the zero variance is clamped to 1e-7: the product sits at that factor's mean
    assert mean.item() == pytest.approx(2.0, abs=1e-5)
    assert variance.item() == pytest.approx(1e-7, rel=1e-3)


def test_kl_to_standard_normal_by_hand() -> None:
    # 0.5 (var + mu^2 - 1 - ln var) per dimension: (2 + 1 - 1 - ln 2) / 2 and (1 + 0 - 1 - 0) / 2
    kl = kl_to_standard_normal(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))
    assert kl.item() == pytest.approx(0.5 * (2.0 - math.log(2.0)))


def test_squashed_log_prob_by_hand_and_against_torch_distributions() -> None:
    # mean 0, log sigma 0, noise 0: u = 0, a = 0, log pi = log N(0; 0, 1) - log(1 - 0) per dim
    out = torch.zeros(2)
    action, log_prob, _, _ = squashed_sample(out, torch.zeros(1))
    assert action.item() == 0.0
    assert log_prob.item() == pytest.approx(-LOG_SQRT_2PI)
    # random cases against torch.distributions' tanh-transformed Normal
    generator = torch.Generator().manual_seed(0)
    out = torch.randn(50, 6, generator=generator, dtype=torch.float64)
    noise = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    action, log_prob, mean, log_std = squashed_sample(out, noise)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(action, torch.tanh(mean + log_std.exp() * noise))


def _linear(prefix: str, bias: list[float], fan_in: int, members: int = 1
            ) -> dict[str, torch.Tensor]:
    """A one-layer network of zero weights and the given biases (per member)."""
    return {f"{prefix}0.weight": torch.zeros(members, fan_in, len(bias) // members),
            f"{prefix}0.bias": torch.tensor(bias).view(members, 1, -1)}


def test_pearl_loss_on_hand_set_networks() -> None:
    """One task, one transition, latent and action of size 1; networks of biases only."""
    softplus_inverse_of_1 = math.log(math.e - 1.0)
    obs_dim = 1
    params = {
        **_linear("encoder.", [0.5, softplus_inverse_of_1], 3),  # q(z|c) = N(0.5, 1)
        **_linear("actor.", [0.0, 0.0], 2),  # mean 0, log sigma 0
        **_linear("q.", [1.0, 2.0], 3, members=2),  # Q1 = 1, Q2 = 2
        **_linear("v.", [0.3], 2),  # V = 0.3
    }
    targets = _linear("target_v.", [0.7], 2)  # V' = 0.7
    batch = SACBatch(observations=torch.zeros(1, 1, obs_dim), actions=torch.zeros(1, 1, 1),
                     rewards=torch.tensor([[2.0]]), next_observations=torch.zeros(1, 1, obs_dim),
                     terminated=torch.zeros(1, 1), context=torch.zeros(1, 1, 3))
    noise = StepNoise(latent=torch.zeros(1, 1), actions=torch.tensor([[[0.5]]]),
                      next_actions=None)
    config = replace(PEARLConfig(), latent_dim=1, reward_scale=5.0, gamma=0.9, kl_weight=0.1)
    total, metrics = pearl_loss(params, targets, batch, noise, config, target_entropy=-1.0)

    kl = 0.5 * (1.0 + 0.25 - 1.0 - 0.0)  # N(0.5, 1) against N(0, 1)
    y = 5.0 * 2.0 + 0.9 * 0.7  # scaled reward + discounted target value
    critic = (1.0 - y) ** 2 + (2.0 - y) ** 2
    u = 0.5  # mean 0 + sigma 1 * noise 0.5
    log_pi = -0.5 * 0.25 - LOG_SQRT_2PI - math.log(1.0 - math.tanh(u) ** 2)
    min_q = 1.0
    value = (0.3 - (min_q - log_pi)) ** 2
    policy = log_pi - min_q  # the regularisers vanish: mean 0, log sigma 0
    assert metrics["kl"].item() == pytest.approx(kl)
    assert metrics["critic_loss"].item() == pytest.approx(critic, rel=1e-6)
    assert metrics["log_pi"].item() == pytest.approx(log_pi, rel=1e-6)
    assert metrics["value_loss"].item() == pytest.approx(value, rel=1e-6)
    assert metrics["policy_loss"].item() == pytest.approx(policy, rel=1e-6)
    assert total.item() == pytest.approx(critic + 0.1 * kl + value + policy, rel=1e-6)


def _reference_grads(params: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                     batch: SACBatch, noise: StepNoise, config: PEARLConfig
                     ) -> dict[str, torch.Tensor]:
    """Each network's gradient from its own loss, written independently: per-member
    ``F.linear`` networks, ``torch.distributions`` for the policy, one ``autograd.grad`` per
    loss (encoder: critic + beta KL; Q: critic; V: value; policy: policy loss)."""
    def net(prefix: str, x: torch.Tensor, member: int = 0) -> torch.Tensor:
        source = targets if prefix.startswith("target") else params
        layers = sum(1 for n in source if n.startswith(prefix) and n.endswith("weight"))
        for i in range(layers):
            weight = source[f"{prefix}{i}.weight"][member].T
            x = F.linear(x, weight, source[f"{prefix}{i}.bias"][member, 0])
            x = torch.relu(x) if i < layers - 1 else x
        return x

    tasks, per_task, _ = batch.observations.shape
    latent = config.latent_dim
    enc = net("encoder.", batch.context)
    mean, var = product_of_gaussians(enc[..., :latent], F.softplus(enc[..., latent:]))
    z = (mean + var.sqrt() * noise.latent)[:, None].expand(tasks, per_task, latent)
    kl = (0.5 * (var + mean ** 2 - 1 - var.log())).sum()
    obs, actions = batch.observations, batch.actions
    y = (config.reward_scale * batch.rewards + (1 - batch.terminated) * config.gamma
         * net("target_v.", torch.cat([batch.next_observations, z.detach()], -1))[..., 0])
    q = [net("q.", torch.cat([obs, actions, z], -1), m)[..., 0] for m in (0, 1)]
    critic = sum(((qm - y.detach()) ** 2).mean() for qm in q)
    out = net("actor.", torch.cat([obs, z.detach()], -1))
    a_mean, log_std = out[..., :1], out[..., 1:].clamp(-20, 2)
    u = a_mean + log_std.exp() * noise.actions
    action = torch.tanh(u)
    dist = TransformedDistribution(Normal(a_mean, log_std.exp()), [TanhTransform()])
    log_pi = dist.log_prob(action).sum(-1)
    frozen = {n: p.detach() for n, p in params.items()}
    q_new = torch.min(*[
        _frozen_net(frozen, torch.cat([obs, action, z.detach()], -1), m) for m in (0, 1)])
    policy = ((log_pi - q_new).mean() + config.policy_mean_reg * (a_mean ** 2).mean()
              + config.policy_std_reg * (log_std ** 2).mean())
    value = ((net("v.", torch.cat([obs, z.detach()], -1))[..., 0]
              - (q_new - log_pi).detach()) ** 2).mean()
    grads: dict[str, torch.Tensor] = {}
    for prefix, loss in (("encoder.", critic + config.kl_weight * kl), ("q.", critic),
                         ("v.", value), ("actor.", policy)):
        names = [n for n in params if n.startswith(prefix)]
        values = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True)
        grads.update(zip(names, values, strict=True))
    return grads


def _frozen_net(frozen: dict[str, torch.Tensor], x: torch.Tensor, member: int) -> torch.Tensor:
    for i in range(2):
        x = F.linear(x, frozen[f"q.{i}.weight"][member].T, frozen[f"q.{i}.bias"][member, 0])
        x = torch.relu(x) if i == 0 else x
    return x[..., 0]


def test_each_network_gets_exactly_its_own_losss_gradient() -> None:
    config = replace(PEARLConfig(), latent_dim=2, hidden_sizes=(8,), encoder_hidden_sizes=(6,),
                     reward_scale=3.0, gamma=0.9, kl_weight=0.5)
    params, targets = initial_networks(obs_dim=3, action_dim=1, config=config, seed=0)
    generator = torch.Generator().manual_seed(1)
    for name in params:  # away from the near-zero output layers of the initialisation
        params[name] = (params[name] + 0.3 * torch.randn(params[name].shape,
                                                         generator=generator)).double()
        params[name].requires_grad_(True)
    targets = {n: (p + 0.1).double() for n, p in targets.items()}

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    batch = SACBatch(draw(2, 5, 3), draw(2, 5, 1).tanh(), draw(2, 5), draw(2, 5, 3),
                     (draw(2, 5) > 1).double(), draw(2, 4, 3 + 1 + 1))
    noise = StepNoise(draw(2, 2), draw(2, 5, 1), None)
    total, _ = pearl_loss(params, targets, batch, noise, config, target_entropy=-1.0)
    ours = dict(zip(params, torch.autograd.grad(total, list(params.values())), strict=True))
    reference = _reference_grads(params, targets, batch, noise, config)
    for name in params:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-9, atol=1e-10,
                                   msg=f"gradient of {name}")


def test_stacked_ensemble_equals_its_members() -> None:
    generator = torch.Generator().manual_seed(0)
    params = init_mlp("q.", [4, 7, 1], 3, generator)
    x = torch.randn(10, 4, generator=generator)
    shared = mlp(params, "q.", x)
    stacked = mlp(params, "q.", x.expand(3, 10, 4))
    torch.testing.assert_close(shared, stacked)
    for m in range(3):
        hidden = torch.relu(x @ params["q.0.weight"][m] + params["q.0.bias"][m])
        torch.testing.assert_close(shared[m], hidden @ params["q.1.weight"][m]
                                   + params["q.1.bias"][m])


def test_latent_folded_into_the_sampling_policy() -> None:
    """The sampler's policy of the observation, z folded into its first bias, computes the
    learner's policy of (observation, z)."""
    config = replace(PEARLConfig(), latent_dim=2, hidden_sizes=(16, 16))
    params, _ = initial_networks(obs_dim=3, action_dim=2, config=config, seed=0)
    generator = torch.Generator().manual_seed(2)
    params = {n: p + 0.2 * torch.randn(p.shape, generator=generator) for n, p in params.items()}
    z = torch.randn(4, 2, generator=generator)
    obs = torch.randn(4, 5, 3, generator=generator)  # [T, E, O]
    policy = SquashedGaussianPolicy(3, -2 * torch.ones(2).numpy(), 2 * torch.ones(2).numpy(),
                                    (16, 16))
    folded = fold_latent(params, "actor.", z, obs_dim=3)
    out = per_task_output(policy, folded, obs)  # [T, E, 2A]: mean, sigma
    learner = mlp(params, "actor.", torch.cat([obs, z[:, None].expand(4, 5, 2)], -1)
                  .reshape(20, 5))[0].view(4, 5, 4)
    torch.testing.assert_close(out[..., :2], learner[..., :2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[..., 2:], learner[..., 2:].clamp(-20, 2).exp(), rtol=1e-5,
                               atol=1e-5)
    noise = torch.randn(4, 5, 2, generator=generator)
    actions = policy.sample(out, noise)
    squashed, _, _, _ = squashed_sample(learner, noise)
    torch.testing.assert_close(actions, 2 * squashed, rtol=1e-5, atol=1e-5)
    folded["noise_scale"] = torch.zeros(4)  # the mean action
    mean_actions = policy.sample(per_task_output(policy, folded, obs), noise)
    torch.testing.assert_close(mean_actions, 2 * torch.tanh(learner[..., :2]), rtol=1e-5,
                               atol=1e-5)


def test_twin_q_target_and_entropy_weight_by_hand() -> None:
    """``twin_q``: y = r_scale r + gamma (min_j Q'_j(s', a') - alpha log pi(a' | s')), and with
    ``auto_entropy`` the loss -log alpha (log pi + H_target) moves alpha."""
    softplus_inverse_of_1 = math.log(math.e - 1.0)
    params = {
        **_linear("encoder.", [0.0, softplus_inverse_of_1], 3),
        **_linear("actor.", [0.0, 0.0], 2),
        **_linear("q.", [1.0, 2.0], 3, members=2),
        "log_alpha": torch.tensor(math.log(0.5), requires_grad=True),
    }
    targets = _linear("target_q.", [0.4, 0.6], 3, members=2)
    batch = SACBatch(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.tensor([[1.0]]),
                     torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.zeros(1, 1, 3))
    noise = StepNoise(torch.zeros(1, 1), torch.tensor([[[0.5]]]), torch.tensor([[[-1.0]]]))
    config = replace(PEARLConfig(), latent_dim=1, critic="twin_q", auto_entropy=True,
                     alpha=0.5, reward_scale=2.0, gamma=0.5, kl_weight=0.0)
    total, metrics = pearl_loss(params, targets, batch, noise, config, target_entropy=-1.0)

    def log_pi(u: float) -> float:  # mean 0, sigma 1: the noise is u
        return -0.5 * u * u - LOG_SQRT_2PI - math.log(1.0 - math.tanh(u) ** 2)

    y = 2.0 * 1.0 + 0.5 * (0.4 - 0.5 * log_pi(-1.0))
    critic = (1.0 - y) ** 2 + (2.0 - y) ** 2
    policy = 0.5 * log_pi(0.5) - 1.0
    entropy_loss = -math.log(0.5) * (log_pi(0.5) - 1.0)
    assert metrics["critic_loss"].item() == pytest.approx(critic, rel=1e-6)
    assert metrics["value_loss"].item() == 0.0
    assert metrics["alpha"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(critic + policy + entropy_loss, rel=1e-6)
    (grad,) = torch.autograd.grad(total, [params["log_alpha"]])
    assert grad.item() == pytest.approx(-(log_pi(0.5) - 1.0), rel=1e-6)
