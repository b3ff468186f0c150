"""Configs hold what the run reads: one algorithm section beside env, policy, run and evaluate;
one name per concept; keys this release renamed fail with one line naming the new key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastadapt.cli import main
from fastadapt.errors import ConfigError
from fastadapt.run.config_loading import (
    load_train_config,
    packaged_config_names,
    train_config_from_dict,
    train_config_to_dict,
)
from fastadapt.run.rundir import save_run_config

COMMON = {"format", "algorithm", "env", "policy", "run", "evaluate"}


@pytest.mark.parametrize("name", packaged_config_names())
def test_a_saved_config_holds_only_its_algorithms_section_and_reads_back(name: str,
                                                                         tmp_path: Path) -> None:
    if "metaworld" in name:
        pytest.importorskip("metaworld", reason="needs the metaworld extra")
    config = load_train_config(name)
    save_run_config(config, tmp_path)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved) == COMMON | {config.section.section}
    assert saved["format"] == 2
    assert load_train_config(tmp_path / "config.yaml") == config
    assert train_config_from_dict(train_config_to_dict(config)) == config


def test_one_name_per_concept() -> None:
    """Tasks per iteration and episodes per task have one name in every section."""
    sections = {load_train_config(name).section for name in packaged_config_names()}
    for section in sections:
        assert hasattr(section, "tasks_per_iteration")
        fields = set(vars(section))
        assert not fields & {"meta_batch_size", "num_tasks", "batch_size"}, section


@pytest.mark.parametrize(("data", "expected"), [
    ({"algorithm": "maml-trpo", "maml": {"inner_lr": 0.2}},
     "config section 'maml' was renamed: its keys now go under the algorithm's own section "
     "'maml-trpo:' (maml.meta_batch_size is maml-trpo.tasks_per_iteration)"),
    ({"algorithm": "maml-trpo", "maml-trpo": {"meta_batch_size": 10}},
     "config key 'maml-trpo.meta_batch_size' was renamed: 'maml-trpo.tasks_per_iteration'"),
    ({"algorithm": "maml-trpo", "trpo": {"max_kl": 0.02}},
     "config section 'trpo' moved into the algorithm's section: 'maml-trpo.trpo'"),
    ({"algorithm": "rl2", "ppo": {"epochs": 2}},
     "config section 'ppo' moved into the algorithm's section: 'rl2.ppo'"),
    ({"algorithm": "maml-vpg", "maml_vpg": {"learning_rate": 0.01}},
     "config section 'maml_vpg' was renamed: 'maml-vpg'"),
    ({"algorithm": "maml-trpo", "rl2": {"hidden_size": 8}},
     "config section 'rl2' is read by rl2, not by algorithm 'maml-trpo', whose section is "
     "'maml-trpo'"),
    ({"algorithm": "oracle", "finetune": {"inner_lr": 0.0}},
     "finetune.inner_lr must be > 0, got 0.0"),
    ({"algorithm": "maml-trpo", "maml-trpo": {"trpo": {"max_kl": -1}}},
     "maml-trpo.trpo.max_kl must be > 0, got -1"),
    ({"algorithm": "rl2", "policy": {"hidden_sizes": [8]}},
     "policy.hidden_sizes is not read by rl2"),
    ({"algorithm": "maml-trpo", "plugins": "mine"},
     "config key 'plugins' must be a list of module names"),
    ({"algorithm": "maml-trpo", "nonsense": 1},
     "unknown config key 'nonsense'; valid keys: algorithm, plugins, env, policy, run, "
     "evaluate, maml-trpo"),
])
def test_a_wrong_or_renamed_key_is_one_line_naming_the_new_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, object],
        expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not run.exists()


def test_an_override_of_a_renamed_key_is_one_line(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(tmp_path / "run"),
                 "--set", "maml.meta_batch_size=4"]) == 2
    assert "config section 'maml' was renamed" in capsys.readouterr().err


def test_packaged_configs_are_found_by_name_from_any_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.chdir(tmp_path)
    assert "maml-trpo/2d-navigation" in packaged_config_names()
    assert load_train_config("rl2/bandit-k5").algorithm == "rl2"
    assert load_train_config("rl2/bandit-k5.yaml").algorithm == "rl2"
    with pytest.raises(ConfigError, match="config not found: rl2/bandit-k7 is neither a file nor "
                                          "a packaged config"):
        load_train_config("rl2/bandit-k7")
    assert main(["configs", "--format", "json"]) == 0
    listed = yaml.safe_load(capsys.readouterr().out)
    assert {row["name"] for row in listed} == set(packaged_config_names())
    assert all(row["purpose"] for row in listed)


def test_a_setting_of_an_optimizer_the_algorithm_lacks_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(tmp_path / "run"),
                 "--set", "ppo.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "config section 'ppo' is not read by algorithm 'maml-trpo'" in err
    assert "rl2.ppo" in err
