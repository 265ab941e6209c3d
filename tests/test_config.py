"""Config system: YAML files, --set overrides, presets, unknown-key and type errors."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from recipes import train_toy_regression as toy
from soundctm.config import (
    PRESETS,
    ConfigError,
    add_config_args,
    config_from_args,
    dump_yaml,
    from_dict,
    load_config,
    parse_override,
    register_preset,
    replace,
)
from soundctm.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NetConfig:
    width: int = 16
    scale: float = 1.0
    act: Literal["silu", "relu"] = "silu"
    dims: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    net: NetConfig = field(default_factory=NetConfig)
    out: Path = Path("runs/x")
    limit: int | None = None


def test_yaml_then_set_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nnet:\n  width: 32\n  scale: 2\n  dims: [3, 4, 5]\n")
    cfg = load_config(RunConfig, path, ["net.width=64", "limit=7", "out=/tmp/o"])
    assert cfg == RunConfig("a", NetConfig(64, 2.0, "silu", (3, 4, 5)), Path("/tmp/o"), 7)
    assert isinstance(cfg.net.scale, float) and isinstance(cfg.net.dims, tuple)


def test_set_parses_yaml_scalars_and_lists():
    assert parse_override("a.b=1e-4") == {"a": {"b": "1e-4"}}  # PyYAML quirk, fixed by the float coercion
    assert load_config(NetConfig, None, ["scale=1e-4"]).scale == pytest.approx(1e-4)
    assert load_config(NetConfig, None, ["dims=[7, 8]"]).dims == (7, 8)
    assert load_config(RunConfig, None, ["limit=null"]).limit is None
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("no_equals_sign")


def test_unknown_key_names_key_and_allowed_fields():
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, None, ["net.widht=3"])
    assert "'net.widht'" in str(err.value) and "act, dims, scale, width" in str(err.value)
    with pytest.raises(ConfigError, match="'nmae'.*allowed fields of RunConfig: limit, name, net, out"):
        from_dict(RunConfig, {"nmae": "x"})


@pytest.mark.parametrize(
    "override, expected",
    [("net.width=abc", "'net.width': expected int"), ("net.width=true", "'net.width': expected int"),
     ("net.act=gelu", "one of \\['silu', 'relu'\\]"), ("net.dims=[1, x]", "'net.dims\\[1\\]'"),
     ("net.scale=[1]", "'net.scale': expected float"), ("limit=2.5", "'limit': expected int")],
)
def test_wrong_type_is_rejected(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(RunConfig, None, [override])


def test_presets_apply_before_yaml(tmp_path):
    register_preset("test-wide", lambda: {"net": {"width": 128, "act": "relu"}})
    try:
        path = tmp_path / "c.yaml"
        path.write_text("net:\n  width: 48\n")
        cfg = load_config(RunConfig, path, preset="test-wide")
        assert (cfg.net.width, cfg.net.act) == (48, "relu")
        with pytest.raises(ConfigError, match="unknown preset 'nope'.*test-wide"):
            load_config(RunConfig, preset="nope")
    finally:
        PRESETS.pop("test-wide")


def test_dump_yaml_round_trips(tmp_path):
    cfg = RunConfig("b", NetConfig(8, 0.5, "relu", (9,)), Path("o"), 3)
    (tmp_path / "d.yaml").write_text(dump_yaml(cfg))
    assert load_config(RunConfig, tmp_path / "d.yaml") == cfg
    assert replace(cfg, {"net": {"width": 9}}).net == NetConfig(9, 0.5, "relu", (9,))


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().name = "x"


def test_argparse_helpers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: from_file\n")
    parser = add_config_args(argparse.ArgumentParser())
    args = parser.parse_args(["--config", str(path), "--set", "net.width=5", "--set", "name=cli"])
    assert config_from_args(RunConfig, args) == RunConfig(name="cli", net=NetConfig(width=5))


@pytest.mark.parametrize("field_name, value", [("lr", 0.0), ("steps", 0), ("betas", (0.9, 1.0)),
                                               ("ema_decays", (1.0,)), ("grad_clip", -1.0), ("keep_last", -1)])
def test_train_config_rejects_out_of_range(field_name, value):
    with pytest.raises(ValueError, match=field_name):
        TrainConfig(**{field_name: value})


def test_shipped_toy_yaml_loads_and_bad_cli_exits_2(capsys):
    cfg = load_config(toy.ToyRegressionConfig, ROOT / "recipes/configs/toy_regression.yaml")
    assert cfg.train.ema_decays == (0.99, 0.999) and cfg.model.hidden == 64
    assert toy.main(["--set", "train.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "'train.lrr'" in err


def test_a_bare_no_reaches_a_string_choice_as_no():
    """YAML 1.1 reads ``--set train.mixed_precision=no`` as False; a choice among strings that holds "no" takes it."""
    from soundctm.train import TrainConfig

    assert load_config(TrainConfig, None, ["mixed_precision=no"]).mixed_precision == "no"
    assert load_config(TrainConfig, None, ["mixed_precision=bf16"]).mixed_precision == "bf16"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(TrainConfig, None, ["mixed_precision=true"])
