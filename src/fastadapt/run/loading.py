"""The one place a run's algorithm is built and given its parameters: the trainer, ``fastadapt
evaluate`` and :func:`load_algorithm` (a trained run in a user's own code) all go through it.

- :func:`build_run_algorithm`: the process set-up (threads, allocator) and the algorithm of a
  resolved config on its device, with its initial parameters;
- :func:`load_policy`: a policy file's parameters (checked) and extras into an algorithm;
- :func:`load_algorithm`: a run directory's config, algorithm and final parameters;
- :func:`load_agent`: its :class:`~fastadapt.algorithms.agent.Agent`, to act and adapt in a
  loop the user writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.algorithms.base import Algorithm
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.backends.process_setup import configure_process
from fastadapt.config import TrainConfig
from fastadapt.errors import CheckpointError
from fastadapt.run.device import resolve_device
from fastadapt.run.rundir import check_params, final_policy_tensors, load_run_config, split_policy

__all__ = ["build_run_algorithm", "load_agent", "load_algorithm", "load_final_policy",
           "load_policy", "policy_fingerprint"]


def build_run_algorithm(config: TrainConfig, device: str | None = None) -> Algorithm[Any]:
    """Set up the process (``run.num_threads``, ``run.retain_freed_memory``) and build the
    algorithm of a resolved ``config`` with its initial parameters.

    Args:
        config: the run's config.
        device: where the learner lives (``cpu``, ``cuda``, ``auto``, ...); default the
            config's ``run.device``.

    Raises:
        ConfigError, UnknownEnvError, FamilyError, PluginError: one line naming the cause.
    """
    configure_process(config.run.num_threads, config.run.retain_freed_memory)
    return build_algorithm(config, resolve_device(device or config.run.device))


def load_policy(algorithm: Algorithm[Any], tensors: dict[str, Tensor], source: Path,
                parameters_only: bool = False) -> None:
    """Give ``algorithm`` a policy file's parameters (checked: names, shapes, dtypes, finite
    values) and, unless ``parameters_only``, its extras (Meta-SGD's rates).

    Raises:
        CheckpointError: naming ``source`` and the mismatch.
    """
    params, extras = split_policy(tensors)
    algorithm.load_parameters(check_params(params, algorithm.initial_parameters(), source))
    if parameters_only:
        return
    try:
        algorithm.load_policy_extras(extras)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{source} does not match this algorithm's policy: {err}") from err


def load_final_policy(algorithm: Algorithm[Any], run_dir: Path,
                      parameters_only: bool = False) -> None:
    """Give ``algorithm`` the final parameters of the run in ``run_dir``
    (``policy.safetensors``, else its latest checkpoint's).

    Raises:
        CheckpointError: the run holds neither, the file is corrupt, or it holds another
            policy's parameters.
    """
    tensors, source = final_policy_tensors(run_dir)
    load_policy(algorithm, tensors, source, parameters_only)


def policy_fingerprint(algorithm: Algorithm[Any]) -> str:
    """SHA-256 of ``algorithm``'s parameters and policy extras (names, dtypes, shapes,
    values): which policy an evaluation result belongs to."""
    digest = hashlib.sha256()
    tensors = {**algorithm.parameters(), **algorithm.policy_extras()}
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{list(value.shape)};".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def load_algorithm(run_dir: Path | str, device: str | None = None,
                   overrides: Sequence[str] = (), plugins: Iterable[str] = ()
                   ) -> Algorithm[Any]:
    """A trained run's algorithm with its final parameters, ready to meta-test or to adapt.

    Example::

        algorithm = fastadapt.load_algorithm("runs/demo")
        tasks = algorithm.family.test_tasks(5)

    Args:
        run_dir: the run directory.
        device: where to put it; default the run's ``run.device``.
        overrides: ``"section.key=value"`` changes of the saved config (``run.workers=4``).
        plugins: modules to import first, besides the config's own ``plugins``.

    Raises:
        CheckpointError: not a run directory, or its policy is missing, corrupt or another
            policy's.
        ConfigError, PluginError: its config cannot be read or built.
    """
    run_dir = Path(run_dir)
    algorithm = build_run_algorithm(load_run_config(run_dir, overrides, plugins), device)
    load_final_policy(algorithm, run_dir)
    return algorithm


def load_agent(run_dir: Path | str, num_envs: int = 1, device: str = "cpu", seed: int = 0,
               overrides: Sequence[str] = (), plugins: Iterable[str] = ()) -> Agent:
    """A trained run's :class:`~fastadapt.algorithms.agent.Agent`: its final parameters,
    acting in ``num_envs`` environments (each its own task) and adapting as its algorithm
    does at meta-test.

    Example::

        agent = fastadapt.load_agent("runs/demo", num_envs=4)
        actions = agent.act(observations)          # [4, *obs_shape] -> [4, ...]

    Args:
        run_dir: the run directory.
        num_envs: ``N``.
        device: where the agent computes (``cpu``, ``cuda``, ``auto``).
        seed: seeds its exploration noise and its own draws.
        overrides: as :func:`load_algorithm`.
        plugins: as :func:`load_algorithm`.

    Raises:
        CheckpointError: not a run directory, a run written by a newer fastadapt, or its
            policy is missing, corrupt or another policy's.
        ConfigError, PluginError: its config cannot be read or built.
        AgentError: ``num_envs`` is not a positive integer, or the run's algorithm builds no
            agent.
    """
    return load_algorithm(run_dir, device, overrides, plugins).make_agent(num_envs, seed)
