"""The run-directory format of fastadapt 0.1.0 (format 1), read by this release.

0.1.0 saved every algorithm's section in a run's ``config.yaml`` (``maml:`` and ``trpo:``
apart, ``ppo:`` beside ``rl2:``), so its configs are recognised by those sections and converted
to this release's layout; the conversion knows 0.1.0's algorithm names, which is why it is the
one module outside the algorithms that reads them. Its checkpoints are converted where they are
read (:mod:`fastadapt.run.rundir`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECTIONS_0_1 = ("maml", "trpo", "maml_vpg", "maml_ppo", "promp", "meta_sgd", "rl2", "ppo",
                "finetune")
"""The sections every config saved by fastadapt 0.1.0 holds, whatever its algorithm."""
_COMMON = ("env", "policy", "run", "evaluate")


def is_0_1_config(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is a config saved by fastadapt 0.1.0 (it holds all of
    :data:`SECTIONS_0_1`)."""
    return all(key in data for key in SECTIONS_0_1)


def migrate_0_1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config saved by fastadapt 0.1.0 (every algorithm's section, ``maml:`` and ``trpo:``
    apart) in this release's layout: only the run's algorithm's section, holding its
    optimizer's, ``meta_batch_size`` renamed ``tasks_per_iteration``; an RL² run's ``policy:``
    keeps only ``init_std``, the one key 0.1.0's RL² read (it now refuses the others)."""
    algorithm = data.get("algorithm", "maml-trpo")
    maml = dict(data.get("maml", {}))
    if "meta_batch_size" in maml:
        maml["tasks_per_iteration"] = maml.pop("meta_batch_size")
    sections: dict[str, tuple[str, dict[str, Any]]] = {
        "maml-trpo": ("maml-trpo", {**maml, "trpo": data.get("trpo", {})}),
        "maml-vpg": ("maml-vpg", {**maml, **data.get("maml_vpg", {})}),
        "maml-ppo": ("maml-ppo", {**maml, **data.get("maml_ppo", {})}),
        "promp": ("promp", {**maml, **data.get("promp", {})}),
        "meta-sgd": ("meta-sgd", {**maml, **data.get("meta_sgd", {})}),
        "rl2": ("rl2", {**data.get("rl2", {}), "ppo": data.get("ppo", {})}),
    }
    finetune = ("finetune", {**data.get("finetune", {}), "trpo": data.get("trpo", {})})
    key, section = sections.get(algorithm, finetune)
    migrated = {name: data[name] for name in ("algorithm", *_COMMON) if name in data}
    migrated[key] = section
    if algorithm == "rl2" and isinstance(data.get("policy"), Mapping):
        migrated["policy"] = {k: v for k, v in data["policy"].items() if k == "init_std"}
    return migrated
