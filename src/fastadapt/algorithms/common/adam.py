"""Adam's state as named tensors for checkpoints (safetensors, no pickle).

Each leaf's moments and step count are saved as ``adam/<leaf name>/<key>`` (``exp_avg``,
``exp_avg_sq``, ``step``), so a resumed run continues bit-identically.
"""

from __future__ import annotations

import torch
from torch import Tensor

PREFIX = "adam/"


def adam_state_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, Tensor]:
    """``optimizer``'s per-leaf state named ``adam/<name>/<key>``; ``names`` are its leaves'
    names in the order it holds them (leaves without state yet are skipped)."""
    tensors: dict[str, Tensor] = {}
    state = optimizer.state_dict()["state"]
    for index, name in enumerate(names):
        for key, value in state.get(index, {}).items():
            tensors[f"{PREFIX}{name}/{key}"] = torch.as_tensor(value).clone()
    return tensors


def load_adam_state(optimizer: torch.optim.Optimizer, names: list[str],
                    tensors: dict[str, Tensor]) -> None:
    """Restore what :func:`adam_state_tensors` saved (moved to each leaf's device)."""
    state: dict[int, dict[str, Tensor]] = {}
    for index, name in enumerate(names):
        prefix = f"{PREFIX}{name}/"
        entry = {k[len(prefix):]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}
        if entry:
            state[index] = entry
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
