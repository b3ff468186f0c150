"""``run.device``: where the learner's tensors live."""

from __future__ import annotations

import torch

from fastadapt.errors import ConfigError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str) -> torch.device:
    """The torch device ``run.device`` names.

    Args:
        spec: ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or ``auto`` (CUDA if available, else
            MPS, else the CPU).

    Raises:
        ConfigError: not a device, or one this machine does not have (one line).
    """
    name = spec.strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"run.device {spec!r} is not a device: use cpu, cuda, cuda:N, mps "
                          "or auto") from err
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"run.device {spec!r} is not supported: use cpu, cuda, cuda:N, mps "
                          "or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device {spec!r} needs CUDA, which this machine or torch "
                              "build does not have: use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"run.device {spec!r}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"run.device {spec!r} needs Apple's MPS, which this machine does not "
                          "have: use cpu (or auto)")
    return device
