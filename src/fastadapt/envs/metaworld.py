"""Meta-World ML1, ML10, ML25 and ML45 (Yu et al. 2019; v3 of ``metaworld==3.1.1``) as task
families.

| family | training tasks (``sample_tasks``) | held-out tasks (``test_tasks``) |
|---|---|---|
| ``MetaWorld-ML1-<env>`` | the 50 train goals of ``<env>`` | its 50 test goals |
| ``MetaWorld-ML10`` | 10 train classes x 50 goals | 5 held-out classes x 50 goals |
| ``MetaWorld-ML25`` | 25 train classes x 50 goals | 5 held-out classes x 50 goals |
| ``MetaWorld-ML45`` | 45 train classes x 50 goals | 5 held-out classes x 50 goals |

Tasks and splits are the benchmark's own: ``metaworld.ML1(env, seed=benchmark_seed)``,
``metaworld.ML10(seed=benchmark_seed)`` (``ML25``, ``ML45`` alike), built once per process when
first needed (it compiles every class's model: ML45 the longest). (Never
``gym.make_vec("Meta-World/ML1-train")``: its registration hands out the test tasks.) A task is
a :class:`MetaWorldTask` ``(env_name, split, index)``, the ``index``-th task of class
``env_name`` in the benchmark's ``split``; :meth:`MetaWorldFamily.metaworld_task` maps it back
to Meta-World's ``Task``. ``sample_tasks(rng, n)`` spreads ``n`` tasks evenly over the train
classes (classes given one task more are drawn at random) and draws goals without replacement
within a class (with replacement beyond 50). ``test_tasks(n)`` takes held-out tasks round-robin
over the test classes, goal 0 of each class first, so ``test_tasks(40)`` of ML1 is its first
40 test goals and ``test_tasks(200)`` of ML10, ML25 or ML45 is 40 goals of each of its 5
held-out classes (Meta-World's protocol). Both are prefix-stable: the first ``k`` of
``test_tasks(n)`` are ``test_tasks(k)``.

Every episode: ``set_task`` then ``reset`` (Meta-World refuses an env whose task is not set);
observations are the 39 floats of the ML benchmarks (goal hidden: its 3 entries are 0), actions
``[-1, 1]^4`` (clipped before stepping), rewards Meta-World's v2 rewards (0 to 10 per step),
horizon 500 (Meta-World's ``max_path_length``; longer is refused). :attr:`BatchedEnv.success`
is ``info["success"]``; an episode succeeds if any of its steps does. With its task set,
Meta-World's reset is deterministic, so episodes depend only on the task and the actions: the
env randomness ``rng`` of :meth:`MetaWorldFamily.make_batched` is not used.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import gymnasium as gym
import metaworld
import metaworld.env_dict
import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from fastadapt.envs.base import FamilyFactory, RandomStreams, TaskEnv, TaskFamily
from fastadapt.envs.metaworld_batched import MAX_EPISODE_STEPS, BatchedMetaWorld, EnvPool
from fastadapt.errors import ConfigError, TaskError, UnknownEnvError

SPLITS = ("train", "test")
MULTI_CLASS_BENCHMARKS = ("ML10", "ML25", "ML45")
"""The benchmarks of several classes (``metaworld.ML10`` ...); ``ML1`` is one class."""
GOALS_PER_CLASS = 50
"""Tasks (goals) per class in each split of the ML benchmarks."""


@dataclass(frozen=True)
class MetaWorldTask:
    """The ``index``-th task of class ``env_name`` (e.g. ``"reach-v3"``) in ``split``."""

    env_name: str
    split: str
    index: int


@dataclass(frozen=True)
class _Splits:
    """A benchmark's tasks: ``tasks[split][env_name]`` lists Meta-World ``Task`` values."""

    classes: dict[str, type]
    tasks: dict[str, dict[str, list[Any]]]


@cache
def _build_splits(benchmark: str, env_name: str | None, seed: int) -> _Splits:
    """Build the benchmark object once per process (it takes seconds, ML45 the longest)."""
    make: Any = (partial(metaworld.ML1, env_name) if benchmark == "ML1"
                 else getattr(metaworld, benchmark))
    bench: metaworld.Benchmark = make(seed=seed)
    split_classes = {"train": bench.train_classes, "test": bench.test_classes}
    split_tasks = {"train": bench.train_tasks, "test": bench.test_tasks}
    tasks = {
        split: {name: [t for t in split_tasks[split] if t.env_name == name]
                for name in split_classes[split]}
        for split in SPLITS
    }
    return _Splits({**bench.train_classes, **bench.test_classes}, tasks)


def _observation_space() -> gym.spaces.Box:
    """Meta-World's bounds with the goal hidden: hand xyz, gripper in [-1, 1], 14 object
    entries unbounded, the same 18 again for the previous frame, then 3 zeros, float32."""
    hand = SawyerXYZEnv._HAND_SPACE
    objects = np.full(14, np.inf)
    high_frame = np.concatenate([hand.high, [1.0], objects])
    low_frame = np.concatenate([hand.low, [-1.0], -objects])
    low = np.concatenate([low_frame, low_frame, np.zeros(3)]).astype(np.float32)
    high = np.concatenate([high_frame, high_frame, np.zeros(3)]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


class MetaWorldFamily(TaskFamily[MetaWorldTask]):
    """A Meta-World ML benchmark: ``ML1`` of one env, or ``ML10``, ``ML25`` or ``ML45``.

    Args:
        benchmark: ``"ML1"``, ``"ML10"``, ``"ML25"`` or ``"ML45"``.
        env_name: the ML1 env (e.g. ``"push-v3"``); ``None`` for the others.
        benchmark_seed: seeds Meta-World's goal generation (``seed=`` of the benchmark
            object), which fixes the train and test splits.
    """

    simulator_bytes_per_task = 30 * 2**20
    """A compiled model and its envs: 200 tasks x 13 episodes held about 6 GB (measured with
    ML45's meta-test)."""
    horizon = MAX_EPISODE_STEPS
    reference = "Yu et al. 2019, Meta-World (CoRL); v3 benchmark of metaworld 3.1.1"

    def __init__(self, benchmark: str, env_name: str | None = None, benchmark_seed: int = 0
                 ) -> None:
        if benchmark == "ML1" and env_name not in metaworld.ML1.ENV_NAMES:
            raise UnknownEnvError(f"{env_name!r} is not a Meta-World v3 env")
        if benchmark != "ML1" and benchmark not in MULTI_CLASS_BENCHMARKS:
            raise UnknownEnvError(f"unknown Meta-World benchmark {benchmark!r} "
                                  f"(ML1, {', '.join(MULTI_CLASS_BENCHMARKS)})")
        if type(benchmark_seed) is not int or not 0 <= benchmark_seed < 2**32:
            raise ConfigError(f"env.kwargs.benchmark_seed must be an integer in [0, 2^32), "
                              f"got {benchmark_seed!r}")
        self.benchmark, self.env_name, self.benchmark_seed = benchmark, env_name, benchmark_seed
        self.name = f"MetaWorld-ML1-{env_name}" if benchmark == "ML1" else f"MetaWorld-{benchmark}"
        self.observation_space = _observation_space()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self._splits: _Splits | None = None
        self._pool: EnvPool | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the splits (built now if need be, so sampler workers do not rebuild
        the benchmark) and without the env pool (workers and copies build their own)."""
        return {**self.__dict__, "_splits": self.splits, "_pool": None}

    @property
    def task_space(self) -> str:
        if self.benchmark == "ML1":
            return f"{self.env_name}: 50 train goals, 50 test goals (seed {self.benchmark_seed})"
        classes = getattr(metaworld.env_dict, f"{self.benchmark}_V3")  # without building it
        return (f"{len(classes['train'])} train classes x {GOALS_PER_CLASS} goals; test: "
                f"{len(classes['test'])} held-out classes x {GOALS_PER_CLASS} goals")

    @property
    def splits(self) -> _Splits:
        """The benchmark's classes and tasks (built on first use, once per process)."""
        if self._splits is None:
            self._splits = _build_splits(self.benchmark, self.env_name, self.benchmark_seed)
        return self._splits

    def classes(self, split: str) -> list[str]:
        """Class names of ``split`` in the benchmark's order."""
        return list(self.splits.tasks[split])

    def metaworld_task(self, task: MetaWorldTask) -> Any:
        """Meta-World's ``Task`` (``metaworld.types.Task``) of ``task``."""
        self.validate_task(task)
        return self.splits.tasks[task.split][task.env_name][task.index]

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[MetaWorldTask]:
        names = self.classes("train")
        counts = np.full(len(names), num_tasks // len(names))
        counts[rng.permutation(len(names))[: num_tasks % len(names)]] += 1
        tasks = []
        for name, count in zip(names, counts, strict=True):
            available = len(self.splits.tasks["train"][name])
            indices = rng.choice(available, size=int(count), replace=bool(count > available))
            tasks += [MetaWorldTask(name, "train", int(i)) for i in indices]
        return tasks

    def test_tasks(self, num_tasks: int) -> list[MetaWorldTask]:
        """The first ``num_tasks`` held-out tasks, round-robin over the test classes.

        Raises:
            TaskError: more tasks than the test split holds.
        """
        names = self.classes("test")
        total = sum(len(self.splits.tasks["test"][n]) for n in names)
        if num_tasks > total:
            raise TaskError(f"{self.name} has {total} test tasks; {num_tasks} were asked for")
        return [MetaWorldTask(names[j % len(names)], "test", j // len(names))
                for j in range(num_tasks)]

    def validate_task(self, task: MetaWorldTask) -> None:
        if not isinstance(task, MetaWorldTask):
            raise TaskError(f"{self.name} expects a MetaWorldTask, got {type(task).__name__}")
        if task.split not in SPLITS:
            raise TaskError(f"{self.name} task split must be 'train' or 'test', got {task.split!r}")
        by_class = self.splits.tasks[task.split]
        if task.env_name not in by_class:
            raise TaskError(
                f"{task.env_name!r} is not a {task.split} class of {self.name} "
                f"({', '.join(by_class)})"
            )
        if not 0 <= task.index < len(by_class[task.env_name]):
            raise TaskError(f"{self.name} {task.split} task index {task.index} is outside "
                            f"[0, {len(by_class[task.env_name])})")

    def make_batched(self, tasks: list[MetaWorldTask], episodes_per_task: int,
                     rng: RandomStreams) -> BatchedMetaWorld:
        """A batched simulator of ``tasks``; ``rng`` is unused (see the module docstring)."""
        metaworld_tasks = [self.metaworld_task(task) for task in tasks]
        if self._pool is None:
            classes = self.splits.classes
            self._pool = EnvPool(lambda name: classes[name]())
        bounds = (self.observation_space.low, self.observation_space.high)
        return BatchedMetaWorld(self._pool, metaworld_tasks, [t.env_name for t in tasks],
                                episodes_per_task, bounds)

    def make_env(self, task: MetaWorldTask | None = None, horizon: int | None = None
                 ) -> TaskEnv[MetaWorldTask]:
        """A gymnasium env of this family with its own Meta-World envs (a copy of the
        family without the pool), so it never competes with a sampler for them."""
        own: MetaWorldFamily = pickle.loads(pickle.dumps(self))
        return TaskEnv(own, task, horizon)

    def task_to_dict(self, task: MetaWorldTask) -> dict[str, Any]:
        """``env_name``, ``split``, ``index`` and Meta-World's ``rand_vec`` (the object and
        goal positions it draws the task's initial state from)."""
        data = pickle.loads(self.metaworld_task(task).data)
        return {"env_name": task.env_name, "split": task.split, "index": task.index,
                "rand_vec": [float(x) for x in data["rand_vec"]]}


def family_factories() -> dict[str, FamilyFactory]:
    """``MetaWorld-ML1-<env>`` for every Meta-World v3 env, and ``MetaWorld-ML10``, ``-ML25``,
    ``-ML45``."""
    factories: dict[str, FamilyFactory] = {
        f"MetaWorld-ML1-{name}": partial(MetaWorldFamily, "ML1", name)
        for name in metaworld.ML1.ENV_NAMES
    }
    for benchmark in MULTI_CLASS_BENCHMARKS:
        factories[f"MetaWorld-{benchmark}"] = partial(MetaWorldFamily, benchmark)
    return factories
