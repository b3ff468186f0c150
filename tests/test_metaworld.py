"""Meta-World ML1 families: the benchmark's splits, env checks, batching, success, CLI runs."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from fastadapt.envs import registry
from fastadapt.errors import ConfigError, TaskError, UnknownEnvError
from fastadapt.types import Trajectories

needs_metaworld = pytest.mark.skipif(
    not registry.metaworld_installed(),
    reason="Meta-World is not installed: pip install 'fastadapt[metaworld]'",
)


def test_trajectories_episode_successes_any_step_inside_the_episode() -> None:
    masks = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])  # [1, 3, 3]
    successes = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    zeros = torch.zeros(1, 3, 3)
    trajectories = Trajectories(zeros[..., None], zeros[..., None], zeros, masks, successes)
    # episode 1 succeeds only after it ended: not a success
    assert trajectories.episode_successes().tolist() == [[1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="no successes"):
        Trajectories(zeros[..., None], zeros[..., None], zeros, masks).episode_successes()


def test_trials_episode_successes_any_step_inside_each_episode() -> None:
    from fastadapt.types import Trials

    # one task, one trial of 2 episodes x 3 steps
    successes = torch.tensor([[[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]]])
    masks = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]]])
    zeros = torch.zeros(1, 1, 6)
    trials = Trials(zeros[..., None], zeros[..., None], zeros, masks, zeros, zeros,
                    zeros[..., None], successes)
    # episode 2 succeeds only after it ended: not a success
    assert trials.episode_successes(2).tolist() == [[[1.0, 0.0]]]
    with pytest.raises(ValueError, match="no successes"):
        trials._replace(successes=None).episode_successes(2)


def test_uninstalled_metaworld_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "metaworld_installed", lambda: False)
    # as in a process that has not registered the Meta-World families (earlier tests may have)
    monkeypatch.setattr(registry.FAMILIES, "targets", {
        name: target for name, target in registry.FAMILIES.targets.items()
        if not name.startswith(registry.METAWORLD_PREFIX)})
    with pytest.raises(UnknownEnvError, match=r"pip install 'fastadapt\[metaworld\]'"):
        registry.make_family("MetaWorld-ML45")


@pytest.fixture(scope="module")
def reach() -> Any:
    pytest.importorskip("metaworld", reason="pip install 'fastadapt[metaworld]'")
    family = registry.make_family("MetaWorld-ML1-reach-v3")
    family.splits  # noqa: B018  (builds the benchmark once for the module)
    return family


@needs_metaworld
def test_registry_lists_the_families_and_rejects_unknown_envs() -> None:
    names = registry.family_names()
    assert {"MetaWorld-ML1-reach-v3", "MetaWorld-ML1-push-v3", "MetaWorld-ML10"} <= set(names)
    with pytest.raises(UnknownEnvError, match="did you mean MetaWorld-ML1-reach-v3"):
        registry.make_family("MetaWorld-ML1-reach-v2")
    with pytest.raises(ConfigError, match="benchmark_seed must be an integer"):
        registry.make_family("MetaWorld-ML1-reach-v3", benchmark_seed="0")
    with pytest.raises(ConfigError, match="do not fit env"):
        registry.make_family("MetaWorld-ML1-reach-v3", seed=0)


@needs_metaworld
def test_splits_are_the_benchmarks(reach: Any) -> None:
    import metaworld

    bench = metaworld.ML1("reach-v3", seed=0)
    train = reach.sample_tasks(np.random.default_rng(0), 50)
    assert sorted(t.index for t in train) == list(range(50))  # each train goal once
    assert {reach.metaworld_task(t) for t in train} == set(bench.train_tasks)
    test = reach.test_tasks(50)
    assert [reach.metaworld_task(t) for t in test] == bench.test_tasks
    assert reach.test_tasks(3) == test[:3]
    goals = {tuple(reach.task_to_dict(t)["rand_vec"]) for t in train}
    assert goals.isdisjoint(tuple(reach.task_to_dict(t)["rand_vec"]) for t in test)
    with pytest.raises(TaskError, match="has 50 test tasks"):
        reach.test_tasks(51)


@needs_metaworld
def test_sample_tasks_is_reproducible_and_spreads_ml10_evenly() -> None:
    family = registry.make_family("MetaWorld-ML1-reach-v3")
    first = family.sample_tasks(np.random.default_rng(3), 10)
    assert first == family.sample_tasks(np.random.default_rng(3), 10)
    assert len({t.index for t in first}) == 10 and {t.split for t in first} == {"train"}
    ml10 = registry.make_family("MetaWorld-ML10")  # the benchmark is not built for this
    ml10._splits = type(family.splits)({}, {"train": {f"c{i}": [0] * 50 for i in range(10)}})
    counts = np.bincount([int(t.env_name[1:]) for t in
                          ml10.sample_tasks(np.random.default_rng(0), 23)], minlength=10)
    assert sorted(counts.tolist()) == [2] * 7 + [3] * 3


@needs_metaworld
@pytest.mark.parametrize("name", ["MetaWorld-ML1-reach-v3", "MetaWorld-ML1-push-v3"])
def test_check_env(name: str) -> None:
    """check_env passes; Meta-World's own observation space draws its warnings (bounds of
    -inf/inf for the object entries, min == max == 0 for the hidden goal)."""
    family = registry.make_family(name)
    for task in family.sample_tasks(np.random.default_rng(1), 2):
        env = family.make_env(task, horizon=20)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(infinity|maximum and minimum).*")
            check_env(env, skip_render_check=True)


@needs_metaworld
def test_set_task_changes_the_goal(reach: Any) -> None:
    task_a, task_b = reach.test_tasks(2)
    env = reach.make_env(task_a, horizon=30)
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 4)).astype(np.float32)

    def rewards() -> list[float]:
        env.reset(seed=0)
        return [env.step(a)[1] for a in actions]

    def goal() -> list[float]:
        return [float(x) for x in env.unwrapped._batched._envs[0][0]._target_pos]

    rewards_a = rewards()
    assert goal() == pytest.approx(reach.task_to_dict(task_a)["rand_vec"][3:])
    env.set_task(task_b)
    rewards_b = rewards()
    assert goal() == pytest.approx(reach.task_to_dict(task_b)["rand_vec"][3:])
    assert rewards_a != rewards_b
    env.set_task(task_a)
    assert rewards() == rewards_a


@needs_metaworld
@pytest.mark.parametrize("name", ["MetaWorld-ML1-reach-v3", "MetaWorld-ML1-push-v3"])
def test_batched_episodes_match_separate_meta_world_envs(name: str) -> None:
    """Episodes of a task share one MjModel (clones): same as one fresh env per episode."""
    family = registry.make_family(name)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    actions = np.random.default_rng(1).uniform(-1.5, 1.5, (40, 2, 3, 4)).astype(np.float32)
    batched = family.make_batched(tasks, 3, np.random.default_rng(0))
    observations, rewards = [batched.reset()], []
    for action in actions:
        obs, reward, terminated = batched.step(action)
        observations.append(obs)
        rewards.append(reward)
        assert not terminated.any()
    low, high = family.observation_space.low, family.observation_space.high
    for i, task in enumerate(tasks):
        for e in range(3):
            env = family.splits.classes[task.env_name]()
            env.set_task(family.metaworld_task(task))
            expected = [env.reset()[0]]
            expected_rewards = []
            for action in np.clip(actions[:, i, e], -1, 1).astype(np.float64):
                obs, reward, *_ = env.step(action)
                expected.append(obs)
                expected_rewards.append(reward)
            np.testing.assert_array_equal(
                np.stack(observations)[:, i, e], np.clip(np.float32(expected), low, high))
            np.testing.assert_allclose(np.stack(rewards)[:, i, e], expected_rewards, rtol=1e-6)


@needs_metaworld
def test_sampling_is_deterministic_and_records_successes(reach: Any) -> None:
    from fastadapt.algorithms.maml.adapt import expand_to_tasks
    from fastadapt.policies.mlp import GaussianMLPPolicy
    from fastadapt.sampling.vector import VectorSampler

    policy = GaussianMLPPolicy(39, 4, (8,), "tanh")
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, 2)
    tasks = reach.sample_tasks(np.random.default_rng(0), 2)
    batches = []
    for family in (reach, pickle.loads(pickle.dumps(reach))):  # reused pool, then a fresh one
        for _ in range(2):
            with VectorSampler(family, policy, 15, seed=4) as sampler:
                batches.append(sampler.sample(params, tasks, 2))
    for batch in batches[1:]:
        for field, a, b in zip(Trajectories._fields, batches[0], batch, strict=True):
            assert (a is None and b is None) or torch.equal(a, b), field
    assert batches[0].successes is not None and batches[0].successes.shape == (2, 2, 15)


@needs_metaworld
def test_worker_chunks_carry_successes_and_merge_to_the_vector_batch(reach: Any) -> None:
    """What process and Ray workers run (run_item on task chunks, then merge)."""
    from fastadapt.algorithms.maml.adapt import expand_to_tasks
    from fastadapt.policies.mlp import GaussianMLPPolicy
    from fastadapt.sampling.rollout import StreamKey
    from fastadapt.sampling.vector import VectorSampler
    from fastadapt.sampling.worker_pool import (
        EpisodeRequest,
        WorkItem,
        merge,
        pack_params,
        run_item,
    )

    policy = GaussianMLPPolicy(39, 4, (8,), "tanh")
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, 3)
    tasks = reach.sample_tasks(np.random.default_rng(2), 3)
    with VectorSampler(reach, policy, 12, seed=7) as sampler:
        expected = sampler.sample(params, tasks, 2)
    chunks = [range(0, 2), range(2, 3)]
    request = EpisodeRequest(2)
    merged = merge([
        run_item(reach, policy, 12, WorkItem(pack_params(params, c), tasks[c.start:c.stop],
                                             request, StreamKey(7, 0, c.start)))
        for c in chunks
    ], request)
    for field, a, b in zip(Trajectories._fields, expected, merged, strict=True):
        assert (a is None and b is None) or torch.equal(a, b), field


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high:UserWarning")
def test_a_scripted_reach_succeeds_and_the_env_reports_it(reach: Any) -> None:
    from metaworld.policies.sawyer_reach_v3_policy import SawyerReachV3Policy

    task = reach.test_tasks(1)[0]
    goal = np.array(reach.task_to_dict(task)["rand_vec"][3:])
    env = reach.make_env(task, horizon=100)
    obs, _ = env.reset(seed=0)
    scripted, successes = SawyerReachV3Policy(), []
    for _ in range(100):
        action = scripted.get_action(np.concatenate([obs[:-3], goal]))  # the hidden goal
        obs, _, _, truncated, info = env.step(action)
        successes.append(info["success"])
    assert truncated and not successes[0] and any(successes)


@needs_metaworld
def test_long_horizons_and_superseded_batches_are_refused(reach: Any) -> None:
    tasks = reach.test_tasks(1)
    old = reach.make_batched(tasks, 1, np.random.default_rng(0))
    new = reach.make_batched(tasks, 1, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="superseded"):
        old.reset()
    new.reset()
    zero = np.zeros((1, 1, 4), dtype=np.float32)
    for _ in range(500):
        new.step(zero)
    with pytest.raises(ConfigError, match="at most 500 steps"):
        new.step(zero)


TINY = ["--set", "maml-trpo.tasks_per_iteration=2", "--set", "maml-trpo.episodes_per_task=2",
        "--set", "env.horizon=20", "--set", "policy.hidden_sizes=[8]",
        "--set", "run.tensorboard=false", "--iterations", "1", "--quiet"]


@needs_metaworld
def test_maml_trpo_on_ml1_end_to_end_reports_success_rates(tmp_path: Path) -> None:
    from fastadapt.cli import main

    run = tmp_path / "run"
    assert main(["train", "maml-trpo/metaworld-ml1-reach", "--run-dir", str(run),
                 *TINY]) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["success_rate_before"] <= 1.0
    assert 0.0 <= record["success_rate_after"] <= 1.0
    assert main(["evaluate", str(run), "--tasks", "2", "--adaptation-steps", "1",
                 "--episodes", "2"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["env"] == "MetaWorld-ML1-reach-v3"
    assert len(result["success_rate_mean"]) == len(result["success_rate_ci95"]) == 2
    assert all(0.0 <= rate <= 1.0 for rate in result["success_rate_mean"])
    assert [t["split"] for t in result["tasks"]] == ["test", "test"]


@needs_metaworld
def test_rl2_on_ml1_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastadapt.cli import main

    run = tmp_path / "rl2"
    tiny = ["--set", "rl2.tasks_per_iteration=2", "--set", "rl2.trials_per_task=1",
            "--set", "env.horizon=10", "--set", "rl2.hidden_size=8",
            "--set", "run.tensorboard=false", "--iterations", "1", "--quiet"]
    assert main(["train", "rl2/metaworld-ml1-reach", "--run-dir", str(run),
                 *tiny]) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["success_rate_before"] <= 1.0
    assert 0.0 <= record["success_rate_after"] <= 1.0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "1"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert len(result["returns_mean"]) == 2 and np.isfinite(result["returns_mean"]).all()
    # by episode of the trial, like returns_mean (2 episodes per trial in this config)
    assert len(result["success_rate_mean"]) == len(result["success_rate_ci95"]) == 2
    assert all(0.0 <= rate <= 1.0 for rate in result["success_rate_mean"])
    assert all(ci >= 0.0 for ci in result["success_rate_ci95"])
    assert np.array(result["per_task_success_rates"]).shape == (2, 2)
    # compare --x env-steps adds the last point's success rate to its table
    capsys.readouterr()
    assert main(["compare", str(run), "--x", "env-steps", "--output",
                 str(tmp_path / "e.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].rstrip().endswith("| success, last point |")
    row = next(line for line in lines if line.startswith("| rl2"))
    rate, ci = result["success_rate_mean"][-1], result["success_rate_ci95"][-1]
    assert row.rstrip().endswith(f"| {rate:.2f} ± {ci:.2f} |")


@needs_metaworld
@pytest.mark.parametrize("config", ["pearl/metaworld-ml1-reach-small",
                                    "pearl/metaworld-ml1-push"])
def test_pearl_on_ml1_reports_success_by_episode(tmp_path: Path, config: str) -> None:
    from fastadapt.cli import main

    run = tmp_path / "pearl"
    tiny = ["--set", "env.horizon=10", "--set", "pearl.train_tasks=4",
            "--set", "pearl.tasks_per_iteration=2", "--set", "pearl.tasks_per_step=2",
            "--set", "pearl.initial_episodes=1", "--set", "pearl.prior_episodes=1",
            "--set", "pearl.extra_posterior_episodes=1", "--set", "pearl.gradient_steps=2",
            "--set", "pearl.batch_transitions=4", "--set", "pearl.context_transitions=4",
            "--set", "pearl.hidden_sizes=[8]", "--set", "pearl.encoder_hidden_sizes=[8]",
            "--set", "run.tensorboard=false", "--iterations", "1", "--quiet"]
    assert main(["train", config, "--run-dir", str(run), *tiny]) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["critic_loss"])
    # episodes with z from the prior, then from a posterior
    assert 0.0 <= record["success_rate_before"] <= 1.0
    assert 0.0 <= record["success_rate_after"] <= 1.0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "1"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["env"].startswith("MetaWorld-ML1-")
    # one exploration episode with z from the prior, then the posterior episodes
    assert len(result["returns_mean"]) == 3
    assert len(result["success_rate_mean"]) == len(result["success_rate_ci95"]) == 3
    assert all(0.0 <= rate <= 1.0 for rate in result["success_rate_mean"])
    assert [t["split"] for t in result["tasks"]] == ["test", "test"]
