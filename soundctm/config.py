"""Configuration: frozen dataclasses filled from defaults, a YAML file, a preset and ``--set key=value`` overrides.

Resolution order (later wins): dataclass defaults → preset → YAML file → ``--set`` overrides.
Every key is checked against the dataclass fields and every value against the field's type, so a typo or a
wrongly typed value stops the run with a message that names the key and the allowed fields.
No Hydra, no ``eval``/``exec``: values are parsed with ``yaml.safe_load``.

Typical recipe use::

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(MyRecipeConfig, args)   # ValueError on a bad key / value
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# name -> builder of a nested override mapping (same shape as a YAML config file); see `register_preset`.
PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}


class ConfigError(ValueError):
    """A config key or value that does not fit the dataclass schema."""


def register_preset(name: str, builder: Callable[[], dict[str, Any]]) -> None:
    """Add ``builder`` (returning a nested mapping of overrides) to `PRESETS` under ``name``."""
    if name in PRESETS and PRESETS[name] is not builder:
        raise ValueError(f"preset {name!r} is already registered")
    PRESETS[name] = builder


def preset_overrides(name: str) -> dict[str, Any]:
    """The override mapping of preset ``name``; ValueError listing the known presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS)) or '(none)'}")
    return PRESETS[name]()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (an empty file gives ``{}``)."""
    data = yaml.safe_load(Path(path).read_text())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(item: str) -> dict[str, Any]:
    """``"a.b.c=1e-4"`` → ``{"a": {"b": {"c": 0.0001}}}``; the value is parsed as YAML (``[1, 2]`` works)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, got {item!r}")
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, any other value in ``update`` replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (missing keys keep defaults); ConfigError on unknown keys/types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; allowed fields of {cls.__name__}: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**kwargs)


def replace(cfg: T, overrides: Mapping[str, Any]) -> T:
    """A copy of dataclass ``cfg`` with nested ``overrides`` applied and type-checked."""
    return from_dict(type(cfg), merge(to_dict(cfg), overrides))


def to_dict(cfg: Any) -> Any:
    """Dataclass → plain nested dict/list/scalars (tuples become lists), ready for YAML/JSON."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def dump_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (round-trips through `load_config`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (), preset: str | None = None
) -> T:
    """Defaults of ``cls`` ← preset ← YAML ``path`` ← ``--set`` strings, validated into a frozen dataclass."""
    data: dict[str, Any] = {}
    if preset:
        data = merge(data, preset_overrides(preset))
    if path is not None:
        data = merge(data, load_yaml(path))
    for item in overrides:
        data = merge(data, parse_override(item))
    return from_dict(cls, data)


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config PATH``, ``--preset NAME`` and repeatable ``--set KEY=VALUE`` to ``parser``."""
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (recipes/configs/*.yaml)")
    parser.add_argument("--preset", default=None, help="named preset applied before the YAML file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one dotted key, value parsed as YAML (repeatable), e.g. --set train.lr=1e-4",
    )
    return parser


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """`load_config` from the namespace filled by `add_config_args`."""
    return load_config(cls, args.config, args.overrides, args.preset)


# ---------------------------------------------------------------- type checking


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert lists→tuples, int→float, str→Path, dict→dataclass."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(tp), value, where)
    if origin is typing.Literal:
        if isinstance(value, bool) and str(value).lower() not in map(str, typing.get_args(tp)):
            value = {False: "no", True: "yes"}[value]  # YAML 1.1 reads a bare no / yes as a bool
        if value not in typing.get_args(tp):
            raise _type_error(where, value, f"one of {list(typing.get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if origin in (tuple, list):
        return _coerce_sequence(tp, origin, value, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(where, value, "a mapping")
        return dict(value)
    return _coerce_scalar(tp, value, where)


def _coerce_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    """First member of a ``X | Y | None`` union that accepts ``value``."""
    if value is None and type(None) in options:
        return None
    for option in (o for o in options if o is not type(None)):
        try:
            return _coerce(option, value, where)
        except ConfigError:
            continue
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise _type_error(where, value, names)


def _coerce_sequence(tp: Any, origin: type, value: Any, where: str) -> Any:
    """``tuple[X, ...]``, ``tuple[X, Y]`` or ``list[X]`` from a list/tuple value."""
    if not isinstance(value, (list, tuple)):
        raise _type_error(where, value, f"a list ({tp})")
    args = typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise _type_error(where, value, f"a list of {len(args)} items ({tp})")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    item = args[0] if args else Any
    items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce_scalar(tp: Any, value: Any, where: str) -> Any:
    """bool/int/float/str/Path: exact types, except int → float and str → Path."""
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
        return float(value)  # PyYAML reads ``1e-4`` (no dot) as a string
    if tp is Path and isinstance(value, (str, Path)):
        return Path(value)
    if tp is int and isinstance(value, bool):
        raise _type_error(where, value, "int")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _type_error(where, value, getattr(tp, "__name__", str(tp)))


def _type_error(where: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config key {where!r}: expected {expected}, got {value!r} ({type(value).__name__})")
