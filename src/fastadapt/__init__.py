"""fastadapt: meta-reinforcement learning on gymnasium 1.x and PyTorch 2.x.

The public API::

    import fastadapt

    config = fastadapt.load_config("maml-trpo/2d-navigation", ["run.iterations=5"])
    fastadapt.train(config, "runs/demo")
    result = fastadapt.evaluate("runs/demo", num_tasks=10)

- :func:`train`, :func:`evaluate`: what ``fastadapt train`` and ``fastadapt evaluate`` do;
- :func:`load_config`: a config file, or a packaged config by name (``fastadapt configs``);
- :func:`load_algorithm`: a trained run's algorithm with its final parameters;
- :func:`load_agent`, :class:`Agent`: a trained run acting and adapting step by step in a
  loop of your own;
- :class:`TrainConfig` and its sections (:class:`EnvConfig`, :class:`PolicyConfig`,
  :class:`RunConfig`, :class:`EvalConfig`, :class:`AlgorithmConfig`);
- :func:`make_family`, :func:`register_family`, :class:`TaskFamily`: task families;
- :func:`register_algorithm`, :class:`Algorithm`: algorithms (see ``examples/``).

Names are imported on first use, so ``import fastadapt`` stays light (worker processes import
the package too).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_API = {
    "train": "fastadapt.run.trainer",
    "evaluate": "fastadapt.evaluation.protocol",
    "evaluate_run": "fastadapt.evaluation.protocol",
    "load_config": "fastadapt.run.config_loading:load_train_config",
    "load_algorithm": "fastadapt.run.loading",
    "load_agent": "fastadapt.run.loading",
    "Agent": "fastadapt.algorithms.agent",
    "TrainConfig": "fastadapt.config",
    "EnvConfig": "fastadapt.config",
    "PolicyConfig": "fastadapt.config",
    "RunConfig": "fastadapt.config",
    "EvalConfig": "fastadapt.config",
    "AlgorithmConfig": "fastadapt.config",
    "make_family": "fastadapt.envs.registry",
    "register_family": "fastadapt.envs.registry",
    "TaskFamily": "fastadapt.envs.base",
    "BatchedEnv": "fastadapt.envs.base",
    "register_algorithm": "fastadapt.algorithms.registry",
    "Algorithm": "fastadapt.algorithms.base",
    "Iteration": "fastadapt.algorithms.base",
    "MetaTestCurves": "fastadapt.algorithms.base",
    "MetaTestProtocol": "fastadapt.algorithms.base",
}

__all__ = [
    "Agent",
    "Algorithm",
    "AlgorithmConfig",
    "BatchedEnv",
    "EnvConfig",
    "EvalConfig",
    "Iteration",
    "MetaTestCurves",
    "MetaTestProtocol",
    "PolicyConfig",
    "RunConfig",
    "TaskFamily",
    "TrainConfig",
    "__version__",
    "evaluate",
    "evaluate_run",
    "load_agent",
    "load_algorithm",
    "load_config",
    "make_family",
    "register_algorithm",
    "register_family",
    "train",
]

if TYPE_CHECKING:
    from fastadapt.algorithms.agent import Agent
    from fastadapt.algorithms.base import Algorithm, Iteration, MetaTestCurves, MetaTestProtocol
    from fastadapt.algorithms.registry import register_algorithm
    from fastadapt.config import (
        AlgorithmConfig,
        EnvConfig,
        EvalConfig,
        PolicyConfig,
        RunConfig,
        TrainConfig,
    )
    from fastadapt.envs.base import BatchedEnv, TaskFamily
    from fastadapt.envs.registry import make_family, register_family
    from fastadapt.evaluation.protocol import evaluate, evaluate_run
    from fastadapt.run.config_loading import load_train_config as load_config
    from fastadapt.run.loading import load_agent, load_algorithm
    from fastadapt.run.trainer import train


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'fastadapt' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
