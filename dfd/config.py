"""Configs are dataclasses, saved as JSON beside every run's outputs.

Each stage defines its own dataclass (``PrepConfig``, ``TrainConfig``, ...); this module
gives them one way to be written, read back and checked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
import types
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


_JSON_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
_JSON_PLURALS = {bool: "true or false values", int: "whole numbers", float: "numbers",
                 str: "strings"}


def _fits(hint, value, strict: bool = False) -> bool | None:
    """Whether a JSON ``value`` fits the annotation ``hint``: True, False, or None where the
    annotation is not one this check reads (it then passes). ``strict``: a list field takes a
    list only and a dict field an object only (a file the package wrote), not the command
    line's shorthands (one string for a one-item list, null for empty, a dict's text form)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args or None
        found = [_fits(a, value, strict) for a in args if a is not type(None)]
        return True if any(found) else (None if None in found else False)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:  # a path from a Python caller is a string's worth
        return isinstance(value, (str, os.PathLike))
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            return False
        each = args[:1] * len(value) if args and args[-1] is Ellipsis else args
        return all(_fits(a, v, strict) is not False for a, v in zip(each, value))
    if strict and (hint is list or origin is list):
        return isinstance(value, (list, tuple))
    if strict and (hint is dict or origin is dict):
        return isinstance(value, dict)
    # null for a list or a dict: left to the dataclass (TrainConfig reads it as empty)
    if hint is list or origin is list:  # a single string is taken for a one-item list
        return value is None or isinstance(value, (list, tuple, str))
    if hint is dict or origin is dict:  # a string may be a field's own text form
        return value is None or isinstance(value, (dict, str))
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return None


def _plural(hint) -> str:
    """What a list of ``hint`` holds, in words ("numbers", "objects of Phase fields"); "" where
    there are no words for it (the message then says "a list")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        words = ["nulls" if a is type(None) else _plural(a) for a in args]
        return " or ".join(words) if all(words) else ""
    if hint in _JSON_PLURALS:
        return _JSON_PLURALS[hint]
    if dataclasses.is_dataclass(hint):
        return f"objects of {hint.__name__} fields"
    if hint in (list, tuple) or origin in (list, tuple):
        return "lists"
    if hint is dict or origin is dict:
        return "objects"
    return ""


def _a_list_of(hint) -> str:
    words = _plural(hint)
    return "a list" + (f" of {words}" if words else "")


def _expected(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _expected(a) for a in args)
    if hint in _JSON_NAMES:
        return _JSON_NAMES[hint]
    if hint is tuple or origin is tuple:
        if args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_expected(a) for a in args)})"
        return _a_list_of(args[0]) if args else "a list"
    if hint is list or origin is list:
        return _a_list_of(args[0]) if args else "a list"
    if hint is dict or origin is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return f"an object of {hint.__name__} fields"
    return str(hint)


def check_types(cls, data: dict[str, Any], where: str = "", strict: bool = False) -> None:
    """A ValueError naming the field, its value and the type it needs, for the first value of
    ``data`` (as read from JSON or the command line) that does not fit its field of the
    dataclass ``cls``; nested sections (a dataclass field, a list of them) are checked too.
    Fields whose annotations this check cannot read pass. ``strict`` (for files the package
    wrote): no shorthands, a list field must hold a list (see :func:`_fits`)."""
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints.get(name)
        if hint is None:
            continue
        if _fits(hint, value, strict) is False:
            raise ValueError(f"{where}{name} must be {_expected(hint)}, got {value!r}")
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and value is not None:
            # an optional section or list: its items are checked as the section's own
            inner_hints = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(inner_hints) == 1:
                hint = inner_hints[0]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_types(hint, value, f"{where}{name}.", strict)
        elif typing.get_origin(hint) is list and isinstance(value, (list, tuple)):
            (inner,) = typing.get_args(hint)
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(inner) and isinstance(item, dict):
                    check_types(inner, item, f"{where}{name}[{i}].", strict)
                elif (not isinstance(item, inner) if dataclasses.is_dataclass(inner)
                      else _fits(inner, item, strict) is False):
                    raise ValueError(f"{where}{name}[{i}] must be {_expected(inner)}, "
                                     f"got {item!r}")


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, refusing keys the dataclass does not have and values of the
    wrong type (:func:`check_types`)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(fields)}")
    check_types(cls, data)
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
