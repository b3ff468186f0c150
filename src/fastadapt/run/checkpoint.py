"""Checkpoints as safetensors + JSON, written atomically, never pickled.

A checkpoint of iteration ``i`` is a pair of files in the run's checkpoint directory:

- ``iter_{i:06d}.safetensors``: the tensors (parameters, optimizer state), on the CPU;
- ``iter_{i:06d}.json``: the caller's metadata plus ``iteration`` and the ``sha256`` of the
  safetensors file. It is written last and is the commit marker: a checkpoint whose JSON is
  missing or unreadable does not exist, so a crash mid-save leaves the previous one in use.

Every file is written to a temporary file in the same directory, flushed and fsync'ed, then
renamed over the target with :func:`os.replace`, and the directory is fsync'ed. Loading reads
with :mod:`safetensors` (``torch.load`` and its pickle are never used) and turns every problem
into a one-line :class:`~fastadapt.errors.CheckpointError` naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from fastadapt.errors import CheckpointError, StorageError
from fastadapt.files import (
    JSON_MAX_BYTES,
    LEFTOVER,
    atomic_write,
    memory_limit,
    read_file,
    remove_leftovers,
)

__all__ = [
    "LEFTOVER",
    "atomic_write",
    "check_checkpoint_files",
    "latest_checkpoint",
    "load_checkpoint",
    "load_tensors",
    "remove_leftovers",
    "save_checkpoint",
    "save_tensors",
]

_CHECKPOINT_NAME = re.compile(r"^iter_(\d{6,})\.(json|safetensors)$")
_RESERVED_KEYS = ("iteration", "sha256")
_DESERIALISE_ERRORS = (safetensors.SafetensorError, ValueError, KeyError, RuntimeError)


# --------------------------------------------------------------------------- reading


def _read_bytes(path: Path, what: str, max_bytes: int | None = None) -> bytes:
    """A checkpoint's or a tensor file's bytes (at most ``max_bytes``; default: what the
    memory allows), one line naming the file if it cannot be read."""
    return read_file(path, f"cannot load {what}", memory_limit() if max_bytes is None
                     else max_bytes)


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# --------------------------------------------------------------------------- tensor files


def _serialise(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> bytes:
    """The safetensors bytes of ``tensors``, the same bytes for the same content: safetensors
    writes ``__metadata__`` in a hash map's order, which differs between processes, so the
    header is rewritten with its keys sorted (same JSON, same length)."""
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    data = safetensors.torch.save(cpu, metadata=meta)
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"))
    canonical = header.encode("utf-8")
    if len(canonical) > size:  # pragma: no cover - the same JSON is never longer
        return data
    return data[:8] + canonical.ljust(size, b" ") + data[8 + size :]


def _deserialise(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the safetensors ``__metadata__`` of a file's bytes."""
    try:
        tensors = safetensors.torch.load(data)
    except _DESERIALISE_ERRORS as err:
        raise CheckpointError(f"cannot load tensors {path}: {_one_line(err)}") from err
    # The header was validated by ``load``: 8-byte little-endian size, then JSON.
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    meta = header.get("__metadata__") or {}
    return tensors, dict(meta)


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None
) -> Path:
    """Write tensors to one safetensors file, atomically (e.g. the final ``policy.safetensors``).

    Args:
        path: the file to write; missing parent directories are created.
        tensors: tensors by name; they are detached, moved to the CPU and made contiguous.
        meta: optional string metadata stored in the file's header.

    Returns:
        ``path``.
    """
    path = Path(path)
    _make_directory(path.parent, "tensors")
    atomic_write(path, _serialise(tensors, meta), "tensors")
    return path


def _make_directory(directory: Path, what: str) -> None:
    """``mkdir -p``, one line naming the directory if it fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError.of(err, f"the {what} directory {directory}") from err


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file written by :func:`save_tensors`.

    Args:
        path: the safetensors file.

    Returns:
        ``(tensors, meta)``: CPU tensors by name and the header's string metadata (``{}`` if
        there is none).

    Raises:
        CheckpointError: the file is missing, unreadable, truncated or not safetensors.
    """
    path = Path(path)
    return _deserialise(_read_bytes(path, "tensors"), path)


# --------------------------------------------------------------------------- checkpoints


def _stem(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def _iterations(directory: Path, suffix: str | None = None) -> list[int]:
    """Sorted iteration numbers of the checkpoint files in ``directory``."""
    found: set[int] = set()
    for entry in directory.iterdir():
        match = _CHECKPOINT_NAME.match(entry.name)
        if match and (suffix is None or match.group(2) == suffix):
            found.add(int(match.group(1)))
    return sorted(found)


def save_checkpoint(
    directory: Path,
    iteration: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write the checkpoint of ``iteration`` and delete the older ones beyond ``keep_last``.

    Args:
        directory: the checkpoint directory (created if missing).
        iteration: the iteration number, ``>= 0``; it names the files.
        tensors: tensors by name; stored detached, contiguous and on the CPU.
        meta: JSON-serialisable metadata (config, RNG seeds, counters). The keys
            ``"iteration"`` and ``"sha256"`` are set by this function.
        keep_last: how many checkpoints to keep, counting this one; older pairs (lower
            iteration numbers) are deleted. Checkpoints with higher numbers are never deleted.

    Returns:
        The path of the checkpoint's JSON file (accepted by :func:`load_checkpoint`).
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    directory = Path(directory)
    _make_directory(directory, "checkpoint")
    weights = directory / f"{_stem(iteration)}.safetensors"
    marker = weights.with_suffix(".json")

    data = _serialise(tensors, None)
    record = {**meta, "iteration": iteration, "sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps(record, indent=2, sort_keys=True)  # fails before any file is touched

    with contextlib.suppress(FileNotFoundError):
        marker.unlink()  # an old commit marker must not vouch for the new weights mid-write
    atomic_write(weights, data, "checkpoint")
    atomic_write(marker, (text + "\n").encode("utf-8"), "checkpoint")
    _prune(directory, iteration, keep_last)
    return marker


def _prune(directory: Path, iteration: int, keep_last: int) -> None:
    """Delete checkpoint pairs numbered below the ``keep_last`` newest up to ``iteration``."""
    older = [i for i in _iterations(directory) if i <= iteration]
    for stale in older[:-keep_last]:
        for suffix in (".json", ".safetensors"):  # the commit marker goes first
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{_stem(stale)}{suffix}").unlink()


def _read_record(marker: Path) -> dict[str, Any]:
    """The parsed JSON of a checkpoint; CheckpointError if it is missing or malformed."""
    text = _read_bytes(marker, "checkpoint", JSON_MAX_BYTES)
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"cannot load checkpoint {marker}: corrupt JSON ({err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise CheckpointError(f"cannot load checkpoint {marker}: no 'sha256' entry")
    return record


def check_checkpoint_files(directory: Path) -> None:
    """Refuse a checkpoint directory where an entry named like a checkpoint file is not a
    regular file (a directory, a FIFO): writing or pruning checkpoints would fail on it, or
    remove what is not a checkpoint, after the run directory was changed.

    Raises:
        CheckpointError: one line naming the entry.
    """
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        if _CHECKPOINT_NAME.match(entry.name) and not entry.is_file():
            raise CheckpointError(f"{entry} is not a regular file, so checkpoints cannot be "
                                  "written beside it: move it away (nothing was changed)")


def latest_checkpoint(directory: Path) -> Path | None:
    """The JSON path of the newest complete checkpoint in ``directory``.

    A checkpoint counts when its JSON parses and its safetensors file exists; a newer one
    that is half-written or corrupt is skipped in favour of the previous one.

    Args:
        directory: the checkpoint directory.

    Returns:
        The JSON path, or None if the directory is missing or holds no complete checkpoint.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for iteration in reversed(_iterations(directory, "json")):
        marker = directory / f"{_stem(iteration)}.json"
        try:
            _read_record(marker)
        except CheckpointError:
            continue
        if marker.with_suffix(".safetensors").is_file():
            return marker
    return None


def _marker_of(path: Path) -> Path:
    """The JSON path for a checkpoint given by its JSON, its safetensors file or its directory."""
    if path.is_dir():
        marker = latest_checkpoint(path)
        if marker is None:
            raise CheckpointError(f"no complete checkpoint in {path}")
        return marker
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix(".json")
    raise CheckpointError(f"not a checkpoint path (want .json or .safetensors): {path}")


def load_checkpoint(path_or_json: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its sha256.

    Args:
        path_or_json: the checkpoint's JSON or safetensors file, or a checkpoint directory
            (its :func:`latest_checkpoint` is read).

    Returns:
        ``(tensors, meta)``: CPU tensors by name, and the JSON record (the caller's metadata
        plus ``iteration`` and ``sha256``).

    Raises:
        CheckpointError: a file is missing, the JSON is corrupt, the tensors do not match the
            recorded sha256, or they cannot be deserialised.
    """
    marker = _marker_of(Path(path_or_json))
    record = _read_record(marker)
    weights = marker.with_suffix(".safetensors")
    data = _read_bytes(weights, "checkpoint")
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise CheckpointError(
            f"cannot load checkpoint {weights}: sha256 mismatch (file {digest[:12]}..., "
            f"{marker.name} says {record['sha256'][:12]}...); the file is corrupt or truncated"
        )
    tensors, _ = _deserialise(data, weights)
    return tensors, record
