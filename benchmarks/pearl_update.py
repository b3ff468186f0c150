"""Gradient steps per second of PEARL's update, against a plain SAC update on the same batches.

The plain update is PEARL's written the obvious way, as the reference (oyster
``rlkit/torch/sac/sac.py``, ``_take_step``) does it: one ``nn.Module`` per network (encoder,
policy, Q1, Q2, V, target V), one Adam per network, the KL and the Q loss backpropagated
first, the Q and encoder steps, then the V loss and the policy loss with their own backward
passes and steps. fastadapt's (:class:`~fastadapt.algorithms.pearl.update.PEARLLearner`)
evaluates the twin Qs as one stacked ensemble, differentiates one summed loss once and takes
one fused Adam step; with ``--compile`` it also times the loss through ``torch.compile``.

For each size (the paper's networks and batches, and the reduced ones of
``pearl/halfcheetah-vel-small``) it times both updates in turn on the same pre-drawn batches
(A B A B ..., ``--repeats`` rounds of ``--steps`` steps each) and prints steps per second and
the ratio (fastadapt / plain; above 1: fastadapt is faster). The last line is JSON.

    python benchmarks/pearl_update.py [--device cpu|cuda] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

from fastadapt.algorithms.pearl.config import PEARLConfig
from fastadapt.algorithms.pearl.losses import SACBatch, product_of_gaussians, squashed_sample
from fastadapt.algorithms.pearl.update import PEARLLearner, context_width

OBS, ACTIONS = 17, 6  # HalfCheetah
SIZES = {
    "paper": PEARLConfig(),
    "small": replace(PEARLConfig(), tasks_per_step=8, batch_transitions=128,
                     hidden_sizes=(128, 128, 128),
                     encoder_hidden_sizes=(128, 128)),
}


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PlainPEARL:
    """PEARL's update as the reference writes it (see the module docstring)."""

    def __init__(self, config: PEARLConfig, device: torch.device) -> None:
        self.config = config
        latent, hidden = config.latent_dim, list(config.hidden_sizes)
        self.encoder = _mlp([context_width(OBS, ACTIONS, False),
                             *config.encoder_hidden_sizes, 2 * latent]).to(device)
        self.policy = _mlp([OBS + latent, *hidden, 2 * ACTIONS]).to(device)
        self.qf1 = _mlp([OBS + ACTIONS + latent, *hidden, 1]).to(device)
        self.qf2 = _mlp([OBS + ACTIONS + latent, *hidden, 1]).to(device)
        self.vf = _mlp([OBS + latent, *hidden, 1]).to(device)
        self.target_vf = copy.deepcopy(self.vf)
        self.optimizers = {name: torch.optim.Adam(getattr(self, name).parameters(),
                                                  lr=config.learning_rate)
                           for name in ("encoder", "policy", "qf1", "qf2", "vf")}

    def step(self, batch: SACBatch) -> None:
        config, opt = self.config, self.optimizers
        tasks, per_task, _ = batch.observations.shape
        out = self.encoder(batch.context)
        mean, var = product_of_gaussians(out[..., : config.latent_dim],
                                         nn.functional.softplus(out[..., config.latent_dim :]))
        z = mean + var.sqrt() * torch.randn_like(mean)
        task_z = z[:, None].expand(tasks, per_task, -1).reshape(tasks * per_task, -1)
        obs = batch.observations.reshape(tasks * per_task, -1)
        actions = batch.actions.reshape(tasks * per_task, -1)
        next_obs = batch.next_observations.reshape(tasks * per_task, -1)
        policy_out = self.policy(torch.cat([obs, task_z.detach()], dim=1))
        new_actions, log_pi, policy_mean, policy_log_std = squashed_sample(
            policy_out, torch.randn_like(actions))
        q1 = self.qf1(torch.cat([obs, actions, task_z], dim=1))
        q2 = self.qf2(torch.cat([obs, actions, task_z], dim=1))
        v_pred = self.vf(torch.cat([obs, task_z.detach()], dim=1))
        with torch.no_grad():
            target_v = self.target_vf(torch.cat([next_obs, task_z], dim=1))
        opt["encoder"].zero_grad()
        kl = 0.5 * (var + mean.pow(2) - 1 - var.log()).sum()
        (config.kl_weight * kl).backward(retain_graph=True)
        opt["qf1"].zero_grad()
        opt["qf2"].zero_grad()
        rewards = batch.rewards.reshape(-1, 1) * config.reward_scale
        terms = batch.terminated.reshape(-1, 1)
        q_target = rewards + (1.0 - terms) * config.gamma * target_v
        qf_loss = ((q1 - q_target) ** 2).mean() + ((q2 - q_target) ** 2).mean()
        qf_loss.backward()
        opt["qf1"].step()
        opt["qf2"].step()
        opt["encoder"].step()
        sa = torch.cat([obs, new_actions, task_z.detach()], dim=1)
        min_q = torch.min(self.qf1(sa), self.qf2(sa))[:, 0]
        vf_loss = ((v_pred[:, 0] - (min_q - log_pi).detach()) ** 2).mean()
        opt["vf"].zero_grad()
        vf_loss.backward()  # type: ignore[no-untyped-call]
        opt["vf"].step()
        with torch.no_grad():
            for target, source in zip(self.target_vf.parameters(), self.vf.parameters(),
                                      strict=True):
                target.mul_(1 - config.tau).add_(source, alpha=config.tau)
        policy_loss = ((log_pi - min_q).mean() + config.policy_mean_reg
                       * (policy_mean ** 2).mean() + config.policy_std_reg
                       * (policy_log_std ** 2).mean())
        opt["policy"].zero_grad()
        policy_loss.backward()  # type: ignore[no-untyped-call]
        opt["policy"].step()


def _batches(config: PEARLConfig, device: torch.device, count: int) -> list[SACBatch]:
    generator = torch.Generator().manual_seed(0)

    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    t, b, c = config.tasks_per_step, config.batch_transitions, config.context_transitions
    return [SACBatch(draw(t, b, OBS), draw(t, b, ACTIONS).tanh(), draw(t, b), draw(t, b, OBS),
                     torch.zeros(t, b, device=device),
                     draw(t, c, context_width(OBS, ACTIONS, False))) for _ in range(count)]


def _rate(step: Callable[[SACBatch], object], batches: list[SACBatch], steps: int,
          device: torch.device) -> float:
    """Steps per second of ``steps`` calls of ``step`` (cycling through ``batches``)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each, in turn")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--compile", action="store_true",
                        help="also time fastadapt's loss through torch.compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    results: dict[str, dict[str, float]] = {}
    for size in args.sizes:
        config = SIZES[size]
        batches = _batches(config, device, 4)
        contenders: dict[str, Callable[[SACBatch], object]] = {
            "plain": PlainPEARL(config, device).step,
            "fastadapt": PEARLLearner(OBS, ACTIONS, config, 0, device).step,
        }
        if args.compile:
            compiled = PEARLLearner(OBS, ACTIONS, config, 0, device)
            compiled.loss = torch.compile(compiled.loss)
            contenders["compiled"] = compiled.step
        for step in contenders.values():  # warm-up (and compilation)
            _rate(step, batches, 3, device)
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, step in contenders.items():
                rates[name].append(_rate(step, batches, args.steps, device))
        median = {name: statistics.median(values) for name, values in rates.items()}
        results[size] = {f"{name}_steps_per_s": round(value, 2)
                         for name, value in median.items()}
        results[size]["ratio"] = round(median["fastadapt"] / median["plain"], 3)
        line = ", ".join(f"{name} {value:.2f} steps/s" for name, value in median.items())
        print(f"{size}: {line}; fastadapt / plain {results[size]['ratio']:.2f}x")
        if args.compile:
            results[size]["compiled_ratio"] = round(median["compiled"] / median["plain"], 3)
            print(f"{size}: compiled / plain {results[size]['compiled_ratio']:.2f}x")
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                      **results}))


if __name__ == "__main__":
    main()
