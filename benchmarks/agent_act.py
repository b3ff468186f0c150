"""An agent's step loop against the in-process sampler: env steps per second, as a ratio.

Both step the same family's batched env over ``--tasks`` tasks (one episode each, ``--horizon``
steps) with the same freshly built policy (``--config``: any algorithm's, e.g.
``maml-trpo/halfcheetah-vel``, ``rl2/halfcheetah-vel``, ``pearl/halfcheetah-vel``):

- *sampler*: ``VectorSampler.sample`` (its prepared forward, the noise drawn up front; RL²:
  ``sample_trials`` of one-episode trials; PEARL: the actor with a latent folded in);
- *agent*: a loop a user would write, ``actions = agent.act(obs)``, ``env.step(actions)``,
  ``agent.observe(...)`` every step (``fastadapt.Algorithm.make_agent``, what
  ``fastadapt.load_agent`` returns), the observations converted from and to numpy.

Timed ``--repeats`` times each, alternating (A B A B); the median of each is reported. Last line:
one JSON object with ``sampler_steps_per_second``, ``agent_steps_per_second`` and ``ratio``
(agent / sampler; 1.0 means the agent's loop costs what the sampler's does).

    python benchmarks/agent_act.py [--config maml-trpo/halfcheetah-vel] [--tasks 20]
        [--horizon 200] [--repeats 5] [--deterministic]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.algorithms.pearl.algorithm import PEARL
from fastadapt.algorithms.pearl.networks import fold_latent
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.backends.process_setup import configure_process
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.run.config_loading import load_train_config
from fastadapt.sampling.vector import VectorSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="maml-trpo/halfcheetah-vel")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    configure_process(1, False)
    config = load_train_config(args.config, [f"env.horizon={args.horizon}"])
    algorithm = build_algorithm(config, torch.device("cpu"))
    family, tasks = algorithm.family, algorithm.family.test_tasks(args.tasks)
    sampler = VectorSampler(family, algorithm.policy, args.horizon, 0)
    agent = algorithm.make_agent(len(tasks))
    rng = np.random.default_rng(0)
    if isinstance(algorithm.policy, RecurrentPolicy):  # RL²: one-episode trials

        def sample() -> int:
            trials = sampler.sample_trials(algorithm.parameters(), tasks, 1, 1)
            return int(trials.masks.sum())
    else:
        params = expand_to_tasks(algorithm.parameters(), len(tasks))
        if isinstance(algorithm, PEARL):  # the actor with each task's latent folded in
            latents = torch.zeros(len(tasks), algorithm.settings.latent_dim)
            params = fold_latent(algorithm.parameters(), "actor.", latents, algorithm.obs_dim)

        def sample() -> int:
            return sampler.sample(params, tasks, 1).num_env_steps

    def sampler_rate() -> float:
        start = time.perf_counter()
        steps = sample()
        return steps / (time.perf_counter() - start)

    def agent_rate() -> float:
        env = family.make_batched(tasks, 1, rng)
        start = time.perf_counter()
        obs = env.reset()[:, 0]
        agent.reset()
        alive = np.ones(len(tasks), dtype=bool)
        steps = 0
        for t in range(args.horizon):
            actions = agent.act(obs, deterministic=args.deterministic)
            next_obs, rewards, terminated = env.step(actions[:, None])
            last = np.full(len(tasks), t == args.horizon - 1)
            agent.observe(obs, actions, rewards[:, 0], terminated[:, 0], last, next_obs[:, 0])
            steps += int(alive.sum())
            alive &= ~terminated[:, 0]
            obs = next_obs[:, 0]
        return steps / (time.perf_counter() - start)

    sampler_rate(), agent_rate()  # warm-up: env models, prepared forwards
    rates: dict[str, list[float]] = {"sampler": [], "agent": []}
    for _ in range(args.repeats):
        rates["sampler"].append(sampler_rate())
        rates["agent"].append(agent_rate())
        print(f"sampler {rates['sampler'][-1]:,.0f}/s  agent {rates['agent'][-1]:,.0f}/s",
              flush=True)
    sampler_median = statistics.median(rates["sampler"])
    agent_median = statistics.median(rates["agent"])
    print(json.dumps({"config": args.config, "tasks": args.tasks, "horizon": args.horizon,
                      "deterministic": args.deterministic,
                      "sampler_steps_per_second": round(sampler_median),
                      "agent_steps_per_second": round(agent_median),
                      "ratio": round(agent_median / sampler_median, 3)}))


if __name__ == "__main__":
    main()
