"""Behaviour kept through the one-core refactor: a 2-iteration tiny run and a tiny evaluation of
every packaged config (and the oracle / random-init variants of the transfer configs) give the
golden outputs recorded with fastadapt 0.1.0 (``tests/data/golden/record_0_1_0.py``), bit for
bit: the final parameters, every metric but the timings, and ``evaluation.json``.

RL²'s goldens were re-recorded once before the refactor, when its trials moved to the per-task
random streams of every sampler (same settings, other random numbers).

Bits depend on the CPU's kernels (MKL and ATen pick code paths by instruction set and vendor),
so on a machine whose fingerprint differs from the recording's the values are compared to a
tight tolerance instead, and the test says so in its output.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fastadapt.cli import main
from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.config_loading import load_train_config, packaged_config_names

GOLDEN = Path(__file__).parent / "data" / "golden"
TIMINGS = ("seconds", "env_steps_per_second")
ADDED_KEYS = {"adapts_by", "policy_sha256"}
"""Keys ``evaluation.json`` gained after the goldens were recorded."""


def fingerprint() -> dict[str, str]:
    """What decides the bits besides the code (as ``record_0_1_0.py`` records it)."""
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
    """``(golden name, packaged config)`` of every golden run: the packaged configs that
    0.1.0 had (configs added later, e.g. PEARL's, have no 0.1.0 behaviour to keep)."""
    found = []
    for config in packaged_config_names():
        found.append((config, config))
        if config.startswith("finetune/"):
            found += [(f"{config}+{variant}", config) for variant in ("oracle", "random-init")]
    return [(name, config) for name, config in found
            if (GOLDEN / name.replace("/", "__")).with_suffix(".json").exists()]


def test_every_recorded_config_is_still_packaged() -> None:
    recorded = {path.stem for path in GOLDEN.glob("*.json")}
    assert len(recorded) == 36
    assert recorded == {name.replace("/", "__") for name, _ in cases()}


def tiny(config: str, variant: str | None) -> list[str]:
    """The overrides of the recording (``record_0_1_0.py``), in this release's keys."""
    loaded = load_train_config(config)
    section = loaded.section.section
    overrides = [f"{section}.tasks_per_iteration=2", "run.tensorboard=false",
                 "run.num_threads=1", "env.horizon=5"]
    if section == "rl2":  # (0.1.0 ignored the policy's hidden_sizes for RL²; now refused)
        overrides += ["rl2.trials_per_task=2", "rl2.hidden_size=8", "rl2.ppo.minibatches=1"]
    else:
        overrides += [f"{section}.episodes_per_task=2", "policy.hidden_sizes=[8]"]
    if variant is not None:
        overrides.append(f"algorithm={variant}")
    return [f"--set={o}" for o in overrides]


def _compare(expected: Any, got: Any, exact: bool, where: str) -> None:
    if isinstance(expected, dict):
        assert set(got) - ADDED_KEYS == set(expected), where
        for key, value in expected.items():
            _compare(value, got[key], exact, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            _compare(a, b, exact, f"{where}[{i}]")
    elif isinstance(expected, float) and not exact:
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6, nan_ok=True), where
    else:
        assert got == expected or (expected != expected and got != got), where  # NaN == NaN


@pytest.mark.parametrize(("name", "config"), cases(), ids=[name for name, _ in cases()])
def test_run_reproduces_the_golden_outputs(tmp_path: Path, name: str, config: str) -> None:
    if "metaworld" in config:
        pytest.importorskip("metaworld", reason="needs the metaworld extra")
    stem = GOLDEN / name.replace("/", "__")
    golden = json.loads(stem.with_suffix(".json").read_text())
    exact = golden["fingerprint"] == fingerprint()
    if not exact:
        print(f"golden {name}: recorded on {golden['fingerprint']}, this machine is "
              f"{fingerprint()}: compared to a tolerance, not bit for bit")
    run = tmp_path / "run"
    variant = name.split("+")[1] if "+" in name else None
    assert main(["train", config, "--run-dir", str(run), "--iterations", "2", "--quiet",
                 *tiny(config, variant)]) == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                 "--adaptation-steps", "1"]) == 0
    expected, _ = load_tensors(stem.with_suffix(".safetensors"))
    final, _ = load_tensors(run / "policy.safetensors")
    assert set(final) == set(expected)
    for key, value in expected.items():
        if exact:
            assert torch.equal(final[key], value), key
        else:
            torch.testing.assert_close(final[key], value, rtol=1e-4, atol=1e-5, msg=key)
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    _compare(golden["metrics"], metrics, exact, "metrics")
    _compare(golden["evaluation"], json.loads((run / "evaluation.json").read_text()), exact,
             "evaluation")
