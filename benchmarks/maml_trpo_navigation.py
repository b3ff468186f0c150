"""MAML-TRPO speed on 2D navigation with pytorch-maml-rl's 2d-navigation.yaml settings.

Same work per iteration as the reference: 20 tasks x 20 episodes x 100 steps before and after
adaptation, 64-64 tanh Gaussian policy, 1 inner step, 10 CG iterations, damping 1e-5, full
TRPO step with a 15 x 0.8 line search. Prints one line per iteration, then one JSON object on
the last line with ``seconds_per_iteration`` (median after warm-up), ``env_steps_per_second``,
``peak_rss_mb``, the ratio to pytorch-maml-rl's seconds per iteration (``REFERENCE_SECONDS``)
and ``forward_probe_ms``: the issue's yardstick of the machine's speed (one 100-100 MLP forward
pass over 20 x 2,000 samples; ``PROBE_REFERENCE_MS`` where the reference ran), since the
machines this runs on differ by up to 2x. The settings are those of the packaged config
``maml-trpo/2d-navigation``.

    python benchmarks/maml_trpo_navigation.py [--iterations 20] [--fvp-subsample 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import replace

import torch

from fastadapt.algorithms.maml.config import MAMLTRPOConfig
from fastadapt.algorithms.maml.meta_batch import collect_meta_batch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.backends.process_setup import configure_process
from fastadapt.backends.products import mlp_forward
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.run.config_loading import load_train_config, resolve
from fastadapt.sampling.vector import VectorSampler

CONFIG = "maml-trpo/2d-navigation"
"""The packaged config whose settings are pytorch-maml-rl's 2d-navigation.yaml."""
# pytorch-maml-rl's seconds per iteration with the same settings on a 2-core machine with
# OMP_NUM_THREADS=1 (../shared/REFERENCES.md, "Figures to meet or beat")
REFERENCE_SECONDS = 7.0
# the yardstick (forward_probe_ms) where the reference ran: torch 2.13 CPU, 20 tasks x
# 2,000 samples, 100-100 MLP forward 25-40 ms (../shared/REFERENCES.md, "Raw speeds")
PROBE_REFERENCE_MS = (25.0, 40.0)


def forward_probe_ms(repeats: int = 10) -> float:
    """Median milliseconds of the issue's machine yardstick: one forward pass of a 100-100 tanh
    MLP over 20 tasks x 2,000 samples with per-task parameters, at the current torch thread
    count. Machines differ (the issue quotes ``PROBE_REFERENCE_MS``; other jobs sharing the
    cores slow it down), so compare seconds per iteration across machines in units of this
    probe."""
    policy = GaussianMLPPolicy(2, 2, (100, 100), "tanh")
    params = {n: p.detach().expand(20, *p.shape).clone() for n, p in policy.named_parameters()}
    obs = torch.randn(20, 2000, 2)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        mlp_forward(policy, params, obs)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--fvp-subsample", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's malloc defaults (run.retain_freed_memory: false)")
    args = parser.parse_args()

    config = resolve(load_train_config(CONFIG))
    section = config.section
    assert isinstance(section, MAMLTRPOConfig)
    section = replace(section, trpo=replace(section.trpo, fvp_subsample=args.fvp_subsample))
    config = replace(config, algorithm_config=section)
    configure_process(args.threads, keep_freed_memory=not args.system_allocator)
    experiment = build_algorithm(config, torch.device("cpu"))  # family, policy, horizon
    algorithm = MAMLTRPO(experiment.policy, section, section.trpo)
    theta = experiment.initial_parameters()
    rng = __import__("numpy").random.default_rng(0)
    sampler = VectorSampler(experiment.family, experiment.policy, experiment.horizon, seed=0)
    totals, samples, steps = [], [], []
    for iteration in range(args.iterations):
        start = time.perf_counter()
        tasks = experiment.family.sample_tasks(rng, section.tasks_per_iteration)
        meta_batch = collect_meta_batch(sampler, experiment.policy, theta, tasks, section,
                                        inner_loop=algorithm.inner_loop(theta, len(tasks)))
        sampled = time.perf_counter()
        theta, metrics = algorithm.step(theta, meta_batch)
        end = time.perf_counter()
        print(f"iteration {iteration}: {end - start:.3f} s (sampling {sampled - start:.3f} s, "
              f"update {end - sampled:.3f} s), return {meta_batch.returns[0]:.1f} -> "
              f"{meta_batch.returns[-1]:.1f}, kl {metrics['kl']:.4f}", flush=True)
        if iteration >= args.warmup:
            totals.append(end - start)
            samples.append(sampled - start)
            steps.append(meta_batch.env_steps)
        del meta_batch  # frees the inner loop's caches before the next iteration's
    seconds = statistics.median(totals)
    result = {
        "benchmark": "maml_trpo_navigation",
        "fvp_subsample": args.fvp_subsample,
        "threads": args.threads,
        "retain_freed_memory": not args.system_allocator,
        "seconds_per_iteration": round(seconds, 4),
        "sampling_seconds_per_iteration": round(statistics.median(samples), 4),
        "env_steps_per_second": round(sum(steps) / sum(totals), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "forward_probe_ms": round(forward_probe_ms(), 1),
        "forward_probe_reference_ms": list(PROBE_REFERENCE_MS),
        "reference_seconds_per_iteration": REFERENCE_SECONDS,
        "speedup_vs_reference": round(REFERENCE_SECONDS / seconds, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
