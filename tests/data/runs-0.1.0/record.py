"""Make the run directories of fastadapt 0.1.0 (commit 423affc) that ``tests/test_run_format.py``
evaluates and resumes with the current code.

Each ``<name>/`` is a 2-iteration run at tiny sizes (a checkpoint after every iteration) with
its ``evaluation.json``; ``<name>.straight3.safetensors`` holds the final parameters of the same
run trained straight to 3 iterations, what resuming ``<name>/`` to 3 must give. This script
speaks 0.1.0's config keys; it is kept to show how the files were made.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastadapt.cli import main

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).resolve().parent
COMMON = ("policy.hidden_sizes=[8]", "run.tensorboard=false", "run.num_threads=1",
          "env.horizon=5", "run.checkpoint_every=1", "run.keep_checkpoints=2")
RUNS = {
    "maml-trpo": ("configs/maml-trpo/2d-navigation.yaml",
                  ("maml.meta_batch_size=2", "maml.episodes_per_task=2")),
    "meta-sgd": ("configs/meta-sgd/bandit-k5.yaml",
                 ("maml.meta_batch_size=2", "maml.episodes_per_task=2")),
    "finetune": ("configs/finetune/2d-navigation.yaml",
                 ("finetune.tasks_per_iteration=2", "finetune.episodes_per_task=2")),
    "rl2": ("configs/rl2/bandit-k5.yaml",
            ("rl2.tasks_per_iteration=2", "rl2.trials_per_task=2", "rl2.hidden_size=8",
             "ppo.minibatches=1")),
}


def train(config: str, overrides: tuple[str, ...], run: Path, iterations: int) -> None:
    args = ["train", str(ROOT / config), "--run-dir", str(run), "--iterations",
            str(iterations), "--quiet", *(f"--set={o}" for o in (*COMMON, *overrides))]
    assert main(args) == 0, run


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, overrides) in RUNS.items():
            run = OUT / name
            shutil.rmtree(run, ignore_errors=True)
            train(config, overrides, run, 2)
            assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                         "--adaptation-steps", "1"]) == 0
            (run / "report.png").unlink(missing_ok=True)
            straight = Path(tmp) / name
            train(config, overrides, straight, 3)
            shutil.copy(straight / "policy.safetensors", OUT / f"{name}.straight3.safetensors")
