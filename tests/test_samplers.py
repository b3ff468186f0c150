"""Samplers: one batch from every kind and worker count, worker failures, nothing left behind.

Worker processes are killed for real (SIGKILL); Ray tests share one local Ray instance (started
by the sampler of a module fixture) and are skipped when Ray is not installed.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from faulty_envs import FaultyNavigation, FaultyTask, faulty_tasks
from tiny_runs import assert_group_gone

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.cli import main
from fastadapt.envs.base import TaskFamily
from fastadapt.envs.registry import make_family
from fastadapt.errors import ConfigError, SamplerError, WorkerDiedError, WorkerError
from fastadapt.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, Policy, make_policy
from fastadapt.policies.recurrent import Cell, RecurrentPolicySpec, make_recurrent_policy
from fastadapt.run.checkpoint import load_tensors
from fastadapt.sampling import SeededSampler, make_sampler
from fastadapt.sampling.process_sampler import ProcessSampler
from fastadapt.sampling.ray_sampler import START_SECONDS
from fastadapt.sampling.rollout import StreamKey
from fastadapt.sampling.vector import VectorSampler
from fastadapt.sampling.worker_pool import (
    TrialRequest,
    WorkItem,
    merge,
    pack_shared,
    run_item,
    split_tasks,
)
from fastadapt.types import Params, Trajectories, Trials

SEED, HORIZON, EPISODES = 7, 12, 3
REPO = Path(__file__).resolve().parents[1]
KILL_DETECTION_SECONDS = 10.0


def _policy(family: TaskFamily[Any]) -> Policy:
    torch.manual_seed(0)
    obs_dim = int(np.prod(family.observation_space.shape))
    return make_policy(obs_dim, family.action_space, (16, 16), "tanh", 1.0)


def _params(policy: Policy, num_tasks: int) -> list[Params]:
    """``theta`` shared by all tasks (a stride-0 view), then distinct per-task parameters."""
    theta = {n: p.detach().clone() for n, p in policy.named_parameters()}
    shared = expand_to_tasks(theta, num_tasks)
    generator = torch.Generator().manual_seed(1)
    adapted = {n: p + 0.05 * torch.randn(p.shape, generator=generator) for n, p in shared.items()}
    return [shared, adapted]


def _sample_all(sampler: SeededSampler, params: list[Params], tasks: list[Any]
                ) -> list[Trajectories]:
    return [sampler.sample(p, tasks, EPISODES) for p in params]


def _assert_identical(expected: list[Trajectories], got: list[Trajectories]) -> None:
    for batch_a, batch_b in zip(expected, got, strict=True):
        for field, a, b in zip(Trajectories._fields, batch_a, batch_b, strict=True):
            if a is None or b is None:  # successes of families that report none
                assert a is None and b is None, field
                continue
            assert a.shape == b.shape and torch.equal(a, b), field


def _vector_reference(family: TaskFamily[Any], policy: Policy, tasks: list[Any],
                      params: list[Params], state: dict[str, int] | None = None
                      ) -> list[Trajectories]:
    with VectorSampler(family, policy, HORIZON, SEED) as sampler:
        if state is not None:
            sampler.load_state_dict(state)
        return _sample_all(sampler, params, tasks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_later(pid: int, seconds: float) -> None:
    threading.Timer(seconds, os.kill, (pid, signal.SIGKILL)).start()


# --- actions from pre-drawn noise, by hand -----------------------------------------------------


def test_actions_from_noise_by_hand() -> None:
    categorical = CategoricalMLPPolicy(1, 3, (4,))
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(5, 3)
    uniforms = torch.tensor([0.1, 0.25, 0.69, 0.75, 0.9999])
    assert categorical.sample(logits, uniforms).tolist() == [0, 1, 1, 2, 2]
    gaussian = GaussianMLPPolicy(1, 2, (4,))
    out = torch.tensor([[1.0, -1.0, float(np.log(2.0)), float(np.log(0.5))]])  # std (2, 0.5)
    actions = gaussian.sample(out, torch.tensor([[0.5, -2.0]]))
    torch.testing.assert_close(actions, torch.tensor([[2.0, -2.0]]))


# --- the same batch from every sampler ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "workers"), [("Navigation2D", 1), ("Navigation2D", 3), ("TabularMDP", 2),
                          ("Bandit", 4)],
)
def test_process_sampler_gives_the_vector_batch(name: str, workers: int) -> None:
    family = make_family(name)
    policy = _policy(family)
    tasks = family.sample_tasks(np.random.default_rng(2), 5)
    params = _params(policy, len(tasks))
    expected = _vector_reference(family, policy, tasks, params)
    assert not torch.equal(expected[0].actions, expected[1].actions)
    with ProcessSampler(family, policy, HORIZON, SEED, workers=workers) as sampler:
        _assert_identical(expected, _sample_all(sampler, params, tasks))
        assert sampler.state_dict() == {"seed": SEED, "calls": 2}


@pytest.mark.parametrize(("name", "cell"), [("Bandit", "gru"), ("Navigation2D", "lstm")])
def test_worker_samplers_give_the_vector_trials(name: str, cell: Cell) -> None:
    """RL²'s trials: worker processes (and the work items Ray actors run) return the trials of
    the in-process sampler. Each task draws from its own streams, so only the recurrent cell's
    float32 rounding, which depends on how many rows share a matrix product and on the thread
    count, can differ; a given split of the tasks gives the same bits every time."""
    family = make_family(name, **({"num_arms": 3, "num_pulls": 1} if name == "Bandit" else {}))
    torch.manual_seed(0)
    policy = make_recurrent_policy(int(np.prod(family.observation_space.shape)),
                                   family.action_space,
                                   RecurrentPolicySpec(hidden_size=8, init_std=0.5, cell=cell))
    params, tasks = policy.params(), family.sample_tasks(np.random.default_rng(4), 5)
    with VectorSampler(family, policy, 3, SEED) as sampler:
        expected = sampler.sample_trials(params, tasks, 2, 4)
    with ProcessSampler(family, policy, 3, SEED, workers=2) as sampler:
        got = sampler.sample_trials(params, tasks, 2, 4)
    request = TrialRequest(2, 4)
    items = [WorkItem(pack_shared(params), tasks[c.start : c.stop], request,
                      StreamKey(SEED, 0, c.start))
             for c in split_tasks(len(tasks), 2)]  # what Ray actors run, here in this process
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every worker
    try:
        by_items = merge([run_item(family, policy, 3, item) for item in items], request)
    finally:
        torch.set_num_threads(threads)
    for field, a, b, c in zip(Trials._fields, expected, got, by_items, strict=True):
        if a is None:
            assert b is None and c is None, field
            continue
        assert torch.equal(b, c), field
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=field)


def test_state_dict_continues_the_streams_in_another_sampler() -> None:
    family = make_family("TabularMDP")
    policy = _policy(family)
    tasks = family.sample_tasks(np.random.default_rng(3), 4)
    params = _params(policy, len(tasks))
    with VectorSampler(family, policy, HORIZON, SEED) as sampler:
        _sample_all(sampler, params, tasks)
        state = sampler.state_dict()
        expected = _sample_all(sampler, params, tasks)
    with ProcessSampler(family, policy, HORIZON, seed=0, workers=2) as other:
        other.load_state_dict(state)
        _assert_identical(expected, _sample_all(other, params, tasks))


def test_make_sampler_rejects_unknown_kind_and_no_workers() -> None:
    family = make_family("Navigation2D")
    policy = _policy(family)
    with pytest.raises(SamplerError, match="unknown sampler 'threads'; choose one of vector"):
        make_sampler("threads", family, policy, HORIZON, SEED)
    with pytest.raises(ConfigError, match="workers must be >= 1, got 0"):
        make_sampler("process", family, policy, HORIZON, SEED, workers=0)


# --- process workers that die or raise ---------------------------------------------------------


def _faulty_setup(**faults: Any) -> tuple[FaultyNavigation, Policy, list[FaultyTask], Params]:
    family = FaultyNavigation()
    policy = _policy(family)
    tasks = faulty_tasks(4, **faults)
    return family, policy, tasks, _params(policy, len(tasks))[1]


def test_killed_process_worker_is_restarted_and_its_tasks_rerun() -> None:
    family, policy, tasks, params = _faulty_setup(step_seconds=0.04)  # ~0.5 s per rollout
    expected = _vector_reference(family, policy, tasks, [params])
    with ProcessSampler(family, policy, HORIZON, SEED, workers=2) as sampler:
        victim = sampler.worker_pids()[0]
        _kill_later(victim, 0.2)
        start = time.monotonic()
        got = [sampler.sample(params, tasks, EPISODES)]
        assert time.monotonic() - start < KILL_DETECTION_SECONDS
        assert sampler.restarts == 1
        assert victim not in sampler.worker_pids() and not _alive(victim)
    _assert_identical(expected, got)


def test_killed_process_worker_without_restarts_raises_within_10_seconds() -> None:
    family, policy, tasks, params = _faulty_setup(step_seconds=0.5)  # 6 s per rollout
    with ProcessSampler(family, policy, HORIZON, SEED, workers=2, max_restarts=0) as sampler:
        victim = sampler.worker_pids()[1]
        _kill_later(victim, 0.3)
        start = time.monotonic()
        with pytest.raises(WorkerDiedError, match=rf"sampler worker 1 \(pid {victim}\) died "
                           r"while sampling tasks 2-3 of sample call 0: killed by SIGKILL"):
            sampler.sample(params, tasks, EPISODES)
        assert time.monotonic() - start < KILL_DETECTION_SECONDS
        pids = sampler.worker_pids()
    assert not any(_alive(pid) for pid in pids)


def test_process_worker_exception_names_the_worker_and_the_message() -> None:
    family, policy, tasks, params = _faulty_setup()
    tasks[3] = FaultyTask(tasks[3].goal_x, tasks[3].goal_y, fail_at_step=3)
    with ProcessSampler(family, policy, HORIZON, SEED, workers=2) as sampler:
        with pytest.raises(WorkerError, match=r"sampler worker 1 \(pid \d+\) failed while "
                           r"sampling tasks 2-3 of sample call 0: RuntimeError: simulator "
                           r"exploded at step 3$"):
            sampler.sample(params, tasks, EPISODES)
        # The late reply of worker 0 to call 0 is dropped; the next call is served normally.
        three = {name: value[:3] for name, value in params.items()}
        expected = _vector_reference(family, policy, tasks[:3], [three], sampler.state_dict())
        _assert_identical(expected, [sampler.sample(three, tasks[:3], EPISODES)])
        with pytest.raises(ValueError, match=r"parameters for \[4\] tasks, but 3 tasks"):
            sampler.sample(params, tasks[:3], EPISODES)


def test_closing_leaves_no_worker_process() -> None:
    family = make_family("Navigation2D")
    policy = _policy(family)
    before = {p.pid for p in multiprocessing.active_children()}
    sampler = ProcessSampler(family, policy, HORIZON, SEED, workers=3)
    pids = sampler.worker_pids()
    assert all(_alive(pid) for pid in pids)
    sampler.close()
    sampler.close()  # idempotent
    assert not any(_alive(pid) for pid in pids)
    assert {p.pid for p in multiprocessing.active_children()} <= before
    with pytest.raises(SamplerError, match="closed"):
        sampler.sample(_params(policy, 1)[0], family.sample_tasks(np.random.default_rng(), 1), 1)


def test_ctrl_c_during_training_exits_and_leaves_no_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # The child takes Ctrl-C as an interactive shell's command does, even when this test runs
    # in a background job (which starts with SIGINT ignored, inherited across exec).
    interactive = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                   "signal.default_int_handler); sys.argv[0] = 'fastadapt'; "
                   "runpy.run_module('fastadapt.cli', run_name='__main__')")
    command = [
        sys.executable, "-c", interactive, "train", "maml-trpo/2d-navigation",
        "--run-dir", str(run_dir), "--sampler", "process", "--workers", "2", "--quiet",
        "--iterations", "1000", "--set", "maml-trpo.tasks_per_iteration=4",
        "--set", "env.horizon=20", "--set", "maml-trpo.episodes_per_task=4",
        "--set", "policy.hidden_sizes=[16]",
        "--set", "run.checkpoint_every=1", "--set", "run.tensorboard=false",
    ]
    # Its own session, so that the signal reaches every process of the group, as Ctrl-C does.
    # stderr goes to a file, not a pipe: the main process's exit is what is awaited, and the
    # group check below catches any process that outlives it.
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints").is_dir() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert "interrupted; checkpoints written so far are kept" in err
    assert_group_gone(proc.pid, KILL_DETECTION_SECONDS, "the interrupted run")


# --- resume across sampler kinds ---------------------------------------------------------------


TINY_NAVIGATION = [
    "maml-trpo/2d-navigation", "--quiet", "--set", "maml-trpo.tasks_per_iteration=3",
    "--set", "maml-trpo.episodes_per_task=2", "--set", "env.horizon=8",
    "--set", "policy.hidden_sizes=[8]", "--set", "run.tensorboard=false",
    "--set", "run.checkpoint_every=1", "--set", "run.num_threads=1",
]


def test_resume_with_another_sampler_is_bit_identical(tmp_path: Path) -> None:
    tiny = TINY_NAVIGATION
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *tiny, "--run-dir", str(straight), "--iterations", "3"]) == 0
    assert main(["train", *tiny, "--run-dir", str(split), "--iterations", "2",
                 "--sampler", "process", "--workers", "2"]) == 0
    assert main(["train", "--resume", str(split), "--iterations", "3", "--quiet",
                 "--sampler", "vector"]) == 0
    a, _ = load_tensors(straight / "policy.safetensors")
    b, _ = load_tensors(split / "policy.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_evaluate_gives_the_same_result_with_worker_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY_NAVIGATION, "--run-dir", str(run), "--iterations", "1"]) == 0
    evaluate = ["evaluate", str(run), "--tasks", "3", "--adaptation-steps", "2",
                "--episodes", "2"]
    assert main(evaluate) == 0  # the run's sampler: vector
    expected = (run / "evaluation.json").read_text()
    calls: list[int] = []  # tasks of every batch the worker processes sampled
    sample = ProcessSampler.sample

    def counting(self: ProcessSampler, params: Params, tasks: list[Any], episodes: int
                 ) -> Trajectories:
        calls.append(len(tasks))
        return sample(self, params, tasks, episodes)

    monkeypatch.setattr(ProcessSampler, "sample", counting)
    assert main([*evaluate, "--sampler", "process", "--workers", "2"]) == 0
    assert calls == [3, 3, 3]  # before, after one and after two inner steps
    assert (run / "evaluation.json").read_text() == expected


# --- Ray ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_sampler() -> Iterator[Any]:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'fastadapt[ray]'")
    from fastadapt.sampling.ray_sampler import RaySampler

    # Ray's workers import the test families from this directory.
    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                             old_path]))
    family = FaultyNavigation()
    sampler = None
    for attempt in range(2):  # a heavily loaded machine can miss Ray's actor start-up once
        try:
            sampler = RaySampler(family, _policy(family), HORIZON, SEED, workers=2)
            break
        except SamplerError as err:
            if "cannot start Ray actors" not in str(err):
                raise
            if attempt == 1:  # infrastructure, not a sampler bug: say so rather than fail
                pytest.skip(f"Ray could not start its actors on this machine: {err}")
    assert sampler is not None
    try:
        yield sampler
    finally:
        sampler.close()
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path


def test_ray_sampler_gives_the_vector_batch(ray_sampler: Any) -> None:
    family = FaultyNavigation()
    policy = _policy(family)
    tasks = family.sample_tasks(np.random.default_rng(2), 5)
    params = _params(policy, len(tasks))
    expected = _vector_reference(family, policy, tasks, params, ray_sampler.state_dict())
    _assert_identical(expected, _sample_all(ray_sampler, params, tasks))


def test_killed_ray_actor_is_replaced_and_its_tasks_rerun(ray_sampler: Any) -> None:
    family, policy, tasks, params = _faulty_setup(step_seconds=0.1)  # ~1.2 s per rollout
    expected = _vector_reference(family, policy, tasks, [params], ray_sampler.state_dict())
    victim, restarts = ray_sampler.worker_pids()[0], ray_sampler.restarts
    _kill_later(victim, 0.5)
    start = time.monotonic()
    got = [ray_sampler.sample(params, tasks, EPISODES)]
    # the call includes starting the replacement actor, which Ray may take up to the sampler's
    # start timeout to do on a loaded machine (48 s measured with two trainings on 2 cores)
    assert time.monotonic() - start < KILL_DETECTION_SECONDS + START_SECONDS
    assert ray_sampler.restarts == restarts + 1
    _assert_identical(expected, got)


def test_ray_actor_exception_names_the_worker_and_the_message(ray_sampler: Any) -> None:
    _, _, tasks, params = _faulty_setup()
    tasks[3] = FaultyTask(tasks[3].goal_x, tasks[3].goal_y, fail_at_step=3)
    with pytest.raises(WorkerError, match=r"sampler worker 1 \(Ray actor\) failed while "
                       r"sampling tasks 2-3 of sample call \d+: RuntimeError: simulator "
                       r"exploded at step 3$"):
        ray_sampler.sample(params, tasks, EPISODES)


def test_closing_the_ray_sampler_leaves_no_process(ray_sampler: Any) -> None:
    psutil = pytest.importorskip("psutil", reason="psutil lists Ray's processes")
    import ray

    # multiprocessing's forkserver and resource tracker (shared helpers, not Ray's)
    helpers = {getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None),
               getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)}
    children = psutil.Process().children(recursive=True)
    ray_processes = [p for p in children if p.pid not in helpers]
    assert any("raylet" in p.name() for p in ray_processes), [p.name() for p in children]
    ray_sampler.close()
    assert not ray.is_initialized()
    _, alive = psutil.wait_procs(ray_processes, timeout=KILL_DETECTION_SECONDS)
    assert not alive, [(p.pid, p.name()) for p in alive]
