"""Task families: gymnasium env checks, batched == single env, splits, hand-computed values."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.envs.base import TaskFamily
from fastadapt.envs.navigation import Navigation2D, NavigationTask
from fastadapt.envs.point_robot import SparsePointRobot
from fastadapt.envs.registry import (
    METAWORLD_PREFIX,
    describe_families,
    family_names,
    gym_id,
    make_family,
    metaworld_installed,
)
from fastadapt.envs.tabular_mdp import TabularMDP, TabularMDPTask
from fastadapt.errors import ConfigError, TaskError, UnknownEnvError

# Meta-World (when installed): one representative here; tests/test_metaworld.py covers the rest.
FAMILIES = [name for name in family_names() if not name.startswith(METAWORLD_PREFIX)] + (
    ["MetaWorld-ML1-reach-v3"] if metaworld_installed() else []
)

# Known, harmless check_env warnings: unbounded navigation positions; no render modes;
# Meta-World's hidden goal (three observation entries bounded by [0, 0]).
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Box observation space m.* value is -?infinity"),
    pytest.mark.filterwarnings("ignore:.*Box observation space maximum and minimum values are"),
    pytest.mark.filterwarnings("ignore:.*Not able to test alternative render modes"),
]


def _actions(family: TaskFamily[Any], num_steps: int, seed: int) -> list[Any]:
    family.action_space.seed(seed)
    return [family.action_space.sample() for _ in range(num_steps)]


# --- env checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_check_env_on_sampled_tasks(name: str) -> None:
    family = make_family(name)
    for task in family.sample_tasks(np.random.default_rng(1), 3):
        check_env(family.make_env(task).unwrapped)


@pytest.mark.parametrize("name", FAMILIES)
def test_check_env_through_gymnasium_make(name: str) -> None:
    family = make_family(name)
    for task in family.sample_tasks(np.random.default_rng(2), 2):
        env = gym.make(gym_id(name), task=task)
        check_env(env.unwrapped)
        assert env.unwrapped.task == task  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", FAMILIES)
def test_episode_is_truncated_at_horizon(name: str) -> None:
    env = gym.make(gym_id(name), horizon=7)
    env.reset(seed=0)
    truncations = [env.step(env.action_space.sample())[3] for _ in range(7)]
    assert truncations == [False] * 6 + [True]


def test_gymnasium_make_passes_family_kwargs() -> None:
    env = gym.make(gym_id("Bandit"), num_arms=3, num_pulls=10)
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.unwrapped.horizon == 10  # type: ignore[attr-defined]


# --- the gym env runs the batched code --------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_gym_env_and_batched_env_give_identical_trajectories(name: str) -> None:
    family = make_family(name)
    task = family.sample_tasks(np.random.default_rng(3), 1)[0]
    env = family.make_env(task)
    # TaskEnv builds its batched env from np_random, which reset(seed=s) makes default_rng(s).
    batched = family.make_batched([task], 1, np.random.default_rng(11))
    observation, _ = env.reset(seed=11)
    np.testing.assert_array_equal(observation, batched.reset()[0, 0])
    for action in _actions(family, 30, seed=5):
        observation, reward, terminated, _, _ = env.step(action)
        batch_obs, batch_rewards, batch_terminated = batched.step(np.asarray(action)[None, None])
        np.testing.assert_array_equal(observation, batch_obs[0, 0])
        assert reward == float(batch_rewards[0, 0])
        assert terminated == bool(batch_terminated[0, 0])


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_env_shapes_and_dtypes(name: str) -> None:
    family = make_family(name)
    tasks = family.sample_tasks(np.random.default_rng(4), 3)
    batched = family.make_batched(tasks, 4, np.random.default_rng(0))
    observations = batched.reset()
    assert observations.shape == (3, 4, *family.observation_space.shape)
    assert observations.dtype == np.float32
    actions = np.stack([np.stack(_actions(family, 4, seed=t)) for t in range(3)])  # [T, E, ...]
    observations, rewards, terminated = batched.step(actions)
    assert observations.shape == (3, 4, *family.observation_space.shape)
    assert all(family.observation_space.contains(o) for o in observations.reshape(12, -1))
    assert rewards.shape == (3, 4) and terminated.shape == (3, 4)
    assert terminated.dtype == np.bool_
    # a family declares expected rewards exactly when its batched env reports them
    assert (batched.expected_rewards is not None) == family.reports_expected_rewards
    if batched.expected_rewards is not None:
        assert batched.expected_rewards.shape == (3, 4)


def test_batched_navigation_matches_one_env_per_episode() -> None:
    family = Navigation2D()
    tasks = family.sample_tasks(np.random.default_rng(5), 3)
    batched = family.make_batched(tasks, 2, np.random.default_rng(0))
    batched.reset()
    actions = np.random.default_rng(6).uniform(-0.2, 0.2, size=(20, 3, 2, 2)).astype(np.float32)
    batch_rewards = np.stack([batched.step(a)[1] for a in actions])  # [steps, T, E]
    for t, task in enumerate(tasks):
        for e in range(2):
            env = family.make_env(task)
            env.reset(seed=0)
            rewards = [env.step(a)[1] for a in actions[:, t, e]]
            np.testing.assert_array_equal(rewards, batch_rewards[:, t, e])


# --- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_test_split_is_fixed_and_differs_from_training_tasks(name: str) -> None:
    family = make_family(name)
    assert family.test_tasks(5) == family.test_tasks(5)
    assert family.test_tasks(5) == make_family(name).test_tasks(5)
    assert family.test_tasks(3) == family.test_tasks(5)[:3]
    assert family.test_tasks(5) != family.sample_tasks(np.random.default_rng(0), 5)


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_tasks_is_reproducible_from_the_generator(name: str) -> None:
    family = make_family(name)
    first = family.sample_tasks(np.random.default_rng(42), 4)
    assert first == family.sample_tasks(np.random.default_rng(42), 4)
    assert first != family.sample_tasks(np.random.default_rng(43), 4)
    finite = name.endswith("Dir")  # two tasks only: forward and backward
    assert len(set(first)) == (2 if finite else 4)  # hashable (and distinct when continuous)


@pytest.mark.parametrize("name", FAMILIES)
def test_sampled_tasks_are_valid_and_serialisable(name: str) -> None:
    family = make_family(name)
    for task in family.sample_tasks(np.random.default_rng(7), 3) + family.test_tasks(3):
        family.validate_task(task)
        json.dumps(family.task_to_dict(task))


# --- hand-computed values -------------------------------------------------------------------


def test_navigation_clips_moves_and_rewards_distance() -> None:
    batched = Navigation2D().make_batched([NavigationTask(0.1, 0.2)], 1, np.random.default_rng())
    batched.reset()
    positions, rewards, terminated = batched.step(np.array([[[0.05, 0.3]]], dtype=np.float32))
    np.testing.assert_allclose(positions[0, 0], [0.05, 0.1], atol=1e-7)  # 0.3 clipped to 0.1
    np.testing.assert_allclose(rewards[0, 0], -np.hypot(0.05, 0.1), atol=1e-6)
    assert not terminated[0, 0]
    positions, rewards, terminated = batched.step(np.array([[[0.05, -0.5]]], dtype=np.float32))
    np.testing.assert_allclose(positions[0, 0], [0.1, 0.0], atol=1e-7)  # -0.5 clipped to -0.1
    np.testing.assert_allclose(rewards[0, 0], -0.2, atol=1e-6)
    assert not terminated[0, 0]


def test_sparse_point_robot_pays_only_near_the_goal_and_reports_the_dense_reward() -> None:
    batched = SparsePointRobot().make_batched([NavigationTask(0.0, 1.0)], 1,
                                              np.random.default_rng())
    batched.reset()
    for step in range(1, 10):  # straight up at full speed; 0.5 is clipped to 0.1
        positions, rewards, terminated = batched.step(np.array([[[0.0, 0.5]]], np.float32))
        distance = 1.0 - 0.1 * step
        np.testing.assert_allclose(positions[0, 0], [0.0, 0.1 * step], atol=1e-6)
        assert batched.dense_rewards is not None
        np.testing.assert_allclose(batched.dense_rewards[0, 0], -distance, atol=1e-6)
        expected = 1.0 - distance if step >= 9 else 0.0  # within 0.2 from step 9 (d = 0.1)
        if step != 8:  # d = 0.2 exactly: on the boundary, float32 decides
            np.testing.assert_allclose(rewards[0, 0], expected, atol=1e-6)
        assert not terminated[0, 0]


@pytest.mark.parametrize(("goal_x", "done"), [(0.105, True), (0.095, True), (0.115, False)])
def test_navigation_terminates_within_tolerance(goal_x: float, done: bool) -> None:
    batched = Navigation2D().make_batched([NavigationTask(goal_x, 0.0)], 1, np.random.default_rng())
    batched.reset()
    _, _, terminated = batched.step(np.array([[[0.1, 0.0]]], dtype=np.float32))
    assert bool(terminated[0, 0]) is done


def test_bandit_pays_with_the_arm_probability() -> None:
    task = BanditTask((1.0, 0.0, 0.3, 0.5, 0.5))
    batched = BernoulliBandit().make_batched([task], 20_000, np.random.default_rng(0))
    assert not batched.reset().any()
    for arm, mean in [(0, 1.0), (1, 0.0), (2, 0.3)]:
        observations, rewards, terminated = batched.step(np.full((1, 20_000), arm))
        assert not observations.any() and not terminated.any()
        assert set(np.unique(rewards)) <= {0.0, 1.0}
        assert abs(rewards.mean() - mean) < 0.02  # 6 standard errors at p = 0.3


def _cycle_task(num_states: int, num_actions: int) -> TabularMDPTask:
    """Deterministic MDP: action ``a`` in state ``s`` goes to ``(s + a) % S``; R[s, a] = 10s + a."""
    transitions = np.zeros((num_states, num_actions, num_states))
    for s in range(num_states):
        for a in range(num_actions):
            transitions[s, a, (s + a) % num_states] = 1.0
    mean_rewards = 10.0 * np.arange(num_states)[:, None] + np.arange(num_actions)[None, :]
    return TabularMDPTask.from_arrays(transitions, mean_rewards)


def test_tabular_mdp_follows_a_deterministic_table() -> None:
    family = TabularMDP(num_states=4, num_actions=2)
    env = family.make_env(_cycle_task(4, 2))
    observation, _ = env.reset(seed=0)
    np.testing.assert_array_equal(observation, [1, 0, 0, 0])  # start state 0
    states = []
    for action in [1, 1, 0, 1, 1]:
        observation, *_ = env.step(action)
        assert observation.sum() == 1.0
        states.append(int(observation.argmax()))
    assert states == [1, 2, 2, 3, 0]


def test_tabular_mdp_reward_and_transition_statistics() -> None:
    family = TabularMDP(num_states=4, num_actions=2)
    transitions, mean_rewards = _cycle_task(4, 2).arrays()
    transitions[0, 1] = [0.2, 0.5, 0.0, 0.3]
    task = TabularMDPTask.from_arrays(transitions, mean_rewards)
    batched = family.make_batched([task], 40_000, np.random.default_rng(0))
    batched.reset()
    observations, rewards, _ = batched.step(np.ones((1, 40_000), dtype=np.int64))
    assert abs(rewards.mean() - 1.0) < 0.03 and abs(rewards.std() - 1.0) < 0.03  # N(R[0,1], 1)
    np.testing.assert_allclose(observations[0].mean(axis=0), [0.2, 0.5, 0.0, 0.3], atol=0.015)
    _, rewards, _ = batched.step(np.zeros((1, 40_000), dtype=np.int64))  # R[s, 0] = 10 s
    expected = 10.0 * observations[0].argmax(axis=-1)
    assert abs((rewards[0] - expected).mean()) < 0.03


def test_bandit_and_tabular_mdp_report_the_expected_reward_of_each_step() -> None:
    bandit = BernoulliBandit(3).make_batched([BanditTask((0.9, 0.2, 0.6))], 3,
                                             np.random.default_rng(0))
    assert bandit.expected_rewards is None
    bandit.step(np.array([[2, 0, 2]]))
    np.testing.assert_array_equal(bandit.expected_rewards, [[0.6, 0.9, 0.6]])
    mdp = TabularMDP(num_states=4, num_actions=2).make_batched([_cycle_task(4, 2)], 2,
                                                                np.random.default_rng(0))
    mdp.reset()
    mdp.step(np.array([[1, 0]]))  # from state 0: R[0, a] = a; then states 1 and 0
    np.testing.assert_array_equal(mdp.expected_rewards, [[1.0, 0.0]])
    mdp.step(np.array([[1, 1]]))  # R[1, 1] = 11, R[0, 1] = 1
    np.testing.assert_array_equal(mdp.expected_rewards, [[11.0, 1.0]])


def test_tabular_mdp_sampled_tables_are_distributions() -> None:
    for task in TabularMDP().sample_tasks(np.random.default_rng(8), 20):
        transitions, mean_rewards = task.arrays()
        assert transitions.shape == (10, 5, 10) and mean_rewards.shape == (10, 5)
        assert (transitions >= 0).all()
        np.testing.assert_allclose(transitions.sum(axis=-1), 1.0, atol=1e-12)
    rewards = np.stack([t.arrays()[1] for t in TabularMDP().test_tasks(40)])
    assert abs(rewards.mean() - 1.0) < 0.1 and abs(rewards.std() - 1.0) < 0.1  # 2000 draws


# --- errors ---------------------------------------------------------------------------------


def _tabular(transitions: Any, mean_rewards: Any) -> TabularMDPTask:
    return TabularMDPTask.from_arrays(np.asarray(transitions), np.asarray(mean_rewards))


_ONE_HOT = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]  # [S=2, A=2, S=2]

INVALID_TASKS: list[tuple[TaskFamily[Any], Any, str]] = [
    (Navigation2D(), NavigationTask(0.7, 0.0), r"goal coordinate 0\.7 is outside"),
    (Navigation2D(), BanditTask((0.5, 0.5)), "expects a NavigationTask, got BanditTask"),
    (SparsePointRobot(), NavigationTask(0.5, 0.5), "is not on the upper unit half circle"),
    (SparsePointRobot(), NavigationTask(0.0, -1.0), "is not on the upper unit half circle"),
    (BernoulliBandit(3), BanditTask((0.5, 0.5)), "has 2 arm means, expected num_arms=3"),
    (BernoulliBandit(2), BanditTask((0.5, 1.5)), r"arm 1 mean 1\.5 is outside \[0\.0, 1\.0\]"),
    (BernoulliBandit(2), BanditTask((float("nan"), 0.5)), "arm 0 mean nan is outside"),
    (TabularMDP(3, 2), _tabular(_ONE_HOT, np.zeros((2, 2))), r"shape \(2, 2, 2\), expected"),
    (TabularMDP(2, 2), _tabular(_ONE_HOT, np.zeros((2, 3))), r"mean_rewards have shape \(2, 3\)"),
    (TabularMDP(2, 2), _tabular(_ONE_HOT, [[0, 0], [0, np.inf]]), "mean_rewards must be finite"),
    (TabularMDP(2, 2), _tabular([[[1, 0], [1.5, -0.5]]] * 2, np.zeros((2, 2))), ">= 0"),
    (TabularMDP(2, 2), _tabular([[[1, 0], [0.5, 0.4]]] * 2, np.zeros((2, 2))), r"P\[0, 1, :\]"),
    (TabularMDP(2, 2), TabularMDPTask((((1.0, 0.0), (1.0,)),), ((0.0,),)), "ragged"),
]


@pytest.mark.parametrize(("family", "task", "message"), INVALID_TASKS)
def test_invalid_tasks_raise_task_error(family: TaskFamily[Any], task: Any, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        family.validate_task(task)
    with pytest.raises(TaskError, match=message):
        family.make_batched([task], 1, np.random.default_rng())
    with pytest.raises(TaskError, match=message):
        family.make_env(task)
    env = family.make_env()
    with pytest.raises(TaskError, match=message):
        env.set_task(task)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (BernoulliBandit, {"num_arms": 1}, "num_arms must be >= 2"),
        (BernoulliBandit, {"num_pulls": 0}, "num_pulls must be >= 1"),
        (TabularMDP, {"num_states": 0}, "num_states must be >= 1"),
        (TabularMDP, {"num_actions": 1}, "num_actions must be >= 2"),
        (TabularMDP, {"episode_steps": 0}, "episode_steps must be >= 1"),
        (SparsePointRobot, {"goal_radius": 0.0}, r"goal_radius must be in \(0, 1.0\)"),
    ],
)
def test_bad_family_arguments_raise_config_error(
    factory: Any, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        factory(**kwargs)


def test_unknown_family_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownEnvError, match="did you mean Navigation2D"):
        make_family("Navigaton2D")


# --- registry -------------------------------------------------------------------------------


def test_describe_families_lists_every_family() -> None:
    all_rows = describe_families()
    rows = [row for row in all_rows if not row["name"].startswith(METAWORLD_PREFIX)
            and row["source"] == "fastadapt"]  # plugins (the installed example) add theirs
    assert [row["name"] for row in rows] == [
        "AntDir", "AntGoal", "AntVel", "Bandit", "HalfCheetahDir", "HalfCheetahVel",
        "Navigation2D", "SparsePointRobot", "TabularMDP",
    ]
    metaworld_rows = [row for row in all_rows if row["name"].startswith(METAWORLD_PREFIX)]
    assert len(metaworld_rows) == (53 if metaworld_installed() else 0)  # ML1 x 50, ML10/25/45
    keys = {"name", "gym_id", "task_space", "horizon", "observation_space", "action_space"}
    for row in all_rows:
        assert set(row) == keys | {"reference", "source"}
        assert all(isinstance(value, str) and value for value in row.values())
        assert row["gym_id"] == f"fastadapt/{row['name']}-v0" and row["gym_id"] in gym.registry
    horizons = {row["name"]: row["horizon"] for row in rows}
    locomotion = ("AntDir", "AntGoal", "AntVel", "HalfCheetahDir", "HalfCheetahVel")
    assert horizons == {
        "Bandit": "100", "Navigation2D": "100", "TabularMDP": "10", "SparsePointRobot": "20",
        **dict.fromkeys(locomotion, "200"),
    }
