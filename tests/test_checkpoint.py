"""Tests of fastadapt.run.checkpoint: atomic safetensors + JSON checkpoints, corruption."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from fastadapt.errors import CheckpointError, StorageError
from fastadapt.run.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
    save_tensors,
)


def _tensors(value: float = 0.0) -> dict[str, torch.Tensor]:
    return {
        "layer0.weight": torch.full((4, 3), value),
        "layer0.bias": torch.arange(4, dtype=torch.float64) + value,
        "steps": torch.tensor([7], dtype=torch.int64),
        "transposed": torch.arange(6.0).reshape(2, 3).t(),  # not contiguous
    }


def _assert_same(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name


def _names(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


# --------------------------------------------------------------------------- round trips


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    meta: dict[str, Any] = {"config": {"seed": 1, "sizes": [64, 64]}, "env_steps": 1000}
    marker = save_checkpoint(tmp_path, 12, _tensors(1.5), meta)
    assert marker == tmp_path / "iter_000012.json"
    assert _names(tmp_path) == ["iter_000012.json", "iter_000012.safetensors"]
    for path in (marker, marker.with_suffix(".safetensors"), tmp_path):
        tensors, record = load_checkpoint(path)
        _assert_same(tensors, _tensors(1.5))
        assert record["iteration"] == 12 and record["config"] == meta["config"]
        assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    assert "iteration" not in meta  # the caller's dict is not modified


def test_checkpoint_requires_grad_tensor_is_saved_detached(tmp_path: Path) -> None:
    weight = torch.ones(2, 2, requires_grad=True)
    save_checkpoint(tmp_path, 0, {"w": weight * 2}, {})
    tensors, _ = load_checkpoint(tmp_path / "iter_000000.json")
    assert torch.equal(tensors["w"], torch.full((2, 2), 2.0)) and not tensors["w"].requires_grad


def test_resaving_same_iteration_overwrites(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 3, _tensors(0.0), {"v": 0})
    save_checkpoint(tmp_path, 3, _tensors(9.0), {"v": 1})
    tensors, record = load_checkpoint(tmp_path / "iter_000003.json")
    _assert_same(tensors, _tensors(9.0))
    assert record["v"] == 1


def test_tensors_round_trip_with_meta(tmp_path: Path) -> None:
    path = save_tensors(tmp_path / "final" / "policy.safetensors", _tensors(2.0), {"env": "nav"})
    assert path == tmp_path / "final" / "policy.safetensors"
    tensors, meta = load_tensors(path)
    _assert_same(tensors, _tensors(2.0))
    assert meta == {"env": "nav"}
    save_tensors(path, {"x": torch.zeros(1)})
    assert load_tensors(path)[1] == {}


# --------------------------------------------------------------------------- pruning, latest


def test_keep_last_prunes_older_pairs(tmp_path: Path) -> None:
    for iteration in range(5):
        save_checkpoint(tmp_path, iteration, _tensors(float(iteration)), {}, keep_last=2)
    assert _names(tmp_path) == [
        "iter_000003.json",
        "iter_000003.safetensors",
        "iter_000004.json",
        "iter_000004.safetensors",
    ]
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_000004.json"


def test_saving_an_older_iteration_never_deletes_it_or_newer_ones(tmp_path: Path) -> None:
    for iteration in (10, 11):
        save_checkpoint(tmp_path, iteration, _tensors(), {}, keep_last=1)
    save_checkpoint(tmp_path, 5, _tensors(), {}, keep_last=1)
    assert [n for n in _names(tmp_path) if n.endswith(".json")] == [
        "iter_000005.json",
        "iter_000011.json",
    ]


def test_latest_checkpoint_of_missing_or_empty_directory(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "iter_000001.safetensors").write_bytes(b"uncommitted")  # no JSON yet
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError, match="no complete checkpoint in"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("newest_json", ["", '{"iteration": 2, "sha2', "[1, 2]", "\xff"])
def test_corrupt_newest_json_falls_back_to_previous(tmp_path: Path, newest_json: str) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1.0), {})
    save_checkpoint(tmp_path, 2, _tensors(2.0), {})
    (tmp_path / "iter_000002.json").write_bytes(newest_json.encode("latin-1"))
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_000001.json"
    tensors, _ = load_checkpoint(tmp_path)
    _assert_same(tensors, _tensors(1.0))
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {tmp_path}")):
        load_checkpoint(tmp_path / "iter_000002.json")


def test_newest_without_weights_is_skipped(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _tensors(), {})
    save_checkpoint(tmp_path, 2, _tensors(), {})
    (tmp_path / "iter_000002.safetensors").unlink()
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_000001.json"


# --------------------------------------------------------------------------- corruption


def test_truncated_checkpoint_fails_hash_check(tmp_path: Path) -> None:
    marker = save_checkpoint(tmp_path, 1, _tensors(), {})
    weights = marker.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(marker)
    message = str(info.value)
    assert message.startswith(f"cannot load checkpoint {weights}: sha256 mismatch")
    assert "\n" not in message


def test_random_bytes_checkpoint_fails(tmp_path: Path) -> None:
    marker = save_checkpoint(tmp_path, 1, _tensors(), {})
    marker.with_suffix(".safetensors").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(marker)


def test_matching_hash_of_garbage_still_fails_to_deserialise(tmp_path: Path) -> None:
    marker = save_checkpoint(tmp_path, 1, _tensors(), {})
    garbage = os.urandom(64)
    marker.with_suffix(".safetensors").write_bytes(garbage)
    record = json.loads(marker.read_text())
    record["sha256"] = hashlib.sha256(garbage).hexdigest()
    marker.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"^cannot load tensors .*iter_000001\.safetensors: "):
        load_checkpoint(marker)


def test_missing_files_and_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"iter_000009\.json: file not found$"):
        load_checkpoint(tmp_path / "iter_000009.json")
    marker = save_checkpoint(tmp_path, 1, _tensors(), {})
    marker.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"iter_000001\.safetensors: file not found$"):
        load_checkpoint(marker)
    with pytest.raises(CheckpointError, match="not a checkpoint path"):
        load_checkpoint(tmp_path / "model.pt")


def test_json_without_hash_is_rejected(tmp_path: Path) -> None:
    marker = save_checkpoint(tmp_path, 1, _tensors(), {})
    marker.write_text('{"iteration": 1}')
    with pytest.raises(CheckpointError, match="no 'sha256' entry"):
        load_checkpoint(marker)


@pytest.mark.parametrize("cut", ["truncated", "random", "empty"])
def test_load_tensors_corrupt_file(tmp_path: Path, cut: str) -> None:
    path = save_tensors(tmp_path / "policy.safetensors", _tensors())
    data = path.read_bytes()
    corrupt = {"truncated": data[: len(data) // 2], "random": os.urandom(200), "empty": b""}[cut]
    path.write_bytes(corrupt)
    with pytest.raises(CheckpointError) as info:
        load_tensors(path)
    assert str(info.value).startswith(f"cannot load tensors {path}: ")
    assert "\n" not in str(info.value)


def test_load_tensors_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.safetensors"
    with pytest.raises(CheckpointError, match=f"^cannot load tensors {re.escape(str(path))}: file"):
        load_tensors(path)


# --------------------------------------------------------------------------- atomicity


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    for iteration in range(4):
        save_checkpoint(tmp_path, iteration, _tensors(), {"i": iteration}, keep_last=2)
    save_tensors(tmp_path / "policy.safetensors", _tensors())
    assert not [name for name in _names(tmp_path) if name.startswith(".") or "tmp" in name]


def test_failed_write_keeps_previous_checkpoint_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1.0), {})
    before = _names(tmp_path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=r"cannot write the checkpoint file .*"
                                           r"iter_000002\.safetensors: disk full"):
        save_checkpoint(tmp_path, 2, _tensors(2.0), {})
    monkeypatch.undo()
    assert _names(tmp_path) == before
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_000001.json"
    _assert_same(load_checkpoint(tmp_path)[0], _tensors(1.0))


def test_unserialisable_meta_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, 1, _tensors(), {"bad": object()})
    assert _names(tmp_path) == []


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="iteration"):
        save_checkpoint(tmp_path, -1, _tensors(), {})
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, 1, _tensors(), {}, keep_last=0)
