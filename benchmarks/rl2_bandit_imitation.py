"""Can the RL² bandit network play like Gittins? Imitation as a check of what it can represent.

Trains the RL² policy of a bandit config (``--config``: a file or a packaged config's name;
its network, inputs, batch of trials and Adam settings) to imitate the FH-Gittins index policy
with DAgger (Ross et al. 2011): every iteration plays the config's trials with the current
policy, so the histories are the imitator's own, labels every pull with the arms Gittins would
pull from that history (:func:`~fastadapt.baselines.bandits.gittins_choices`; ties share the
label), and takes ``rl2.ppo.epochs x rl2.ppo.minibatches`` Adam steps on the cross-entropy
between the policy and the labels. Then it fits the value head by least squares to the scaled
Monte-Carlo returns of the imitator's trials (so PPO started from it has a critic from its
first step), writes an RL² run directory (``fastadapt evaluate`` reads it;
``--set run.init_from=DIR`` starts RL² from it), and evaluates it on the held-out bandits of
``benchmarks/rl2_bandits.py`` (evaluation seed 0) next to the Gittins policy on the same
bandits. With ``--ppo-iterations N`` it then trains RL² with the config's PPO from the
imitation policy for ``N`` iterations and evaluates again: whether RL²'s own objective keeps
Gittins-level play.

If the network reaches Gittins by imitation where RL² from scratch does not, the network can
represent the play and what holds RL² back is how PPO gets there (docs/rl2-experiments.md
records what it found).

    python benchmarks/rl2_bandit_imitation.py [--config rl2/bandit-k5-n100] [--arms 10]
        [--iterations 600] [--ppo-iterations 0] [--out runs/bench-rl2-imitation]
        [--tasks 500] [--trials 4] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rl2_bandits import summary, train_and_evaluate
from torch import Tensor

from fastadapt.algorithms.common.ppo import masked_mean
from fastadapt.algorithms.common.returns import discounted_returns
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.algorithms.rl2.algorithm import RL2
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.baselines.bandits import gittins, gittins_choices, gittins_indices
from fastadapt.evaluation.protocol import evaluate_run
from fastadapt.run.config_loading import load_train_config, resolve
from fastadapt.run.rundir import save_policy_file, save_run_config
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params, Trials

CONFIG = "rl2/bandit-k5-n100"
"""The default bandit config (a packaged config's name; ``--config`` also takes a file)."""


def imitation_loss(setup: RL2, params: Params, trials: Trials, labels: Tensor) -> Tensor:
    """Cross-entropy of the policy of ``setup`` (the RL² algorithm built from the config)
    against the uniform distribution over the labelled arms, mean over unmasked pulls;
    ``trials`` ``[N, L, ...]``, ``labels`` ``[N, L, K]`` bool."""
    policy = setup.policy
    unroll = policy.unroll(params, trials.inputs, trials.masks,
                           policy.initial_hidden(trials.masks.shape[0]), all_states=False)
    target = labels.float() / labels.float().sum(-1, keepdim=True)
    return masked_mean(-(target * F.log_softmax(unroll.out, -1)).sum(-1), trials.masks)


def flat_trials(trials: Trials) -> Trials:
    """``[T, B, ...]`` trials as ``[T * B, ...]``."""
    return Trials(*(None if x is None else x.flatten(0, 1) for x in trials))


def imitate(setup: RL2, iterations: int, seed: int, table: np.ndarray) -> Params:
    """DAgger on FH-Gittins for ``iterations`` iterations of the config's trials, from the
    initial parameters of ``setup`` (the RL² algorithm built from the config; ``table``:
    :func:`~fastadapt.baselines.bandits.gittins_indices` of at least the trial's pulls)."""
    rl2 = setup.settings
    ppo = rl2.ppo
    params = {n: p.requires_grad_(True) for n, p in setup.initial_parameters().items()}
    optimizer = torch.optim.Adam(params.values(), lr=ppo.learning_rate, eps=1e-5)
    rng, generator = np.random.default_rng([seed, 0]), torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with VectorSampler(setup.family, setup.policy, setup.horizon, seed) as sampler:
        for iteration in range(1, iterations + 1):
            tasks = setup.family.sample_tasks(rng, rl2.tasks_per_iteration)
            trials = flat_trials(sampler.sample_trials(
                {n: p.detach() for n, p in params.items()}, tasks, rl2.trials_per_task,
                rl2.episodes_per_trial))
            labels = torch.from_numpy(gittins_choices(trials.actions.numpy(),
                                                      trials.rewards.numpy(),
                                                      setup.policy.action_features, table))
            for _ in range(ppo.epochs):
                order = torch.randperm(len(labels), generator=generator)
                for index in order.chunk(ppo.minibatches):
                    minibatch = Trials(*(None if x is None else x[index] for x in trials))
                    loss = imitation_loss(setup, params, minibatch, labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    torch.nn.utils.clip_grad_norm_(params.values(), ppo.max_grad_norm)
                    optimizer.step()
            if iteration % 50 == 0 or iteration == iterations:
                reward = float(trials.rewards.sum(-1).mean())
                print(f"imitation {iteration}/{iterations}: loss {float(loss.detach()):.3f}, "
                      f"reward per trial {reward:.1f}, {time.perf_counter() - start:.0f} s",
                      flush=True)
    return {n: p.detach() for n, p in params.items()}


def fit_value_head(setup: RL2, params: Params, seed: int) -> Params:
    """``params`` with the linear value head set by least squares (ridge 1e-3) to the scaled
    discounted returns of 64 x 32 trials played with them by the policy of ``setup`` (the RL²
    algorithm built from the config)."""
    rl2 = setup.settings
    with VectorSampler(setup.family, setup.policy, setup.horizon, seed + 1) as sampler:
        tasks = setup.family.sample_tasks(np.random.default_rng([seed, 1]), 64)
        trials = flat_trials(sampler.sample_trials(params, tasks, 32, rl2.episodes_per_trial))
    rewards = (trials.rewards * rl2.reward_scale).double()  # [N, L]
    returns = discounted_returns(rewards, trials.masks.double(), rl2.gamma)
    size = setup.policy.hidden_size
    states = trials.hidden[..., :size].reshape(-1, size).double()
    design = torch.cat([states, torch.ones(len(states), 1, dtype=torch.float64)], dim=1)
    ridge = 1e-3 * torch.eye(design.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(design.T @ design + ridge, design.T @ returns.reshape(-1))
    return {**params, "value.weight": solution[:-1].float()[None],
            "value.bias": solution[-1:].float()}


def evaluate(run_dir: Path, tasks: int, trials: int, pulls: int) -> dict[str, Any]:
    """``evaluation.json`` of a run on the held-out bandits of ``rl2_bandits.py``."""
    path = evaluate_run(run_dir, tasks, pulls - 1, trials, seed=0)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def reward_per_trial(evaluation: dict[str, Any]) -> np.ndarray:
    """Total reward per trial of each held-out bandit ``[N]``."""
    return np.array(evaluation["per_task_returns"]).sum(axis=1)


def main() -> None:
    """Imitate, evaluate, optionally continue with PPO, and print the table and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG,
                        help="config file or packaged config name (default %(default)s)")
    parser.add_argument("--arms", type=int, default=10, help="K")
    parser.add_argument("--iterations", type=int, default=600, help="imitation iterations")
    parser.add_argument("--ppo-iterations", type=int, default=0,
                        help="RL² (PPO) iterations from the imitation policy afterwards")
    parser.add_argument("--tasks", type=int, default=500, help="held-out bandits")
    parser.add_argument("--trials", type=int, default=4, help="trials per held-out bandit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-rl2-imitation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (repeatable), e.g. rl2.episodes_per_trial=10")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [f"env.kwargs.num_arms={args.arms}", f"run.seed={args.seed}",
                 "run.tensorboard=false", "run.num_threads=1", *args.set]
    config = resolve(load_train_config(args.config, overrides))
    rl2 = config.section
    if not isinstance(rl2, RL2Config):
        raise SystemExit(f"{args.config}: not an RL² config (algorithm {config.algorithm})")
    if rl2.separate_value_gru or rl2.task_critic:
        raise SystemExit("the value head is fitted on the policy trunk's state: use a config "
                         "without rl2.separate_value_gru and rl2.task_critic")
    setup = build_algorithm(config, torch.device("cpu"))
    assert isinstance(setup, RL2)
    pulls = rl2.episodes_per_trial
    table = gittins_indices(pulls)
    params = fit_value_head(setup, imitate(setup, args.iterations, args.seed, table), args.seed)
    run_dir = Path(args.out) / "imitation"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_run_config(config, run_dir)
    save_policy_file(run_dir, params, 0)
    evaluation = evaluate(run_dir, args.tasks, args.trials, pulls)
    means = np.array([task["means"] for task in evaluation["tasks"]])
    best = pulls * means.max(axis=1)
    rows = {"imitation": summary(reward_per_trial(evaluation), best)}
    if args.ppo_iterations:
        evaluation = train_and_evaluate(args.config, [
            *overrides, f"run.iterations={args.ppo_iterations}",
            f"run.checkpoint_every={args.ppo_iterations}", f"run.init_from={run_dir}"],
            Path(args.out) / "rl2-from-imitation", args.tasks, args.trials)[0]
        rows[f"RL² (PPO) from it, {args.ppo_iterations} iterations"] = summary(
            reward_per_trial(evaluation), best)
    rows["FH-Gittins, same bandits"] = summary(
        gittins(means, pulls, 20, np.random.default_rng(args.seed), table), best)
    print(f"\nK = {args.arms}, n = {pulls}, {args.tasks} held-out bandits:\n")
    print("| player | reward per trial |\n|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['reward']:.2f} ± {row['ci95']:.2f} |")
    print(json.dumps({"benchmark": "rl2_bandit_imitation", "arms": args.arms, "pulls": pulls,
                      "imitation_iterations": args.iterations,
                      "ppo_iterations": args.ppo_iterations, "results": rows}))


if __name__ == "__main__":
    main()
