"""The agent API (``fastadapt.load_agent``): one adaptation path with the meta-test.

Fed the very episodes the meta-test sampled, an agent adapts to the parameters the meta-test
sampled its next episodes with (MAML family, Meta-SGD, fine-tuning), carries RL²'s memory
through the states of the sampler's trials, and builds PEARL's posterior from the same context.
Then: the step log's episodes, masks and resets, and every bad input as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import fastadapt
from fastadapt.algorithms.agent import Agent, StepLog
from fastadapt.algorithms.base import Algorithm, MetaTestProtocol
from fastadapt.algorithms.pearl.update import episode_context
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.cli import main
from fastadapt.config import EnvConfig, TrainConfig
from fastadapt.errors import AgentError, CheckpointError
from fastadapt.run.config_loading import load_train_config, resolve
from fastadapt.run.rundir import POLICY_FILE
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params, Trajectories
from tests.cli_errors import one_line_error
from tests.tiny_runs import CONFIG, TINY

CPU = torch.device("cpu")


class RecordingSampler(VectorSampler):
    """The in-process sampler, keeping the parameters and episodes of every call."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: list[tuple[Params, Trajectories]] = []

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        episodes = super().sample(params, tasks, episodes_per_task)
        self.seen.append(({k: v.clone() for k, v in params.items()}, episodes))
        return episodes


def _algorithm(name: str, overrides: list[str]) -> Algorithm[Any]:
    return build_algorithm(load_train_config(name, overrides), CPU)


def _sampler(algorithm: Algorithm[Any]) -> RecordingSampler:
    return RecordingSampler(algorithm.family, algorithm.policy, algorithm.horizon, 7)


def _feed(agent: Agent, episodes: Trajectories) -> None:
    """Give ``agent`` episodes ``[N, E, H, ...]`` step by step, every env in lockstep."""
    assert bool((episodes.masks > 0).all()), "lockstep feeding needs full-length episodes"
    horizon = episodes.masks.shape[2]
    for e in range(episodes.masks.shape[1]):
        for t in range(horizon):
            obs = episodes.observations[:, e, t].numpy()
            last = t == horizon - 1
            assert episodes.final_observations is not None
            after = (episodes.final_observations[:, e] if last
                     else episodes.observations[:, e, t + 1]).numpy()
            n = obs.shape[0]
            agent.observe(obs.astype(np.float64), episodes.actions[:, e, t].numpy(),
                          episodes.rewards[:, e, t].numpy(), np.zeros(n, bool),
                          np.full(n, last), after)


@pytest.mark.parametrize(("config", "extra"), [
    ("maml-trpo/2d-navigation", ["maml-trpo.episodes_per_task=3"]),
    ("meta-sgd/2d-navigation", ["meta-sgd.episodes_per_task=3"]),
    ("finetune/2d-navigation", ["finetune.episodes_per_task=3"]),
])
def test_gradient_agent_adapts_to_the_parameters_meta_test_samples_with(
        config: str, extra: list[str]) -> None:
    algorithm = _algorithm(config, ["env.horizon=12", "policy.hidden_sizes=[16]", *extra])
    tasks = algorithm.family.test_tasks(4)
    sampler = _sampler(algorithm)
    algorithm.meta_test(sampler, tasks, MetaTestProtocol(2, 3))
    agent = algorithm.make_agent(len(tasks))
    for step in range(2):  # inner step k: the episodes of call k -> the parameters of call k+1
        _feed(agent, sampler.seen[step][1])
        agent.adapt()
        expected = sampler.seen[step + 1][0]
        assert all(torch.equal(agent.params[name], expected[name]) for name in expected), step
    assert list(agent.steps_taken) == [2, 2, 2, 2]


@pytest.mark.parametrize("config", ["rl2/bandit-k5", "rl2/sparse-point-robot"])
def test_recurrent_agent_carries_the_memory_of_the_samplers_trials(config: str) -> None:
    algorithm = _algorithm(config, [])
    tasks = algorithm.family.test_tasks(3)
    episodes = 2
    with VectorSampler(algorithm.family, algorithm.policy, algorithm.horizon, 5) as sampler:
        trials = sampler.sample_trials(algorithm.parameters(), tasks, 1, episodes)
    assert bool((trials.masks > 0).all())
    agent = algorithm.make_agent(len(tasks))
    obs_dim = agent.observations(np.zeros((3, *agent.obs_shape)), "o").shape[1]
    length = trials.masks.shape[2]
    for t in range(length):
        obs = trials.inputs[:, 0, t, :obs_dim].numpy()
        agent.act(obs)
        ended = np.full(len(tasks), (t + 1) % algorithm.horizon == 0)
        agent.observe(obs, trials.actions[:, 0, t].numpy(), trials.rewards[:, 0, t].numpy(),
                      np.zeros(len(tasks), bool), ended, obs)
        memory = agent.memory  # type: ignore[attr-defined]
        assert torch.allclose(memory.hidden, trials.hidden[:, 0, t], atol=1e-6), t
    agent.adapt()  # nothing to do, and no error


def test_pearl_agent_infers_from_the_context_meta_test_builds() -> None:
    algorithm = _algorithm("pearl/sparse-point-robot", [])
    tasks = algorithm.family.test_tasks(3)
    sampler = _sampler(algorithm)
    algorithm.meta_test(sampler, tasks, MetaTestProtocol(2, 1))
    agent = algorithm.make_agent(len(tasks))
    batches = [episodes for _, episodes in sampler.seen]
    for episodes in batches:
        _feed(agent, episodes)
    pearl = algorithm.settings
    center, width = algorithm.center, algorithm.half_width  # type: ignore[attr-defined]
    parts = [episode_context(b, center, width, pearl.next_obs_in_context) for b in batches]
    ours = episode_context(agent.log.trajectories(CPU), center, width,  # type: ignore[attr-defined]
                           pearl.next_obs_in_context)
    expected = torch.cat([rows for rows, _ in parts], dim=1)
    assert torch.equal(ours[1], torch.cat([mask for _, mask in parts], dim=1))
    assert torch.allclose(ours[0], expected)
    z_before = agent.z.clone()  # type: ignore[attr-defined]
    agent.adapt()
    assert agent.inferred.all() and not torch.equal(agent.z, z_before)  # type: ignore[attr-defined]


def test_step_log_splits_episodes_per_env_and_keeps_unfinished_ones() -> None:
    log = StepLog(2)
    obs = np.arange(2, dtype=np.float32)[:, None]
    ends = [(False, True), (True, False), (False, False)]  # env 0: 2 + 1, env 1: 1 + 2 steps
    for step, (end0, end1) in enumerate(ends):
        log.record(obs + 10 * step, np.zeros((2, 1), np.float32), np.full(2, step, np.float32),
                   np.array([end0, False]), np.array([False, end1]), obs + 10 * step + 5)
    episodes = log.trajectories(CPU)
    assert episodes.masks.tolist() == [[[1, 1], [1, 0]], [[1, 0], [1, 1]]]
    assert episodes.rewards[0].tolist() == [[0, 1], [2, 0]]
    assert episodes.terminated is not None and episodes.terminated[0, 0].tolist() == [0, 1]
    assert episodes.final_observations is not None
    assert episodes.final_observations[:, :, 0].tolist() == [[15, 25], [6, 26]]
    log.forget(np.array([True, False]))
    assert log.steps_per_env().tolist() == [0, 3]


def test_reset_of_some_envs_keeps_the_others_adaptation() -> None:
    algorithm = _algorithm("maml-trpo/2d-navigation", ["env.horizon=6"])
    sampler = _sampler(algorithm)
    tasks = algorithm.family.test_tasks(2)
    algorithm.meta_test(sampler, tasks, MetaTestProtocol(1, 2))
    agent = algorithm.make_agent(2)
    _feed(agent, sampler.seen[0][1])
    agent.adapt()
    adapted = {k: v.clone() for k, v in agent.params.items()}  # type: ignore[attr-defined]
    agent.reset(np.array([True, False]))
    for name, theta in algorithm.parameters().items():
        assert torch.equal(agent.params[name][0], theta)  # type: ignore[attr-defined]
        assert torch.equal(agent.params[name][1], adapted[name][1])  # type: ignore[attr-defined]


def test_deterministic_actions_are_the_means_and_repeatable() -> None:
    config = resolve(TrainConfig(algorithm="pearl", env=EnvConfig(name="Navigation2D")))
    agent = build_algorithm(config, CPU).make_agent(3, seed=4)
    obs = np.random.default_rng(0).normal(size=(3, *agent.obs_shape))
    first = agent.act(obs, deterministic=True)
    assert first.dtype == np.float32 and first.shape == (3, 2)
    assert np.array_equal(first, agent.act(obs.astype(np.float32), deterministic=True))
    assert not np.array_equal(agent.act(obs), agent.act(obs))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("agent") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", *TINY]) == 0
    return run


def test_load_agent_acts_with_the_runs_final_parameters(tiny_run: Path) -> None:
    agent = fastadapt.load_agent(tiny_run, num_envs=2)
    algorithm = fastadapt.load_algorithm(tiny_run)
    for name, value in algorithm.parameters().items():
        assert torch.equal(agent.theta[name], value)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("call", "expected"), [
    (lambda a: a.act(np.zeros((3, 2))), "observations have shape (3, 2)"),
    (lambda a: a.act(np.zeros((2, 5))), "want (2, 2)"),
    (lambda a: a.act(np.array([["a", "b"], ["c", "d"]])), "must be real numbers"),
    (lambda a: a.adapt(), "adapt() needs experience"),
    (lambda a: a.reset([1, 0]), "mask must be 2 booleans"),
    (lambda a: a.observe(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(3), np.zeros(2, bool),
                         np.zeros(2, bool), np.zeros((2, 2))), "rewards have shape (3,)"),
])
def test_bad_input_is_one_line(tiny_run: Path, call: Any, expected: str) -> None:
    agent = fastadapt.load_agent(tiny_run, num_envs=2)
    with pytest.raises(AgentError) as caught:
        call(agent)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_num_envs_must_be_positive(tiny_run: Path) -> None:
    with pytest.raises(AgentError, match="num_envs must be an integer >= 1"):
        fastadapt.load_agent(tiny_run, num_envs=0)


def test_a_run_of_a_newer_version_is_one_line(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    run = tmp_path / "newer"
    run.mkdir()
    (run / "config.yaml").write_bytes((tiny_run / "config.yaml").read_bytes())
    save_file(load_file(tiny_run / POLICY_FILE), run / POLICY_FILE, {"format": "99"})
    with pytest.raises(CheckpointError, match="run format 99, written by a newer fastadapt"):
        fastadapt.load_agent(run)
    assert main(["evaluate", str(run), "--tasks", "1"]) != 0
    assert "written by a newer fastadapt" in one_line_error(capsys)
