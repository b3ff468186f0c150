"""Meta-World ML25 and ML45 families: the benchmark's class counts, the splits' order, one
rollout on a held-out task, and their packaged configs (budgets as their headers say)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastadapt.envs import registry
from fastadapt.errors import TaskError, UnknownEnvError
from fastadapt.run.config_loading import load_train_config

needs_metaworld = pytest.mark.skipif(
    not registry.metaworld_installed(),
    reason="Meta-World is not installed: pip install 'fastadapt[metaworld]'",
)

CLASSES = {"ML25": (25, 5), "ML45": (45, 5)}
"""Train and test classes of each benchmark (``metaworld.env_dict``)."""


@pytest.fixture(scope="module")
def ml45() -> Any:
    pytest.importorskip("metaworld", reason="pip install 'fastadapt[metaworld]'")
    family: Any = registry.make_family("MetaWorld-ML45", check=False)  # (contract: ML1 tests)
    family.splits  # noqa: B018  (builds the benchmark once for the module: seconds)
    return family


@needs_metaworld
@pytest.mark.parametrize("benchmark", ["ML25", "ML45"])
def test_families_are_registered_and_described_without_building(benchmark: str) -> None:
    import metaworld.env_dict

    family: Any = registry.make_family(f"MetaWorld-{benchmark}", check=False)  # (no stepping)
    assert f"MetaWorld-{benchmark}" in registry.family_names()
    assert family.name == f"MetaWorld-{benchmark}" and family.horizon == 500
    train, test = CLASSES[benchmark]
    assert family.task_space == (f"{train} train classes x 50 goals; "
                                 f"test: {test} held-out classes x 50 goals")
    assert family._splits is None  # describing it did not build the benchmark
    classes = getattr(metaworld.env_dict, f"{benchmark}_V3")
    assert (len(classes["train"]), len(classes["test"])) == (train, test)


@needs_metaworld
def test_unknown_benchmarks_are_refused() -> None:
    from fastadapt.envs.metaworld import MetaWorldFamily

    with pytest.raises(UnknownEnvError, match=r"'ML50' \(ML1, ML10, ML25, ML45\)"):
        MetaWorldFamily("ML50")


@needs_metaworld
def test_ml45_splits_are_the_benchmarks_classes_with_50_goals_each(ml45: Any) -> None:
    import metaworld.env_dict

    assert ml45.classes("train") == list(metaworld.env_dict.ML45_V3["train"])
    assert ml45.classes("test") == list(metaworld.env_dict.ML45_V3["test"])
    for split in ("train", "test"):
        assert {len(tasks) for tasks in ml45.splits.tasks[split].values()} == {50}
        assert all(task.env_name == name for name, tasks in ml45.splits.tasks[split].items()
                   for task in tasks)
    assert set(ml45.classes("train")).isdisjoint(ml45.classes("test"))


@needs_metaworld
def test_ml45_sample_tasks_spread_over_the_train_classes(ml45: Any) -> None:
    tasks = ml45.sample_tasks(np.random.default_rng(0), 90)
    assert tasks == ml45.sample_tasks(np.random.default_rng(0), 90)
    assert {t.split for t in tasks} == {"train"}
    counts = {name: 0 for name in ml45.classes("train")}
    for task in tasks:
        counts[task.env_name] += 1
    assert set(counts.values()) == {2}
    assert len(set(tasks)) == 90  # goals without replacement within a class


@needs_metaworld
def test_ml45_test_tasks_are_round_robin_goal_0_first_and_prefix_stable(ml45: Any) -> None:
    names = ml45.classes("test")
    tasks = ml45.test_tasks(250)
    assert [(t.env_name, t.index) for t in tasks[:6]] == [
        *((name, 0) for name in names), (names[0], 1)]
    assert len(set(tasks)) == 250 and {t.split for t in tasks} == {"test"}
    for count in (1, 7, 200):
        assert ml45.test_tasks(count) == tasks[:count]
    protocol = ml45.test_tasks(200)  # Meta-World's: 40 goals of each held-out class
    assert {name: sum(t.env_name == name for t in protocol) for name in names} == dict.fromkeys(
        names, 40)
    with pytest.raises(TaskError, match="has 250 test tasks"):
        ml45.test_tasks(251)


@needs_metaworld
def test_one_rollout_on_ml45_test_tasks_through_the_batched_env(ml45: Any) -> None:
    tasks = ml45.test_tasks(2)
    batched = ml45.make_batched(tasks, 2, np.random.default_rng(0))
    obs = batched.reset()
    assert obs.shape == (2, 2, 39) and obs.dtype == np.float32
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 2, 2, 4)).astype(np.float32)
    for action in actions:
        obs, rewards, terminated = batched.step(action)
        assert obs.shape == (2, 2, 39) and rewards.shape == (2, 2)
        assert np.isfinite(obs).all() and ((rewards >= 0) & (rewards <= 10)).all()
        assert not terminated.any() and batched.success.shape == (2, 2)
    assert (obs[..., -3:] == 0).all()  # the goal is hidden
    # two episodes of one task: one model, one clone (no extra compiled model per episode)
    envs = ml45._pool._slots[tasks[0].env_name][0]
    assert len(envs) == 2 and envs[1].model is envs[0].model


@needs_metaworld
@pytest.mark.parametrize("benchmark", ["ml25", "ml45"])
@pytest.mark.parametrize("algorithm", ["maml-trpo", "rl2", "pearl"])
def test_the_packaged_configs_load_with_meta_worlds_budget(algorithm: str,
                                                           benchmark: str) -> None:
    train_classes = CLASSES[benchmark.upper()][0]
    full = load_train_config(f"{algorithm}/metaworld-{benchmark}")
    small = load_train_config(f"{algorithm}/metaworld-{benchmark}-small")
    for config in (full, small):
        assert config.algorithm == algorithm
        assert config.env.name == f"MetaWorld-{benchmark.upper()}"
        assert config.evaluate.num_tasks == 200  # 40 goals x 5 held-out classes
    section: Any = full.algorithm_config
    if algorithm == "maml-trpo":
        per_iteration = section.tasks_per_iteration * section.episodes_per_task * 500 * 2
        assert section.tasks_per_iteration == train_classes
    elif algorithm == "rl2":
        per_iteration = (section.tasks_per_iteration * section.trials_per_task
                         * section.episodes_per_trial * 500)
    else:
        per_iteration = section.tasks_per_iteration * 4 * 500
        initial = section.train_tasks * section.initial_episodes * 500
        assert section.train_tasks % train_classes == 0
        per_iteration += initial / full.run.iterations  # amortised over the run
    assert per_iteration * full.run.iterations == pytest.approx(2_000_000 * train_classes)


@needs_metaworld
@pytest.mark.parametrize("algorithm", ["rl2", "pearl"])
def test_ml10_configs_of_rl2_and_pearl_load(algorithm: str) -> None:
    config = load_train_config(f"{algorithm}/metaworld-ml10")
    assert config.env.name == "MetaWorld-ML10" and config.evaluate.num_tasks == 200


def test_inner_gradients_in_task_chunks_match_all_tasks_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps ML45's meta-test in memory: the inner step's activations in task chunks."""
    import torch

    from fastadapt.algorithms.maml.adapt import expand_to_tasks
    from fastadapt.backends import products
    from fastadapt.policies.mlp import GaussianMLPPolicy
    from fastadapt.types import Batch

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(39, 4, (32, 32), "tanh")
    theta = {n: p.detach() + 0.01 * torch.randn_like(p) for n, p in policy.named_parameters()}
    tasks, shape = 7, (7, 3, 20)
    batch = Batch(torch.randn(*shape, 39), torch.randn(*shape, 4),
                  (torch.rand(shape) > 0.1).float(), torch.randn(shape))
    whole = products.policy_gradients(policy, expand_to_tasks(theta, tasks), batch)
    monkeypatch.setattr(products, "GRADIENT_CHUNK_FLOATS", 3 * 20 * (32 + 32 + 4) * 3)
    chunked = products.policy_gradients(policy, expand_to_tasks(theta, tasks), batch)
    assert all(torch.equal(whole[name], chunked[name]) for name in whole)  # chunks of 3, 3, 1


def test_the_meta_test_estimate_counts_the_simulators(ml45: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Meta-World's protocol on ML45 (200 tasks, 10 + 3 episodes of 500 steps) needs about
    6 GiB by the estimate (9.8 GiB measured): refused on a machine of 4 GiB, let through on one
    of 16 GiB, before any task is drawn."""
    from fastadapt.algorithms import memory
    from fastadapt.algorithms.base import MetaTestProtocol
    from fastadapt.errors import ConfigError

    protocol = MetaTestProtocol(1, 10, 3)
    monkeypatch.setattr(memory, "physical_memory", lambda: 16 * 2**30)
    memory.check_meta_test_memory(ml45, 500, 200, protocol)
    monkeypatch.setattr(memory, "physical_memory", lambda: 4 * 2**30)
    with pytest.raises(ConfigError, match="200 held-out tasks"):
        memory.check_meta_test_memory(ml45, 500, 200, protocol)
