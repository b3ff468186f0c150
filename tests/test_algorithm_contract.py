"""The typed contract between an algorithm and the trainer, and the toolkit plugins build on:
``Iteration.nonfinite`` reaches ``metrics.jsonl``; the built-in algorithms name their learner
and its state alike; :mod:`fastadapt.algorithms.toolkit` re-exports the building blocks."""

from __future__ import annotations

import importlib

import pytest
import torch

import fastadapt
from fastadapt.algorithms import toolkit
from fastadapt.algorithms.pearl.update import PEARLLearner
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.algorithms.rl2.update import RL2PPO
from fastadapt.config import EnvConfig, TrainConfig
from fastadapt.run.config_loading import resolve
from fastadapt.run.trainer import iteration_record


@pytest.mark.parametrize("nonfinite", [True, False])
def test_the_record_holds_the_nonfinite_field_after_the_metrics(nonfinite: bool) -> None:
    result = fastadapt.Iteration(10, [1.0, 2.0], {"kl": 0.5, "step_accepted": 1.0}, nonfinite)
    record = iteration_record(3, 2.0, 30, result)
    assert record["nonfinite"] == float(nonfinite)
    assert list(record)[-3:] == ["kl", "step_accepted", "nonfinite"]
    assert (record["return_before"], record["return_after"]) == (1.0, 2.0)


def test_nonfinite_is_a_required_field() -> None:
    with pytest.raises(TypeError):
        fastadapt.Iteration(10, [1.0], {})  # type: ignore[call-arg]


@pytest.mark.parametrize(("algorithm", "env"), [
    ("maml-trpo", "Bandit"), ("meta-sgd", "Bandit"), ("rl2", "Bandit"), ("pearl", "Navigation2D"),
    ("finetune", "Bandit"), ("random-init", "Bandit")])
def test_the_built_in_algorithms_keep_their_update_in_learner(algorithm: str, env: str
                                                              ) -> None:
    config = resolve(TrainConfig(algorithm=algorithm, env=EnvConfig(name=env)))
    built = build_algorithm(config, torch.device("cpu"))
    learner = built.learner  # type: ignore[attr-defined]
    assert callable(learner.state_dict) and callable(learner.load_state_dict)
    built.load_state_dict(built.state_dict())


def test_learners_share_the_state_dict_names() -> None:
    for learner in (RL2PPO, PEARLLearner):
        assert hasattr(learner, "state_dict") and hasattr(learner, "load_state_dict")
    assert not hasattr(RL2PPO, "state_tensors") and not hasattr(RL2PPO, "current_params")


def test_the_toolkit_re_exports_the_definitions() -> None:
    expected = {"adapt", "adapt_steps", "collect_meta_batch", "expand_to_tasks",
                "masked_task_mean", "per_task_output", "adam_state_tensors", "load_adam_state",
                "MAMLConfig", "InnerStepConfig"}
    assert expected <= set(toolkit.__all__)
    for name in toolkit.__all__:
        value = getattr(toolkit, name)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("fastadapt."):
            assert getattr(importlib.import_module(module), name) is value, name
    assert torch.equal(toolkit.masked_task_mean(torch.ones(2, 1, 3), torch.ones(2, 1, 3)),
                       torch.tensor(1.0))
