"""PEARL end to end: the per-task replay buffers, a tiny run with evaluate, plot and a
bit-identical resume, the samplers, bad settings and non-finite data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from faulty_envs import FaultyNavigation

from fastadapt.buffers.replay import TaskReplay
from fastadapt.cli import main
from fastadapt.envs import registry
from fastadapt.envs.registry import make_family
from fastadapt.run.checkpoint import load_tensors
from fastadapt.types import Transitions

# ---------------------------------------------------------------------------- buffers


def _transitions(values: list[float], obs_dim: int = 2, action_dim: int = 1) -> Transitions:
    """Transitions whose every field holds the row's value (to tell rows apart)."""
    v = torch.tensor(values)
    return Transitions(v[:, None].expand(-1, obs_dim), v[:, None].expand(-1, action_dim), v,
                       v[:, None].expand(-1, obs_dim) + 0.5, torch.zeros_like(v),
                       torch.zeros_like(v))


def test_replay_keeps_the_last_capacity_rows_of_each_task() -> None:
    buffer = TaskReplay(3, 2, 1, capacity=4, device=torch.device("cpu"))
    buffer.add(0, _transitions([1, 2, 3]))
    buffer.add(2, _transitions([7]))
    assert buffer.sizes.tolist() == [3, 0, 1]
    buffer.add(0, _transitions([4, 5, 6]))  # wraps: 5 and 6 overwrite 1 and 2
    assert buffer.sizes.tolist() == [4, 0, 1]
    assert sorted(buffer.contents(0).rewards[0].tolist()) == [3, 4, 5, 6]
    buffer.add(1, _transitions([10, 11, 12, 13, 14, 15]))  # more than the capacity at once
    assert sorted(buffer.contents(1).rewards[0].tolist()) == [12, 13, 14, 15]
    batch = buffer.contents(0)
    torch.testing.assert_close(batch.next_observations, batch.observations + 0.5)
    assert batch.observations.shape == (1, 4, 2) and batch.actions.shape == (1, 4, 1)
    buffer.clear(0)
    assert buffer.sizes.tolist() == [0, 4, 1]
    assert buffer.nbytes == 3 * 4 * (2 * 2 + 1 + 2) * 4  # bounded by the capacity


def test_replay_samples_only_a_tasks_rows_uniformly_with_replacement() -> None:
    buffer = TaskReplay(2, 2, 1, capacity=1000, device=torch.device("cpu"))
    buffer.add(0, _transitions([1, 2, 3]))
    buffer.add(1, _transitions([float(i) for i in range(100, 150)]))
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(torch.tensor([0, 1, 0]), 3000, generator)
    assert batch.rewards.shape == (3, 3000)
    first = batch.rewards[0]
    assert set(first.tolist()) == {1.0, 2.0, 3.0}
    counts = torch.bincount(first.long())[1:]
    assert counts.min() > 900 and counts.max() < 1100  # uniform
    assert set(batch.rewards[1].tolist()) <= set(range(100, 150))
    with pytest.raises(ValueError, match="tasks \\[1\\] are empty"):
        buffer.clear(1)
        buffer.sample(torch.tensor([1]), 2, generator)


def test_replay_state_round_trip() -> None:
    buffer = TaskReplay(2, 2, 1, capacity=8, device=torch.device("cpu"))
    buffer.add(0, _transitions([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    buffer.add(1, _transitions([20, 21]))
    state = buffer.state_dict("replay/")
    copy = TaskReplay(2, 2, 1, capacity=8, device=torch.device("cpu"))
    copy.load_state_dict(state, "replay/")
    one, two = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    tasks = torch.tensor([0, 1, 1])
    for x, y in zip(buffer.sample(tasks, 5, one), copy.sample(tasks, 5, two), strict=True):
        assert torch.equal(x, y)
    copy.add(0, _transitions([10]))
    buffer.add(0, _transitions([10]))
    assert torch.equal(copy.contents(0).rewards, buffer.contents(0).rewards)
    with pytest.raises(ValueError, match="does not fit"):
        TaskReplay(3, 2, 1, 8, torch.device("cpu")).load_state_dict(state, "replay/")


# ---------------------------------------------------------------------------- runs

TINY = [
    "--set", "algorithm=pearl", "--set", "env.name=Navigation2D", "--set", "env.horizon=10",
    "--set", "pearl.train_tasks=4", "--set", "pearl.tasks_per_iteration=2",
    "--set", "pearl.tasks_per_step=3", "--set", "pearl.initial_episodes=2",
    "--set", "pearl.prior_episodes=1", "--set", "pearl.extra_posterior_episodes=2",
    "--set", "pearl.gradient_steps=4", "--set", "pearl.batch_transitions=8",
    "--set", "pearl.context_transitions=6", "--set", "pearl.hidden_sizes=[16, 16]",
    "--set", "pearl.encoder_hidden_sizes=[8]", "--set", "run.tensorboard=false",
    "--set", "run.checkpoint_every=1", "--set", "run.num_threads=1", "--quiet",
]
CONFIG = "pearl/2d-navigation"


def _train(run: Path, *extra: str) -> None:
    assert main(["train", CONFIG, "--run-dir", str(run), *TINY, *extra]) == 0


def test_tiny_run_trains_evaluates_and_plots(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _train(run, "--iterations", "3")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    # iteration 1: 4 tasks x 2 initial episodes, then 2 tasks x (1 + 2) episodes, 10 steps each
    assert records[0]["env_steps"] <= (4 * 2 + 2 * 3) * 10
    assert records[0]["replay_transitions"] == records[0]["env_steps"]
    assert all(np.isfinite(r["critic_loss"]) and r["nonfinite"] == 0 for r in records)
    assert len(records[0]["returns"]) == 2  # prior, posterior episodes
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["adapts_by"] == "episodes"
    assert len(evaluation["returns_mean"]) == 3  # 2 exploration episodes + 1 posterior
    assert len(evaluation["per_task_returns"]) == 3
    assert evaluation["trajectories"]  # Navigation2D has positions
    again = tmp_path / "again.json"
    again.write_text((run / "evaluation.json").read_text())
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2"]) == 0
    assert (run / "evaluation.json").read_text() == again.read_text()  # seeded
    assert main(["plot", str(run)]) == 0
    assert main(["compare", str(run), "--output", str(tmp_path / "c.png")]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), "--x", "env-steps", "--output",
                 str(tmp_path / "e.png")]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pearl")]
    cells = [cell.strip() for cell in row[0].strip("|").split("|")]
    # algorithm, run, env, horizon, env steps, gradient steps (3 iterations x 4), hours, ...
    assert cells[:6] == ["pearl", "run", "Navigation2D", "10",
                         f"{records[-1]['env_steps']:,}", "12"]
    per_step = evaluation["returns_mean"][-1] / 10
    assert cells[8].startswith(f"{per_step:.3f}")
    assert (tmp_path / "e.png").stat().st_size > 0


def test_resume_is_bit_identical_and_keeps_the_buffers(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(straight, "--iterations", "3")
    _train(resumed, "--iterations", "2")
    checkpoint, _ = load_tensors(resumed / "checkpoints" / "iter_000002.safetensors")
    assert checkpoint["algorithm/replay/rows"].shape[1] > 0  # the buffers are checkpointed
    assert main(["train", "--resume", str(resumed), "--iterations", "3", "--quiet"]) == 0
    a, _ = load_tensors(straight / "policy.safetensors")
    b, _ = load_tensors(resumed / "policy.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [(run / "metrics.jsonl").read_text().splitlines() for run in (straight, resumed)]
    strip = [[{k: v for k, v in json.loads(x).items() if "second" not in k} for x in run]
             for run in lines]
    assert strip[0] == strip[1]


def test_worker_processes_collect_the_same_episodes(tmp_path: Path) -> None:
    """The process sampler's batches equal the in-process ones up to float32 rounding (the
    tanh-Gaussian policy runs through vmap, whose kernels may round differently with the
    batch size)."""
    vector, process = tmp_path / "vector", tmp_path / "process"
    _train(vector, "--iterations", "2")
    _train(process, "--iterations", "2", "--sampler", "process", "--workers", "2")
    a, _ = load_tensors(vector / "policy.safetensors")
    b, _ = load_tensors(process / "policy.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_nan_rewards_stop_the_run_and_keep_finite_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES.targets, "FaultyNavigation", FaultyNavigation)
    run = tmp_path / "run"
    argv = ["train", CONFIG, "--run-dir", str(run), "--iterations", "5", *TINY,
            "--set", "env.name=FaultyNavigation", "--set", "env.kwargs.nan_rewards=true"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "NaN/inf for 3 consecutive iterations" in error[0]
    tensors, _ = load_tensors(sorted((run / "checkpoints").glob("iter_*.safetensors"))[-1])
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["dropped_transitions"] > 0


@pytest.mark.parametrize(("override", "message"), [
    ("pearl.latent_dim=0", "pearl.latent_dim must be >= 1, got 0"),
    ("pearl.kl_weight=-0.1", "pearl.kl_weight must be >= 0, got -0.1"),
    ("pearl.reward_scale=-5", "pearl.reward_scale must be > 0, got -5"),
    ("pearl.batch_transitions=2000000",
     "pearl.batch_transitions (2000000) is larger than a task's buffer"),
    ("pearl.context_transitions=300",
     "pearl.context_transitions (300) is larger than a task's buffer"),
    ("pearl.tasks_per_iteration=9", "pearl.tasks_per_iteration must be <= train_tasks (4)"),
    ("env.name=Bandit", "pearl needs continuous actions"),
    ("policy.hidden_sizes=[8]", "policy: is not read by pearl"),
])
def test_bad_settings_are_one_line_before_any_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    run = tmp_path / "run"
    extra = ["--set", "pearl.buffer_transitions=200"] if "context" in override else []
    assert main(["train", CONFIG, "--run-dir", str(run), *TINY, *extra,
                 "--set", override]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not run.exists()


def test_dense_critic_rewards_go_to_the_replay_buffer_only(tmp_path: Path) -> None:
    """With ``pearl.dense_critic_rewards`` (the reference's sparse point robot) the critic's
    replay buffer holds the dense rewards, the encoder buffer the sparse ones."""
    from fastadapt.algorithms.pearl.algorithm import PEARL
    from fastadapt.run.config_loading import load_train_config
    from fastadapt.sampling.vector import VectorSampler

    overrides = [a for a in TINY if a not in ("--set", "--quiet")]
    config = load_train_config("pearl/sparse-point-robot",
                               [o for o in overrides if not o.startswith("env.")])
    algorithm = PEARL(make_family("SparsePointRobot"), config, torch.device("cpu"))
    sampler = VectorSampler(algorithm.family, algorithm.policy, algorithm.horizon, seed=0)
    algorithm.train_iteration(sampler, algorithm.training_tasks(np.random.default_rng(0), 2),
                              0.0)
    for task in range(config.section.train_tasks):  # type: ignore[attr-defined]
        dense = algorithm.replay.contents(task).rewards
        sparse = algorithm.encoder_buffer.contents(task).rewards
        assert bool((dense < 0).all())  # minus the distance
        assert bool(((sparse == 0) | (sparse >= 0.8)).all())  # 1 - distance within 0.2, else 0
    assert main(["train", CONFIG, "--run-dir", str(tmp_path / "nav"), *TINY,
                 "--set", "pearl.dense_critic_rewards=true"]) == 2  # Navigation2D has none


def test_phase_outcomes_by_hand() -> None:
    from fastadapt.algorithms.pearl.algorithm import phase_outcomes
    from fastadapt.types import Trajectories

    def batch(successes: list[list[float]] | None, unstable: list[list[float]] | None
              ) -> Trajectories:
        tasks, episodes = 2, 2
        return Trajectories(
            observations=torch.zeros(tasks, episodes, 3, 2),
            actions=torch.zeros(tasks, episodes, 3, 2), rewards=torch.zeros(tasks, episodes, 3),
            masks=torch.ones(tasks, episodes, 3),
            successes=None if successes is None
            else torch.tensor(successes)[..., None].expand(-1, -1, 3).contiguous(),
            unstable=None if unstable is None else torch.tensor(unstable))

    prior = batch([[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]])  # 1 of 4 succeeded
    posterior = [batch([[1.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]),  # 3 of 4
                 batch([[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]])]  # 4 of 4
    initial = batch([[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]])
    assert phase_outcomes([[prior], posterior], [initial, prior, *posterior]) == {
        "success_rate_before": 0.25, "success_rate_after": 7 / 8, "unstable_episodes": 4.0}
    plain = batch(None, None)  # no success, no physics: neither key
    assert phase_outcomes([[plain]], [plain]) == {}


def test_store_drops_non_finite_transitions_and_blow_up_terminals() -> None:
    from fastadapt.algorithms.pearl.algorithm import PEARL
    from fastadapt.run.config_loading import load_train_config
    from fastadapt.types import Trajectories

    overrides = [a for a in TINY if a not in ("--set", "--quiet")]
    algorithm = PEARL(make_family("Navigation2D"), load_train_config(CONFIG, overrides),
                      torch.device("cpu"))
    obs = torch.zeros(2, 1, 3, 2)
    rewards = torch.tensor([[[-1.0, float("nan"), -1.0]], [[-1.0, -1.0, 0.0]]])
    episodes = Trajectories(
        observations=obs, actions=torch.zeros(2, 1, 3, 2), rewards=rewards,
        masks=torch.ones(2, 1, 3), unstable=torch.tensor([[0.0], [1.0]]),
        terminated=torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]),
        final_observations=torch.zeros(2, 1, 2))
    assert algorithm._store(episodes, [0, 1], encoder=True) == 2
    # task 0 loses its NaN-reward step; task 1 the blow-up's false terminal
    assert algorithm.replay.sizes[:2].tolist() == [2, 2]
    assert algorithm.encoder_buffer.sizes[:2].tolist() == [2, 2]
    assert float(algorithm.replay.contents(1).terminated.sum()) == 0.0
