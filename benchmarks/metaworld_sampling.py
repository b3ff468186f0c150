"""Meta-World sampling throughput, policy included, against one raw Meta-World env.

Samples ``--tasks`` x ``--episodes`` episodes of ``--horizon`` steps of an ML1 family with a
``--sampler`` (``vector``: in-process; ``process``: ``--workers`` processes) and a 100-100 tanh
Gaussian policy with per-task parameters (as after adaptation), then times one raw Meta-World
env of the same class stepped in a Python loop with random actions (``set_task``, ``reset``
every ``--horizon`` steps): the speed one env gives on one core. The first batch also builds
the env pool (one compiled model per task) and is not timed. Last line: one JSON object with
``env_steps_per_second``, ``single_env_steps_per_second`` and ``ratio``.

    python benchmarks/metaworld_sampling.py [--env reach-v3] [--tasks 10] [--episodes 10]
        [--horizon 500] [--sampler vector|process] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from timing import sampling_rates

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.backends.process_setup import configure_process
from fastadapt.envs.metaworld import MetaWorldFamily
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.sampling import make_sampler


def single_env(family: MetaWorldFamily, horizon: int, steps: int) -> float:
    """Env steps/s of one raw Meta-World env (random actions, a reset every ``horizon``)."""
    task = family.sample_tasks(np.random.default_rng(0), 1)[0]
    env: Any = family.splits.classes[task.env_name]()
    env.set_task(family.metaworld_task(task))
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4))
    start = time.perf_counter()
    for t, action in enumerate(actions):
        if t % horizon == 0:
            env.reset()
        env.step(action)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="reach-v3")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sampler", default="vector", choices=["vector", "process"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    configure_process(args.threads)  # as `fastadapt train` does (run.retain_freed_memory)
    family = MetaWorldFamily("ML1", args.env)
    policy = GaussianMLPPolicy(39, 4, (100, 100), "tanh")
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, args.tasks)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    with make_sampler(args.sampler, family, policy, args.horizon, 0, args.workers) as sampler:
        start = time.perf_counter()
        sampler.sample(params, tasks, args.episodes)  # warm-up: builds the env pools
        print(f"first batch (builds the envs): {time.perf_counter() - start:.1f} s", flush=True)
        rates = sampling_rates(sampler, params, tasks, args.episodes, args.repeats)
    single = single_env(family, args.horizon, 3 * args.horizon)
    result = {
        "benchmark": "metaworld_sampling",
        "env": family.name,
        "sampler": args.sampler,
        "workers": args.workers if args.sampler == "process" else 1,
        "tasks": args.tasks,
        "episodes_per_task": args.episodes,
        "horizon": args.horizon,
        "env_steps_per_second": round(float(np.median(rates)), 1),
        "single_env_steps_per_second": round(single, 1),
        "ratio": round(float(np.median(rates)) / single, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
