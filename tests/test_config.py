"""Tests of fastadapt.run.yaml_config: typed dataclass configs from YAML, overrides, errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from fastadapt.errors import ConfigError
from fastadapt.run.yaml_config import apply_overrides, from_dict, load_config, save_config, to_dict


@dataclass(frozen=True)
class PolicyConfig:
    """Toy policy section."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: Literal["tanh", "relu"] = "tanh"
    init_std: float = 1.0


@dataclass(frozen=True)
class TrpoConfig:
    """Toy TRPO section with a range check."""

    max_kl: float = 1e-2
    cg_iterations: int = 10
    fvp_subsample: float | None = None

    def __post_init__(self) -> None:
        if self.max_kl <= 0:
            raise ConfigError(f"config key 'trpo.max_kl' must be > 0, got {self.max_kl}")


@dataclass(frozen=True)
class MamlConfig:
    """Toy MAML section."""

    inner_lr: float = 0.1
    first_order: bool = False


@dataclass(frozen=True)
class Config:
    """Toy top-level config."""

    env: str = "2d-navigation"
    seed: int = 0
    device: str | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trpo: TrpoConfig = field(default_factory=TrpoConfig)
    maml: MamlConfig = field(default_factory=MamlConfig)
    env_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Required:
    """A config with a field that has no default."""

    name: str
    pair: tuple[int, float] = (1, 2.0)
    count: int | str = 3


def _error(cls: type[Any], data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data)
    return str(info.value)


# --------------------------------------------------------------------------- from_dict


def test_from_dict_builds_nested_config_and_keeps_defaults() -> None:
    cfg = from_dict(
        Config,
        {
            "seed": 3,
            "device": "cpu",
            "policy": {"hidden_sizes": [32, 16], "activation": "relu"},
            "trpo": {"max_kl": 1, "fvp_subsample": 0.25},
            "env_kwargs": {"goal": [0.5, 0.5], "nested": {"a": 1}},
        },
    )
    assert cfg.seed == 3 and cfg.device == "cpu"
    assert cfg.policy == PolicyConfig(hidden_sizes=(32, 16), activation="relu", init_std=1.0)
    assert cfg.trpo.max_kl == 1.0 and isinstance(cfg.trpo.max_kl, float)  # int accepted
    assert cfg.trpo.fvp_subsample == 0.25 and cfg.trpo.cg_iterations == 10
    assert cfg.maml == MamlConfig()
    assert cfg.env_kwargs == {"goal": [0.5, 0.5], "nested": {"a": 1}}


def test_from_dict_empty_gives_defaults_and_optional_accepts_null() -> None:
    assert from_dict(Config, {}) == Config()
    assert from_dict(Config, {"device": None, "trpo": {"fvp_subsample": None}}) == Config()


def test_unknown_key_suggests_close_match_with_full_path() -> None:
    message = _error(Config, {"trpo": {"max_kll": 0.1}})
    assert message == "unknown config key 'trpo.max_kll'; did you mean 'trpo.max_kl'?"
    assert _error(Config, {"sed": 1}) == "unknown config key 'sed'; did you mean 'seed'?"


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    message = _error(Config, {"maml": {"zzz": 1}})
    assert message == "unknown config key 'maml.zzz'; valid keys: inner_lr, first_order"


def test_wrong_type_names_key_value_and_type() -> None:
    message = _error(Config, {"maml": {"inner_lr": "abc"}})
    assert message == "config key 'maml.inner_lr' must be a float, got 'abc' (str)"
    assert _error(Config, {"seed": 1.5}) == "config key 'seed' must be an int, got 1.5 (float)"
    assert _error(Config, {"env": 3}) == "config key 'env' must be a str, got 3 (int)"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"seed": True}, "config key 'seed' must be an int, got True (bool)"),
        ({"maml": {"inner_lr": False}}, "config key 'maml.inner_lr' must be a float, got False"),
        ({"maml": {"first_order": 1}}, "config key 'maml.first_order' must be a bool, got 1 (int)"),
    ],
)
def test_bool_and_numbers_do_not_mix(data: dict[str, Any], expected: str) -> None:
    assert _error(Config, data).startswith(expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    assert _error(Config, {"maml": {"inner_lr": value}}) == (
        f"config key 'maml.inner_lr' must be a finite float, got {value}")


def test_optional_field_reports_inner_type() -> None:
    message = _error(Config, {"trpo": {"fvp_subsample": "half"}})
    assert message == "config key 'trpo.fvp_subsample' must be a float, got 'half' (str)"


def test_literal_lists_choices() -> None:
    message = _error(Config, {"policy": {"activation": "gelu"}})
    expected = "config key 'policy.activation' must be one of 'tanh', 'relu'; got 'gelu' (str)"
    assert message == expected


def test_tuple_items_are_checked_with_index() -> None:
    message = _error(Config, {"policy": {"hidden_sizes": [32, "x"]}})
    assert message == "config key 'policy.hidden_sizes[1]' must be an int, got 'x' (str)"
    message = _error(Config, {"policy": {"hidden_sizes": "32,32"}})
    assert message == "config key 'policy.hidden_sizes' must be a list, got '32,32' (str)"


def test_fixed_length_tuple_and_union() -> None:
    cfg = from_dict(Required, {"name": "x", "pair": [2, 3], "count": "all"})
    assert cfg.pair == (2, 3.0) and isinstance(cfg.pair[1], float) and cfg.count == "all"
    message = _error(Required, {"name": "x", "pair": [1, 2, 3]})
    assert message == "config key 'pair' must be a list of 2 items, got 3"
    message = _error(Required, {"name": "x", "count": 1.5})
    assert message == "config key 'count' must be an int or a str, got 1.5 (float)"


def test_missing_required_key() -> None:
    assert _error(Required, {}) == "missing config key 'name'"


def test_section_must_be_a_mapping() -> None:
    message = _error(Config, {"trpo": 0.1})
    assert message == "config section 'trpo' must be a mapping, got 0.1 (float)"
    message = _error(Config, {"env_kwargs": [1]})
    assert message == "config key 'env_kwargs' must be a mapping, got [1] (list)"
    with pytest.raises(ConfigError, match=r"^config must be a mapping, got \[1\] \(list\)$"):
        from_dict(Config, [1])  # type: ignore[arg-type]


def test_post_init_error_propagates() -> None:
    message = _error(Config, {"trpo": {"max_kl": -1}})
    assert message == "config key 'trpo.max_kl' must be > 0, got -1.0"


def test_from_dict_rejects_non_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        from_dict(dict, {})


# --------------------------------------------------------------------------- to_dict


def test_to_dict_is_serialisable_and_round_trips() -> None:
    cfg = from_dict(Config, {"policy": {"hidden_sizes": [8]}, "env_kwargs": {"a": [1, 2]}})
    plain = to_dict(cfg)
    assert plain["policy"] == {"hidden_sizes": [8], "activation": "tanh", "init_std": 1.0}
    assert plain["env_kwargs"] == {"a": [1, 2]}
    assert json.loads(json.dumps(plain)) == plain
    assert from_dict(Config, plain) == cfg
    with pytest.raises(TypeError):
        to_dict(Config)


# --------------------------------------------------------------------------- overrides


def test_overrides_parse_yaml_values_and_floats_in_exponent_notation() -> None:
    data: dict[str, Any] = {"trpo": {"max_kl": 0.05}, "seed": 1}
    result = apply_overrides(
        data,
        [
            "trpo.max_kl=1e-2",
            "policy.hidden_sizes=[32,32]",
            "maml.first_order=true",
            "maml.inner_lr=3E5",
            "device=null",
            "env= point ",
        ],
    )
    assert result["trpo"]["max_kl"] == 0.01 and isinstance(result["trpo"]["max_kl"], float)
    assert result["policy"] == {"hidden_sizes": [32, 32]}
    assert result["maml"] == {"first_order": True, "inner_lr": 300000.0}
    assert result["device"] is None and result["env"] == "point" and result["seed"] == 1
    assert data == {"trpo": {"max_kl": 0.05}, "seed": 1}  # input not mutated
    cfg = from_dict(Config, result)
    assert cfg.trpo.max_kl == 0.01 and cfg.policy.hidden_sizes == (32, 32)


def test_override_values_that_are_not_numbers_stay_strings() -> None:
    result = apply_overrides({}, ["a=1e", "b=e5", "c=1.5", "d=7", "e=v1.2e3"])
    assert result == {"a": "1e", "b": "e5", "c": 1.5, "d": 7, "e": "v1.2e3"}


@pytest.mark.parametrize("override", ["trpo.max_kl", "=3", "trpo..max_kl=1", "trpo.=1"])
def test_malformed_override_is_named(override: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"malformed override '{override}'")):
        apply_overrides({}, [override])


def test_override_through_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"override 'seed\.x=1': 'seed' is 1 \(int\), not a"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


def test_override_with_invalid_yaml_value() -> None:
    with pytest.raises(ConfigError, match=r"^override 'a=\[1, 2': value is not valid YAML"):
        apply_overrides({}, ["a=[1, 2"])


def test_override_of_unknown_key_is_caught_by_from_dict() -> None:
    with pytest.raises(ConfigError, match=re.escape("did you mean 'trpo.max_kl'")):
        from_dict(Config, apply_overrides({}, ["trpo.max_kll=1"]))


# --------------------------------------------------------------------------- files


def test_load_config_reads_yaml_and_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "# a comment\nseed: 2\ntrpo:\n  max_kl: 1e-3  # YAML 1.1 reads this as a string\n"
        "policy:\n  hidden_sizes: [16, 16]\n"
    )
    cfg = load_config(Config, path, ["seed=5", "maml.inner_lr=0.5"])
    assert cfg.seed == 5 and cfg.trpo.max_kl == 1e-3 and cfg.maml.inner_lr == 0.5
    assert cfg.policy.hidden_sizes == (16, 16)


def test_load_config_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(Config, str(path)) == Config()


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"^config file not found: {re.escape(str(path))}$"):
        load_config(Config, path)


def test_load_config_syntax_error_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\ntrpo:\n  max_kl: [1, 2\n  cg_iterations: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(Config, path)
    message = str(info.value)
    assert message.startswith(f"invalid YAML in {path} at line ")
    assert re.search(r"at line [34], column \d+: ", message)


def test_load_config_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping at the top level, got list"):
        load_config(Config, path)


def test_load_config_reports_key_errors(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("maml:\n  inner_lr: abc\n")
    with pytest.raises(ConfigError, match=r"^config key 'maml.inner_lr' must be a float"):
        load_config(Config, path)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = from_dict(
        Config,
        {
            "device": "cuda",
            "policy": {"hidden_sizes": [100, 50], "activation": "relu", "init_std": 1e-5},
            "trpo": {"max_kl": 1e-7, "fvp_subsample": 0.5},
            "env_kwargs": {"goals": [[0.1, 0.2]], "name": "x"},
        },
    )
    path = tmp_path / "saved.yaml"
    save_config(cfg, path)
    assert load_config(Config, path) == cfg
    assert "max_kl: 1.0e-07" in path.read_text()  # readable, and read back as a float
