"""Presets and overrides: a preset is a YAML file of overrides in loop/presets/ (one may name another); a dotted
override `a.b=value` parses its value as YAML. Nothing here knows the config's fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The override dict stored in loop/presets/NAME.yaml. A preset may name another (`preset: default-gpu`): that
    one's values apply first, then its own, so a variant states only what it changes."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"preset {name!r} not found in {PRESET_DIR}; known presets: {known}")
    if name in _seen:
        raise ValueError(f"{path}: presets name each other in a cycle: {' -> '.join((*_seen, name))}")
    loaded = read_yaml(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a preset must be a mapping of config keys")
    parent = loaded.pop("preset", None)
    return deep_merge(load_preset(parent, (*_seen, name)), loaded) if parent else loaded


def read_yaml(path: Path) -> Any:
    """A YAML file's content ({} when empty); a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start})") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=value` -> {"a": {"b": value}}, the value parsed as YAML (so numbers and lists keep their type)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: the value is not YAML ({str(err).splitlines()[0]})") from None
    out: dict[str, Any] = {}
    node = out
    keys = dotted.strip().split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out
