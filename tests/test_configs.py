"""Every packaged config (``src/fastadapt/configs``, e.g. ``maml-trpo/2d-navigation``) is valid
and runs: one tiny iteration of ``fastadapt train`` (sizes shrunk by overrides of the config's
own section) and a tiny ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastadapt.cli import main
from fastadapt.run.config_loading import load_train_config, packaged_config_names

CONFIGS = packaged_config_names()
_TINY = ("run.tensorboard=false", "run.num_threads=1")
_TINY_SECTION = ("tasks_per_iteration=2", "episodes_per_task=2")  # MAML family and finetune
_TINY_MLP = ("policy.hidden_sizes=[8]",)  # RL² refuses policy.hidden_sizes (it never read it)
_TINY_RL2 = ("rl2.tasks_per_iteration=2", "rl2.trials_per_task=2", "rl2.hidden_size=8",
             "rl2.ppo.minibatches=1")
_TINY_PEARL = ("pearl.train_tasks=3", "pearl.tasks_per_iteration=2", "pearl.tasks_per_step=2",
               "pearl.initial_episodes=1", "pearl.gradient_steps=2", "pearl.batch_transitions=8",
               "pearl.context_transitions=4", "pearl.hidden_sizes=[8]",
               "pearl.encoder_hidden_sizes=[8]")


def tiny(config: str) -> list[str]:
    """Overrides that shrink ``config`` to a seconds-long run."""
    loaded = load_train_config(config)
    if loaded.algorithm == "rl2":
        overrides = (*_TINY, *_TINY_RL2)
    elif loaded.algorithm == "pearl":
        overrides = (*_TINY, *_TINY_PEARL)
    else:
        section = loaded.section.section
        overrides = (*_TINY, *(f"{section}.{key}" for key in _TINY_SECTION), *_TINY_MLP)
    return [f"--set={override}" for override in overrides]


def test_every_family_of_configs_is_covered() -> None:
    algorithms = {load_train_config(c).algorithm for c in CONFIGS}
    assert {"maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd", "rl2",
            "finetune", "pearl"} <= algorithms


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_one_tiny_iteration_and_evaluates(tmp_path: Path, config: str) -> None:
    if "metaworld" in config:
        pytest.importorskip("metaworld", reason="needs the metaworld extra")
    run = tmp_path / "run"
    horizon = "--set=env.horizon=5"
    code = main(["train", config, "--run-dir", str(run), "--iterations", "1",
                 "--quiet", horizon, *tiny(config)])
    assert code == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                 "--adaptation-steps", "1"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["algorithm"] == load_train_config(config).algorithm


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("finetune/")])
def test_oracle_and_random_init_run_on_every_finetune_family(tmp_path: Path, config: str) -> None:
    """The reference points of every transfer config (the tabular oracle's 560-dim
    observation once broke the linear baseline's solver: 1,124 features, 10 samples)."""
    for algorithm in ("oracle", "random-init"):
        run = tmp_path / algorithm
        assert main(["train", config, "--run-dir", str(run), "--iterations", "1",
                     "--quiet", "--set=env.horizon=5", f"--set=algorithm={algorithm}",
                     *tiny(config)]) == 0
        assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                     "--adaptation-steps", "1"]) == 0
