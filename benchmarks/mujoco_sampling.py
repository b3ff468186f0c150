"""HalfCheetahVel sampling throughput, policy included, against raw MuJoCo in the same run.

Samples ``--tasks`` x ``--episodes`` episodes of ``--horizon`` steps with the in-process
sampler and a 100-100 ReLU Gaussian policy (per-task parameters, as after adaptation), and
times a plain Python loop of ``mj_step(model, data, nstep=5)`` over as many ``MjData`` on one
thread (the raw speed one core gives). Last line: one JSON object with
``env_steps_per_second``, ``raw_mujoco_steps_per_second`` and ``ratio``.

    python benchmarks/mujoco_sampling.py [--tasks 40] [--episodes 20] [--horizon 100]
"""

from __future__ import annotations

import argparse
import json
import time

import mujoco
import numpy as np
from timing import sampling_rates

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.backends.process_setup import configure_process
from fastadapt.envs.locomotion import HalfCheetahVel
from fastadapt.envs.mujoco_batched import gymnasium_asset, load_model
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.sampling.vector import VectorSampler


def raw_mujoco(num_envs: int, steps: int) -> float:
    """Env steps/s of a serial ``mj_step`` loop (5 physics steps per env step)."""
    model = load_model(gymnasium_asset("half_cheetah.xml"))
    datas = [mujoco.MjData(model) for _ in range(num_envs)]
    controls = np.random.default_rng(0).uniform(-1, 1, (num_envs, model.nu))
    start = time.perf_counter()
    for _ in range(steps):
        for data, control in zip(datas, controls, strict=True):
            data.ctrl[:] = control
            mujoco.mj_step(model, data, nstep=5)
    return num_envs * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    configure_process(args.threads)  # as `fastadapt train` does (run.retain_freed_memory)
    family = HalfCheetahVel()
    policy = GaussianMLPPolicy(17, 6, (100, 100), "relu")
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, args.tasks)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    with VectorSampler(family, policy, args.horizon, seed=0) as sampler:
        sampler.sample(params, tasks, 2)  # warm-up
        rates = sampling_rates(sampler, params, tasks, args.episodes, args.repeats)
    raw = raw_mujoco(args.tasks * args.episodes, 20)
    result = {
        "benchmark": "mujoco_sampling",
        "env": "HalfCheetahVel",
        "tasks": args.tasks,
        "episodes_per_task": args.episodes,
        "horizon": args.horizon,
        "env_steps_per_second": round(float(np.median(rates)), 1),
        "raw_mujoco_steps_per_second": round(raw, 1),
        "ratio": round(float(np.median(rates)) / raw, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
