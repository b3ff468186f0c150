"""The names of a sweep's run directories (``fastadapt sweep``): ``NAME-seedK``, where
``NAME`` is the config and the grid point; its seeds form the group ``NAME`` (pooled by
``fastadapt report``, grouped in W&B)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["run_group", "seed_run_name"]


def seed_run_name(group: str, seed: int) -> str:
    """``<group>-seed<seed>``."""
    return f"{group}-seed{seed}"


def run_group(run_dir: Path) -> str | None:
    """The group of a sweep's run ``NAME-seedK`` (``NAME``); other runs have none."""
    match = re.fullmatch(r"(.+)-seed\d+", run_dir.name)
    return match.group(1) if match else None
