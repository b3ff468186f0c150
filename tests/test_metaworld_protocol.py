"""Meta-World's own evaluation of fastadapt agents: :class:`MetaWorldAgent` (Meta-World's
``MetaLearningAgent`` protocol over a fastadapt :class:`Agent`) on a fake agent, and
``fastadapt evaluate RUN --protocol metaworld`` on tiny trained runs."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from cli_errors import one_line_error
from tiny_runs import CONFIG, TINY
from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.envs import registry
from fastadapt.errors import AgentError, ConfigError
from fastadapt.integrations.metaworld import MetaWorldAgent

needs_metaworld = pytest.mark.skipif(
    not registry.metaworld_installed(),
    reason="Meta-World is not installed: pip install 'fastadapt[metaworld]'",
)
pytestmark = needs_metaworld

OBS, ACT = 39, 4


class FakeAgent(Agent):
    """Records every call; acts with the first 4 observation entries."""

    def __init__(self, num_envs: int) -> None:
        box = gym.spaces.Box(-np.inf, np.inf, (OBS,), dtype=np.float32)
        super().__init__(num_envs, box, gym.spaces.Box(-1.0, 1.0, (ACT,), dtype=np.float32),
                         torch.device("cpu"))
        self.calls: list[tuple[Any, ...]] = []

    def _act(self, observations: Tensor, deterministic: bool) -> Tensor:
        self.calls.append(("act", observations.numpy().copy(), deterministic))
        return observations[:, :ACT].clone()

    def _record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
                ) -> None:
        self.calls.append(("observe", observations, actions, rewards, terminated, truncated,
                           next_observations))

    def _forget(self, mask: np.ndarray) -> None:
        self.calls.append(("reset", mask.copy()))

    def _end_episodes(self, mask: np.ndarray) -> None:
        self.calls.append(("new_episode", mask.copy()))

    def adapt(self) -> None:
        self.calls.append(("adapt",))


class FakeRecurrentAgent(FakeAgent):
    acts_on_rewards = True


def _obs(value: float, n: int = 2, extra: np.ndarray | None = None) -> np.ndarray:
    obs = np.full((n, OBS), value, dtype=np.float64) + np.arange(n)[:, None]
    return obs if extra is None else np.concatenate([obs, extra], axis=1)


def test_every_protocol_method_exists_with_its_parameters() -> None:
    from metaworld.evaluation import MetaLearningAgent

    names = {"init", "adapt_action", "step", "adapt", "eval_action", "reset"}
    for name in names:
        theirs = inspect.signature(getattr(MetaLearningAgent, name)).parameters
        ours = inspect.signature(getattr(MetaWorldAgent, name)).parameters
        assert list(ours) == list(theirs), name
    assert names <= set(dir(MetaLearningAgent))


def test_a_step_is_observed_with_the_next_observations_or_its_own_where_it_ended() -> None:
    from metaworld.evaluation import Timestep

    fake = FakeAgent(2)
    agent = MetaWorldAgent(fake)
    agent.init()
    actions, aux = agent.adapt_action(_obs(0.0))
    assert aux == {} and actions.dtype == np.float64 and actions.shape == (2, ACT)
    no, env1 = np.array([False, False]), np.array([False, True])
    agent.step(Timestep(_obs(0.0), actions, np.array([1.0, 2.0]), no, env1, {}))
    assert [c[0] for c in fake.calls] == ["reset", "act"]  # pending until the next obs
    agent.adapt_action(_obs(5.0))
    kind, obs, acts, rewards, terminated, truncated, next_obs = fake.calls[2]
    assert kind == "observe" and fake.calls[3][0] == "act"
    np.testing.assert_array_equal(obs, _obs(0.0))
    np.testing.assert_array_equal(acts, actions)
    np.testing.assert_array_equal(rewards, [1.0, 2.0])
    np.testing.assert_array_equal(truncated, env1)
    assert not terminated.any()
    # env 0 went on: the next observation; env 1 ended (autoreset): its own observation
    np.testing.assert_array_equal(next_obs[0], _obs(5.0)[0])
    np.testing.assert_array_equal(next_obs[1], _obs(0.0)[1])
    agent.step(Timestep(_obs(5.0), actions, np.array([3.0, 4.0]), no, no, {}))
    agent.adapt()  # the pending step observed, the open episodes closed, then adapt
    assert [c[0] for c in fake.calls[4:]] == ["observe", "new_episode", "adapt"]
    np.testing.assert_array_equal(fake.calls[4][6], _obs(5.0))
    np.testing.assert_array_equal(fake.calls[5][1], [True, True])
    eval_actions = agent.eval_action(_obs(7.0))
    assert fake.calls[-1][0] == "act" and fake.calls[-1][2] is True
    np.testing.assert_array_equal(eval_actions, _obs(7.0)[:, :ACT])
    agent.reset(np.array([True, False]))
    assert fake.calls[-1][0] == "new_episode"
    np.testing.assert_array_equal(fake.calls[-1][1], [True, False])


def test_recurrent_columns_are_stripped_and_evaluation_steps_observed_with_rewards() -> None:
    fake = FakeRecurrentAgent(2)
    agent = MetaWorldAgent(fake, recurrent_info_in_obs=True)
    agent.init()

    def info(reward: float) -> np.ndarray:  # previous action, reward / 10, done
        return np.tile([0.1, 0.2, 0.3, 0.4, reward, 0.0], (2, 1))

    agent.reset(np.array([True, True]))  # evaluation starts
    first = agent.eval_action(_obs(1.0, extra=info(0.0)))
    assert fake.calls[-1][0] == "act" and fake.calls[-1][1].shape == (2, OBS)
    agent.reset(np.array([False, False]))
    agent.eval_action(_obs(2.0, extra=info(0.25)))
    kind, obs, acts, rewards, terminated, truncated, next_obs = fake.calls[-2]
    assert kind == "observe"
    np.testing.assert_array_equal(obs, _obs(1.0))
    np.testing.assert_array_equal(acts, first)
    np.testing.assert_allclose(rewards, [2.5, 2.5])  # the column x 10
    assert not truncated.any() and not terminated.any()
    np.testing.assert_array_equal(next_obs, _obs(2.0))
    agent.reset(np.array([True, False]))  # env 0's episode ended: observed at the next action
    assert fake.calls[-1][0] == "act"
    agent.eval_action(_obs(3.0, extra=info(0.5)))
    truncated, next_obs = fake.calls[-2][5], fake.calls[-2][6]
    np.testing.assert_array_equal(truncated, [True, False])
    np.testing.assert_array_equal(next_obs[0], _obs(2.0)[0])  # autoreset: its own
    np.testing.assert_array_equal(next_obs[1], _obs(3.0)[1])
    with pytest.raises(AgentError, match="Meta-World observations have shape"):
        agent.eval_action(_obs(3.0))  # the columns missing


def test_an_agent_acting_on_rewards_needs_recurrent_info() -> None:
    with pytest.raises(AgentError, match="recurrent_info_in_obs=True") as err:
        MetaWorldAgent(FakeRecurrentAgent(2))
    assert len(str(err.value).splitlines()) == 1


def test_the_vector_envs_test_goals_are_our_familys() -> None:
    from fastadapt.evaluation.metaworld_protocol import MetaWorldSettings, make_test_envs

    family = registry.make_family("MetaWorld-ML1-reach-v3", benchmark_seed=3)
    settings = MetaWorldSettings(meta_batch_size=2, total_tasks_per_cls=4,
                                 max_episode_steps=10)
    envs = make_test_envs(family, settings, recurrent_info_in_obs=False)
    try:
        tasks = [task for tasks in envs.get_attr("tasks") for task in tasks]
    finally:
        envs.close()
    theirs = sorted(tuple(pickle.loads(task.data)["rand_vec"]) for task in tasks)
    ours = sorted(tuple(family.task_to_dict(task)["rand_vec"]) for task in family.test_tasks(4))
    assert theirs == ours
    with pytest.raises(ConfigError, match="multiple of the 2 sub-envs"):
        MetaWorldSettings(meta_batch_size=2, total_tasks_per_cls=3).check(1)


MW_TINY = ["--protocol", "metaworld", "--metaworld-evals", "1", "--episodes", "1",
           "--eval-episodes", "1", "--horizon", "10", "--meta-batch-size", "2",
           "--tasks", "2"]
TRAIN_TINY = {
    "maml-trpo": ["--set", "maml-trpo.tasks_per_iteration=2",
                  "--set", "maml-trpo.episodes_per_task=2", "--set", "policy.hidden_sizes=[8]"],
    "rl2": ["--set", "rl2.tasks_per_iteration=2", "--set", "rl2.trials_per_task=1",
            "--set", "rl2.hidden_size=8"],
    "pearl": ["--set", "pearl.train_tasks=4", "--set", "pearl.tasks_per_iteration=2",
              "--set", "pearl.tasks_per_step=2", "--set", "pearl.initial_episodes=1",
              "--set", "pearl.prior_episodes=1", "--set", "pearl.extra_posterior_episodes=1",
              "--set", "pearl.gradient_steps=2", "--set", "pearl.batch_transitions=4",
              "--set", "pearl.context_transitions=4", "--set", "pearl.hidden_sizes=[8]",
              "--set", "pearl.encoder_hidden_sizes=[8]"],
}
CONFIGS = {"maml-trpo": "maml-trpo/metaworld-ml1-reach", "rl2": "rl2/metaworld-ml1-reach",
           "pearl": "pearl/metaworld-ml1-reach-small"}


def _train(algorithm: str, run: Path) -> Path:
    from fastadapt.cli import main

    assert main(["train", CONFIGS[algorithm], "--run-dir", str(run), *TRAIN_TINY[algorithm],
                 "--set", "env.horizon=10", "--set", "run.tensorboard=false",
                 "--iterations", "1", "--quiet"]) == 0
    return run


@pytest.mark.parametrize("algorithm", ["maml-trpo", "rl2", "pearl"])
def test_evaluate_adds_metaworlds_result_next_to_ours(
        tmp_path: Path, algorithm: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fastadapt.cli import main

    run = _train(algorithm, tmp_path / algorithm)
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "1"]) == 0
    ours = json.loads((run / "evaluation.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), *MW_TINY]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    assert summary.startswith("Meta-World's protocol on the ML1 reach-v3 test goals: success")
    result = json.loads((run / "evaluation.json").read_text())
    theirs = result.pop("metaworld_protocol")
    assert result == ours  # ours kept
    assert 0.0 <= theirs["success_rate"] <= 1.0 and np.isfinite(theirs["mean_return"])
    assert list(theirs["per_task_success_rates"]) == ["reach-v3"]
    assert theirs["settings"] == {"num_evals": 1, "adaptation_steps": 1,
                                  "adaptation_episodes": 1, "evaluation_episodes": 1,
                                  "meta_batch_size": 2, "total_tasks_per_cls": 2,
                                  "max_episode_steps": 10}
    assert theirs["seed"] == 0 and theirs["benchmark_seed"] == 0
    if algorithm == "maml-trpo":  # the same seed, the same numbers
        assert main(["evaluate", str(run), *MW_TINY]) == 0
        again = json.loads((run / "evaluation.json").read_text())["metaworld_protocol"]
        for key in ("success_rate", "mean_return", "per_task_success_rates"):
            assert again[key] == theirs[key]
        # ours again, same policy: Meta-World's result is kept beside it
        assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "1"]) == 0
        kept = json.loads((run / "evaluation.json").read_text())
        assert kept["num_tasks"] == 3 and kept["metaworld_protocol"] == again
        # trained further: ours of the new policy drops the old policy's Meta-World result
        assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 0
        assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "1"]) == 0
        newer = json.loads((run / "evaluation.json").read_text())
        assert "metaworld_protocol" not in newer
        assert newer["policy_sha256"] != kept["policy_sha256"]


def test_metaworld_protocol_on_another_family_or_an_unknown_protocol_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastadapt.cli import main

    run = tmp_path / "nav"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--protocol", "metaworld"]) == 2
    err = one_line_error(capsys)
    assert "needs a Meta-World run" in err and "2D" in err
    assert main(["evaluate", str(run), "--protocol", "gym"]) == 2
    assert "unknown protocol 'gym' (fastadapt, metaworld)" in one_line_error(capsys)
    assert main(["evaluate", str(run), "--horizon", "5"]) == 2
    assert "--horizon is an option of --protocol metaworld" in one_line_error(capsys)
    assert not (run / "evaluation.json").exists()
