"""MuJoCo locomotion families: exact agreement with gymnasium's v5 envs, checks, bad input."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.algorithms.rl2.algorithm import trial_outcomes
from fastadapt.cli import main
from fastadapt.envs import mujoco_batched
from fastadapt.envs.locomotion import (
    AntDir,
    AntGoal,
    AntVel,
    DirectionTask,
    GoalTask,
    HalfCheetahDir,
    HalfCheetahVel,
    VelocityTask,
)
from fastadapt.envs.mujoco_batched import BatchedMujoco, load_model
from fastadapt.errors import ConfigError, TaskError
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.policies.recurrent import GaussianRecurrentPolicy, RecurrentPolicySpec
from fastadapt.sampling.success import SuccessRecorder
from fastadapt.sampling.vector import VectorSampler

pytest.importorskip("mujoco")

FAMILIES = [HalfCheetahVel, HalfCheetahDir, AntVel, AntDir, AntGoal]


@pytest.mark.parametrize(
    ("family", "gym_id", "task"),
    [
        (HalfCheetahVel(), "HalfCheetah-v5", VelocityTask(1.3)),
        (AntVel(), "Ant-v5", VelocityTask(0.7)),
    ],
)
def test_same_trajectories_as_gymnasium_v5(family: HalfCheetahVel, gym_id: str,
                                           task: VelocityTask) -> None:
    """Same seed and actions: identical observations, velocities and terminations."""
    reference = gym.make(gym_id).unwrapped
    ours = family.make_env(task, horizon=60)
    ref_obs, _ = reference.reset(seed=5)
    obs, _ = ours.reset(seed=5)
    np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
    actions = np.random.default_rng(0).uniform(-1, 1, (60, family.action_space.shape[0]))
    for action in actions.astype(np.float32):
        ref_obs, _, ref_terminated, _, info = reference.step(action)
        obs, reward, terminated, _, _ = ours.step(action)
        np.testing.assert_array_equal(obs, ref_obs.astype(np.float32))
        expected = -abs(info["x_velocity"] - task.goal_velocity) - 0.05 * np.square(action).sum()
        if family.ant:  # survive bonus while healthy, and Ant v5's contact cost
            expected += float(not ref_terminated) + info["reward_contact"]
        assert reward == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert terminated == ref_terminated
        if terminated:
            break


@pytest.mark.parametrize("family_cls", FAMILIES)
def test_check_env_and_rewards_are_finite(family_cls: type[HalfCheetahVel]) -> None:
    family = family_cls()
    for task in family.sample_tasks(np.random.default_rng(1), 2):
        env = family.make_env(task, horizon=20)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(infinity|render).*")
            check_env(env, skip_render_check=True)
        env.reset(seed=0)
        for _ in range(20):
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert np.isfinite(reward)
            if terminated or truncated:
                break


def test_batched_shapes_and_task_dependent_rewards() -> None:
    family = HalfCheetahDir()
    tasks = [DirectionTask(1.0), DirectionTask(-1.0)]
    env = family.make_batched(tasks, 3, np.random.default_rng(0))
    obs = env.reset()
    assert obs.shape == (2, 3, 17) and obs.dtype == np.float32
    actions = np.zeros((2, 3, 6), dtype=np.float32)
    xy = env.xy.copy()
    _, rewards, terminated = env.step(actions)
    velocity = (env.xy[:, 0] - xy[:, 0]).reshape(2, 3) / env.dt
    np.testing.assert_allclose(rewards, np.array([[1.0], [-1.0]]) * velocity, rtol=1e-5)
    assert not terminated.any()


def test_reused_simulations_give_the_same_episodes_as_fresh_ones() -> None:
    """A batch borrows the ``MjData`` earlier batches gave back (even one left blown up with a
    non-zero warm-start); its episodes equal those of freshly allocated simulations."""
    family, tasks = AntVel(), [VelocityTask(0.5), VelocityTask(2.0)]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (30, 2, 3, 8)).astype(np.float32)

    def episodes(env: BatchedMujoco) -> list[np.ndarray]:
        out = [env.reset()]
        for a in actions:
            obs, rewards, _ = env.step(a)
            out += [obs, rewards]
        return out

    used = family.make_batched(tasks, 3, np.random.default_rng(1))
    episodes(used)
    used.datas[0].qvel[:] = 1e9  # leave one in a bad state
    datas = list(used.datas)
    del used  # gives its simulations back
    reused = family.make_batched(tasks, 3, np.random.default_rng(7))
    assert {id(d) for d in reused.datas} == {id(d) for d in datas}
    mujoco_batched._spare_datas.clear()  # no spares left: these are newly allocated
    fresh = family.make_batched(tasks, 3, np.random.default_rng(7))
    assert not {id(d) for d in fresh.datas} & {id(d) for d in datas}
    for a, b in zip(episodes(reused), episodes(fresh), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ant_goal_distribution_is_uniform_in_the_disc() -> None:
    tasks = AntGoal().sample_tasks(np.random.default_rng(0), 4000)
    radii = np.array([np.hypot(t.goal_x, t.goal_y) for t in tasks])
    assert radii.max() <= 3.0
    assert np.mean(radii < 1.5) == pytest.approx(0.25, abs=0.03)  # area fraction (1.5/3)^2


@pytest.mark.parametrize(
    ("family", "task", "message"),
    [
        (HalfCheetahVel(), VelocityTask(2.5), "outside [0, 2.0]"),
        (AntVel(), VelocityTask(-0.1), "outside [0, 3.0]"),
        (HalfCheetahDir(), DirectionTask(0.5), "direction must be -1 or +1"),
        (AntGoal(), GoalTask(3.0, 3.0), "outside radius 3"),
        (HalfCheetahVel(), DirectionTask(1.0), "expects a VelocityTask"),
    ],
)
def test_invalid_tasks_are_rejected(family: HalfCheetahVel, task: object, message: str) -> None:
    with pytest.raises(TaskError, match=re.escape(message)):
        family.make_batched([task], 1, np.random.default_rng(0))  # type: ignore[list-item]


def test_model_that_fails_to_load() -> None:
    with pytest.raises(ConfigError, match="failed to load"):
        load_model("/nonexistent/model.xml")


def test_physics_blow_up_ends_the_episode_and_is_counted() -> None:
    env = HalfCheetahVel().make_batched([VelocityTask(1.0)], 2, np.random.default_rng(0))
    env.reset()
    for _ in range(3):
        env.step(np.zeros((1, 2, 6), dtype=np.float32))
    env.datas[1].qvel[:] = np.nan  # MuJoCo resets it inside the next mj_step
    obs, rewards, terminated = env.step(np.zeros((1, 2, 6), dtype=np.float32))
    assert terminated.tolist() == [[False, True]]
    assert rewards[0, 1] == 0.0 and np.isfinite(obs).all()
    assert env.unstable.tolist() == [[False, True]]


def test_gym_env_flags_a_physics_blow_up_in_info() -> None:
    env = HalfCheetahVel().make_env(VelocityTask(1.0), horizon=20)
    env.reset(seed=0)
    zero = np.zeros(6, dtype=np.float32)
    for _ in range(3):
        _, _, terminated, _, info = env.step(zero)
        assert info == {"physics_unstable": False} and not terminated
    assert env._batched is not None
    env._batched.datas[0].qvel[:] = np.nan  # type: ignore[attr-defined]
    _, reward, terminated, _, info = env.step(zero)
    assert info == {"physics_unstable": True} and terminated and reward == 0.0


class _BlowUpCheetah(HalfCheetahVel):
    """HalfCheetahVel whose episode 1 of every task blows up at its fourth step."""

    def make_batched(self, tasks: list[VelocityTask], episodes_per_task: int,
                     rngs: object) -> BatchedMujoco:
        env = super().make_batched(tasks, episodes_per_task, rngs)
        step, calls = env.step, [0]

        def poisoned(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            calls[0] += 1
            if calls[0] == 4:
                for i in range(len(tasks)):
                    env.datas[i * episodes_per_task + 1].qvel[:] = np.nan
            return step(actions)

        env.step = poisoned  # type: ignore[method-assign]
        return env


def _assert_healthy_run_counts_no_blow_ups(run: Path, config: str, tiny: list[str]) -> None:
    """One tiny HalfCheetahVel iteration and a 2-task evaluation from the CLI: healthy physics
    is counted (``unstable_episodes`` present) and none is found, in training and evaluation."""
    assert main(["train", config, "--run-dir", str(run), "--iterations", "1", "--quiet",
                 "--set=env.horizon=5", "--set=run.tensorboard=false", *tiny]) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["unstable_episodes"] == 0.0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "1",
                 "--adaptation-steps", "1"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["unstable_episodes"] == 0


def test_blow_ups_reach_the_trajectories_and_the_training_metrics(tmp_path: Path) -> None:
    family = _BlowUpCheetah()
    policy = GaussianMLPPolicy(17, 6, (8,))
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, 2)
    tasks = [VelocityTask(0.5), VelocityTask(1.5)]
    with VectorSampler(family, policy, horizon=8, seed=0) as sampler:
        recorder = SuccessRecorder(sampler)
        trajectories = recorder.sample(params, tasks, 3)
    assert trajectories.unstable is not None
    assert trajectories.unstable.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    assert trajectories.masks[:, 1].sum(-1).tolist() == [4.0, 4.0]  # ended at its 4th step
    assert recorder.before_after() == {"unstable_episodes": 2.0}

    _assert_healthy_run_counts_no_blow_ups(
        tmp_path / "maml", "maml-trpo/halfcheetah-vel",
        ["--set=maml-trpo.tasks_per_iteration=2", "--set=maml-trpo.episodes_per_task=2",
         "--set=policy.hidden_sizes=[8]"])


def test_rl2_trials_count_blow_ups_per_episode(tmp_path: Path) -> None:
    family = _BlowUpCheetah()
    policy = GaussianRecurrentPolicy(17, 6, RecurrentPolicySpec(hidden_size=8))
    params = {n: p.detach() for n, p in policy.named_parameters()}
    tasks = [VelocityTask(0.5), VelocityTask(1.5)]
    with VectorSampler(family, policy, horizon=6, seed=0) as sampler:
        trials = sampler.sample_trials(params, tasks, 3, episodes_per_trial=2)
    # the 4th step (first episode) of trial 1 of each task blows up; the reset clears the flag
    assert trials.unstable is not None
    assert trials.unstable.tolist() == [[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]] * 2
    assert trials.masks[:, 1, :6].sum(-1).tolist() == [4.0, 4.0]  # ended at its 4th step
    assert trials.masks[:, 1, 6:].sum(-1).tolist() == [6.0, 6.0]  # the next episode runs
    assert trial_outcomes(trials, 2) == {"unstable_episodes": 2.0}

    _assert_healthy_run_counts_no_blow_ups(
        tmp_path / "rl2", "rl2/halfcheetah-vel",
        ["--set=rl2.tasks_per_iteration=2", "--set=rl2.trials_per_task=2",
         "--set=rl2.hidden_size=8"])
