"""Every YAML under ``configs/`` is valid and runs: one tiny iteration of ``fastadapt train``
(sizes shrunk by overrides every config accepts) and a tiny ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastadapt.cli import main
from fastadapt.run.config import load_config
from fastadapt.run.schema import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
_TINY = ("maml.meta_batch_size=2", "maml.episodes_per_task=2",
         "finetune.tasks_per_iteration=2", "finetune.episodes_per_task=2",
         "policy.hidden_sizes=[8]", "run.tensorboard=false", "run.num_threads=1")
_TINY_RL2 = ("rl2.tasks_per_iteration=2", "rl2.trials_per_task=2", "rl2.hidden_size=8",
             "ppo.minibatches=1")  # a new run of another algorithm refuses rl2: and ppo:


def tiny(config: str) -> list[str]:
    """Overrides that shrink ``config`` to a seconds-long run."""
    rl2 = load_config(TrainConfig, ROOT / config).algorithm == "rl2"
    return [f"--set={override}" for override in (*_TINY, *(_TINY_RL2 if rl2 else ()))]


def test_every_family_of_configs_is_covered() -> None:
    algorithms = {load_config(TrainConfig, ROOT / c).algorithm for c in CONFIGS}
    assert {"maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd", "rl2",
            "finetune"} <= algorithms


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_one_tiny_iteration_and_evaluates(tmp_path: Path, config: str) -> None:
    if "metaworld" in config:
        pytest.importorskip("metaworld", reason="needs the metaworld extra")
    run = tmp_path / "run"
    horizon = "--set=env.horizon=5"
    code = main(["train", str(ROOT / config), "--run-dir", str(run), "--iterations", "1",
                 "--quiet", horizon, *tiny(config)])
    assert code == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                 "--adaptation-steps", "1"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["algorithm"] == load_config(TrainConfig, ROOT / config).algorithm


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("configs/finetune/")])
def test_oracle_and_random_init_run_on_every_finetune_family(tmp_path: Path, config: str) -> None:
    """The reference points of every transfer config (the tabular oracle's 560-dim
    observation once broke the linear baseline's solver: 1,124 features, 10 samples)."""
    for algorithm in ("oracle", "random-init"):
        run = tmp_path / algorithm
        assert main(["train", str(ROOT / config), "--run-dir", str(run), "--iterations", "1",
                     "--quiet", "--set=env.horizon=5", f"--set=algorithm={algorithm}",
                     *tiny(config)]) == 0
        assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                     "--adaptation-steps", "1"]) == 0
