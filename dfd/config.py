"""Configs are dataclasses, saved as JSON beside every run's outputs.

Each stage defines its own dataclass (``PrepConfig``, ``TrainConfig``, ...); this module
gives them one way to be written, read back and checked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import time
import typing
from pathlib import Path
from typing import Any, TypeVar

from dfd import __version__

log = logging.getLogger(__name__)

T = TypeVar("T")


def config_to_dict(config) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass instance (paths become strings, tuples lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config), default=_jsonable))


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} to a config file")


def json_safe(obj):
    """A JSON-ready copy of ``obj`` (the package's one clean-up): numpy scalars and arrays to
    Python, NaN/inf to None, tuples to lists, paths to strings, dict keys to strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays / scalars
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, refusing keys the dataclass does not have."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if value is not None and typing.get_origin(hint) is tuple:
            value = tuple(value)
        elif isinstance(value, list) and (hint is tuple or str(hint).startswith("tuple")):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def save_config(config, path: str | Path, **extra) -> Path:
    """Write ``config`` as JSON (with the package version, host and time) to ``path``."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "config_class": type(config).__name__,
        "config": config_to_dict(config),
        "package_version": __version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    doc.update(extra)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    log.debug("wrote %s to %s", type(config).__name__, path)
    return path


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a config written by :func:`save_config` (or a bare dict of fields)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from None
    data = doc.get("config", doc) if isinstance(doc, dict) else doc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} holds {type(data).__name__}, expected an object")
    return config_from_dict(cls, data)
