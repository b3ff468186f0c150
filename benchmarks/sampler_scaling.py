"""Sampling throughput of every sampler kind on the same batch: vector vs process vs Ray.

For each task family, samples one meta-batch (``--tasks`` tasks × ``--episodes`` episodes × the
family's horizon, 64-64 tanh policy) with the in-process ``vector`` sampler, the ``process``
sampler with 1 and 2 workers and the ``ray`` sampler with 1 and 2 actors (skipped when Ray is
not installed). Every sampler is reset to the same random state before each repeat, so all of
them sample the very same batch, which is checked bit for bit against the vector sampler's.
Prints env-steps/s (median over ``--repeats`` after one warm-up call) and the ratio to the
vector sampler measured in the same run; start-up time is reported apart. The last line is one
JSON object.

Defaults: HalfCheetahVel (MuJoCo, physics-bound: what worker processes are for), Navigation2D
(100 steps, cheap dynamics: overhead-bound) and TabularMDP (10 steps).

    python benchmarks/sampler_scaling.py [--env HalfCheetahVel Navigation2D TabularMDP]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.backends.process_setup import configure_process
from fastadapt.envs.registry import make_family
from fastadapt.policies.mlp import make_policy
from fastadapt.sampling import SeededSampler, make_sampler
from fastadapt.types import Trajectories

SEED = 0
CONFIGURATIONS = [("vector", 1), ("process", 1), ("process", 2), ("ray", 1), ("ray", 2)]


def _measure(sampler: SeededSampler, params: Any, tasks: list[Any], episodes: int,
             repeats: int) -> tuple[float, Trajectories]:
    """Median seconds of one ``sample`` call (after a warm-up), and the batch."""
    seconds = []
    batch = None
    for repeat in range(repeats + 1):
        sampler.load_state_dict({"seed": SEED, "calls": 0})
        start = time.perf_counter()
        batch = sampler.sample(params, tasks, episodes)
        if repeat:
            seconds.append(time.perf_counter() - start)
    assert batch is not None
    return statistics.median(seconds), batch


def _family_rows(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    family = make_family(name)
    torch.manual_seed(0)
    obs_dim = int(np.prod(family.observation_space.shape))
    policy = make_policy(obs_dim, family.action_space, (64, 64), "tanh", 1.0)
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    params = expand_to_tasks(theta, len(tasks))
    rows: list[dict[str, Any]] = []
    reference: Trajectories | None = None
    for kind, workers in CONFIGURATIONS:
        if kind == "ray" and importlib.util.find_spec("ray") is None:
            print(f"{name:14s} {kind:8s} skipped: Ray is not installed (fastadapt[ray])")
            continue
        start = time.perf_counter()
        with make_sampler(kind, family, policy, family.horizon, SEED, workers) as sampler:
            startup = time.perf_counter() - start
            seconds, batch = _measure(sampler, params, tasks, args.episodes, args.repeats)
        reference = batch if reference is None else reference
        same = all(a is b or (a is not None and b is not None and torch.equal(a, b))
                   for a, b in zip(reference, batch, strict=True))  # successes may be None
        steps_per_second = batch.num_env_steps / seconds
        ratio = steps_per_second / rows[0]["env_steps_per_second"] if rows else 1.0
        rows.append({
            "env": name, "sampler": kind, "workers": workers if kind != "vector" else 0,
            "env_steps": batch.num_env_steps, "seconds_per_batch": round(seconds, 4),
            "env_steps_per_second": round(steps_per_second, 1),
            "ratio_to_vector": round(ratio, 3), "startup_seconds": round(startup, 2),
            "same_batch_as_vector": same,
        })
        label = f"{kind} x{workers}" if kind != "vector" else "vector"
        print(f"{name:14s} {label:11s} {steps_per_second:11,.0f} env-steps/s  "
              f"ratio {ratio:5.2f}  ({seconds * 1000:7.1f} ms per batch of "
              f"{batch.num_env_steps} steps, start-up {startup:5.2f} s, same batch: {same})",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+",
                        default=["HalfCheetahVel", "Navigation2D", "TabularMDP"])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the parent")
    args = parser.parse_args()
    configure_process(args.threads)  # as `fastadapt train` does (run.retain_freed_memory)
    rows = [row for name in args.env for row in _family_rows(name, args)]
    print(json.dumps({
        "benchmark": "sampler_scaling", "cpus": os.cpu_count(), "threads": args.threads,
        "tasks": args.tasks, "episodes_per_task": args.episodes, "results": rows,
    }))


if __name__ == "__main__":
    main()
