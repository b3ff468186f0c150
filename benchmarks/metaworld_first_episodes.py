"""Meta-World's protocol on a run, also scored on every sub-env's first evaluation episode.

``metaworld.evaluation.metalearning_evaluation`` scores, in each round, the first
``evaluation_episodes`` episodes *to end* per task class and stops there; on ML1 (one class,
20 sub-envs) that is the 3 fastest of 20, and evaluation episodes end early only by
succeeding. This script runs the same adaptation (same seed, same agent, same envs as
``fastadapt evaluate RUN --protocol metaworld``) with Meta-World's ``evaluation()`` loop run on
until every sub-env has ended its first evaluation episode, and prints both counts: Meta-World's
own (it equals the command's for the same seed) and the success of all sub-envs' first
episodes with a 95% interval over sub-envs. Last line: one JSON object.

    python benchmarks/metaworld_first_episodes.py RUN [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import metaworld.evaluation as mwe
import numpy as np

from fastadapt.evaluation.metaworld_protocol import MetaWorldSettings, make_test_envs
from fastadapt.integrations.metaworld import MetaWorldAgent
from fastadapt.run.loading import load_algorithm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = MetaWorldSettings()
    algorithm = load_algorithm(args.run, "cpu")
    agent = algorithm.make_agent(settings.meta_batch_size, args.seed)
    envs = make_test_envs(algorithm.family, settings, agent.acts_on_rewards)  # type: ignore[arg-type]
    envs.call("seed", args.seed)
    rounds: list[list[tuple[int, float]]] = []

    def evaluation(agent: Any, eval_envs: Any, num_episodes: int) -> Any:
        """Meta-World's ``evaluation()``, run on until every sub-env ended an episode."""
        before = np.all(eval_envs.get_attr("terminate_on_success")).item()
        eval_envs.call("toggle_terminate_on_success", True)
        obs, _ = eval_envs.reset()
        agent.reset(np.ones(eval_envs.num_envs, dtype=np.bool_))
        first: list[tuple[int, float] | None] = [None] * eval_envs.num_envs
        ended: list[tuple[int, float]] = []
        while any(f is None for f in first) or len(ended) < num_episodes:
            obs, _, terminated, truncated, infos = eval_envs.step(agent.eval_action(obs))
            dones = np.logical_or(terminated, truncated)
            agent.reset(dones)
            for i in np.flatnonzero(dones):
                outcome = (int(infos["final_info"]["success"][i]),
                           float(infos["final_info"]["episode"]["r"][i]))
                ended.append(outcome)
                first[i] = first[i] or outcome
        eval_envs.call("toggle_terminate_on_success", before)
        rounds.append([f for f in first if f is not None])
        counted = ended[:num_episodes]  # Meta-World's count (one class: ML1)
        rate = float(np.mean([c[0] for c in counted]))
        name = mwe._get_task_names(eval_envs)[0]
        return rate, float(np.mean([c[1] for c in counted])), {name: rate}, {}

    original, mwe.evaluation = mwe.evaluation, evaluation  # type: ignore[assignment]
    start = time.perf_counter()
    try:
        success, mean_return, _ = mwe.metalearning_evaluation(
            MetaWorldAgent(agent, recurrent_info_in_obs=agent.acts_on_rewards), envs,
            settings.num_evals, settings.adaptation_steps, settings.adaptation_episodes,
            settings.evaluation_episodes)
    finally:
        mwe.evaluation = original
        envs.close()
    successes = np.array([[s for s, _ in r] for r in rounds], dtype=float)  # [rounds, envs]
    returns = np.array([[g for _, g in r] for r in rounds])
    per_env = successes.mean(axis=0)
    print(json.dumps({
        "metaworld_success": success, "metaworld_return": mean_return,
        "first_episodes_success": float(successes.mean()),
        "first_episodes_success_ci95": float(1.96 * per_env.std(ddof=1) / np.sqrt(len(per_env))),
        "first_episodes_return": float(returns.mean()), "episodes": int(successes.size),
        "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
