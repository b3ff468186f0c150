"""Record the golden outputs of fastadapt 0.1.0 (commit 423affc), before the one-core refactor.

For every committed config (and the oracle / random-init variants of the transfer configs):
a 2-iteration ``fastadapt train`` at tiny sizes, then a tiny ``fastadapt evaluate``. Kept per
run: the final ``policy.safetensors``, ``metrics.jsonl`` without its timings and
``evaluation.json``. ``tests/test_golden.py`` reruns the same with the current code and asks
for the same bits. This script speaks 0.1.0's config keys; it is kept to show how the files
were made (``python tests/data/golden/record_0_1_0.py`` at that commit).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from fastadapt.cli import main

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).resolve().parent
TINY = ("maml.meta_batch_size=2", "maml.episodes_per_task=2", "finetune.tasks_per_iteration=2",
        "finetune.episodes_per_task=2", "policy.hidden_sizes=[8]", "run.tensorboard=false",
        "run.num_threads=1", "env.horizon=5")
TINY_RL2 = ("rl2.tasks_per_iteration=2", "rl2.trials_per_task=2", "rl2.hidden_size=8",
            "ppo.minibatches=1")
TIMINGS = ("seconds", "env_steps_per_second")


def fingerprint() -> dict[str, str]:
    """What decides the bits besides the code: library versions and the CPU's kernels."""
    vendor = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    return {"torch": torch.__version__, "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_vendor": vendor,
            "machine": platform.machine()}


def cases() -> list[tuple[str, str]]:
    """``(name, config)`` of every golden run."""
    found = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        config = path.relative_to(ROOT / "configs").with_suffix("").as_posix()
        found.append((config, config))
        if config.startswith("finetune/"):
            found += [(f"{config}+{variant}", config) for variant in ("oracle", "random-init")]
    return found


def record(name: str, config: str, work: Path) -> None:
    path = ROOT / "configs" / f"{config}.yaml"
    algorithm = yaml.safe_load(path.read_text())["algorithm"]
    overrides = [*TINY, *(TINY_RL2 if algorithm == "rl2" else ())]
    if "+" in name:
        overrides.append(f"algorithm={name.split('+')[1]}")
    run = work / name.replace("/", "__")
    args = ["train", str(path), "--run-dir", str(run), "--iterations", "2", "--quiet",
            *(f"--set={o}" for o in overrides)]
    assert main(args) == 0, name
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                 "--adaptation-steps", "1"]) == 0, name
    stem = OUT / name.replace("/", "__")
    shutil.copy(run / "policy.safetensors", stem.with_suffix(".safetensors"))
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluation = json.loads((run / "evaluation.json").read_text())
    stem.with_suffix(".json").write_text(json.dumps(
        {"config": config, "fingerprint": fingerprint(), "metrics": metrics,
         "evaluation": evaluation}, indent=1) + "\n")


if __name__ == "__main__":
    wanted = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in cases():
            if not wanted or name in wanted:
                record(name, config, Path(tmp))
                print("recorded", name)
