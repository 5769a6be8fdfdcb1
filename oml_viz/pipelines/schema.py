"""A small typed schema for YAML configs: dataclasses checked field by field.

A config section is a dataclass; its type hints are the schema. :func:`build` turns the nested
dicts from ``yaml.safe_load`` into those dataclasses and gathers *every* problem before raising
one :class:`ConfigError`, each problem naming its key path::

    metric_args.cmc_top_k[1]: expected int, got str ('5')
    optimizer.lrr: unknown key (known: lr, name, weight_decay)

Supported hints: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``Any``,
``X | None``, ``list[X]``, ``dict[str, X]``, ``Literal[...]`` and nested dataclasses. A field
may carry ``metadata={"check": fn}`` where ``fn(value)`` returns an error text or None, for
value rules (``k >= 1``, ``0 < p < 1``) that a type cannot say.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Opt:
    ...     lr: float = 0.1
    >>> try:
    ...     build(Opt, {"lr": "fast"})
    ... except ConfigError as e:
    ...     print(e)
    invalid config: 1 problem(s):
      lr: expected float, got str ('fast')
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from oml_viz.errors import InputValueError

__all__ = ["ConfigError", "build", "in_open_unit", "in_unit", "positive"]

_MISSING = dataclasses.MISSING
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(InputValueError):
    """A config that does not fit its schema; ``.problems`` lists ``"key.path: what"`` strings."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" {source}" if source else ""
        super().__init__(f"invalid config{where}: {len(self.problems)} problem(s):\n  " + "\n  ".join(self.problems))


def positive(v: Any) -> str | None:
    return None if v >= 1 else f"must be >= 1, got {v!r}"


def in_open_unit(v: Any) -> str | None:
    return None if 0 < v < 1 else f"must lie in (0, 1), got {v!r}"


def in_unit(v: Any) -> str | None:
    return None if 0 < v <= 1 else f"must lie in (0, 1], got {v!r}"


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is Any:
        return "any value"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _got(v: Any) -> str:
    text = repr(v)
    return f"{_type_name(v)} ({text[:40]}{'...' if len(text) > 40 else ''})" if isinstance(v, (str, int, float)) else _type_name(v)


def _convert(hint: Any, value: Any, path: str, problems: list[str]) -> Any:
    """``value`` checked against ``hint``; problems are appended, the (best effort) value returned."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
        for a in inner:  # first alternative that fits without problems
            trial: list[str] = []
            out = _convert(a, value, path, trial)
            if not trial:
                return out
        problems.append(f"{path}: expected {_describe(hint)}, got {_got(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping (key: value lines), got {_got(value)}")
            return None
        return _build(hint, value, path, problems)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            problems.append(f"{path}: expected {_describe(hint)}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            problems.append(f"{path}: expected {_describe(hint)}, got {_got(value)}")
            return value
        return [_convert(item, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        key_hint, val_hint = typing.get_args(hint)
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping (key: value lines), got {_got(value)}")
            return value
        out = {}
        for k, v in value.items():
            if key_hint is str and not isinstance(k, str):
                problems.append(f"{path}.{k}: keys must be text, got {_type_name(k)}")
            out[k] = _convert(val_hint, v, f"{path}.{k}", problems)
        return out
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected bool (true/false), got {_got(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected int, got {_got(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint_text = ""
            if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
                # YAML 1.1 reads 1e-3 (no dot) as text
                hint_text = f"; YAML reads {value} as text, write it with a dot, e.g. {float(value):.1e}"
            problems.append(f"{path}: expected float, got {_got(value)}{hint_text}")
            return value
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected str, got {_got(value)}")
        return value
    raise TypeError(f"schema: unsupported type hint {hint!r} at {path}")  # a bug in a schema, not in a config


def _build(cls: type, data: dict, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: str(k))
    for key in data:
        if key not in fields:
            problems.append(f"{join(key)}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:  # type: ignore[misc]
                problems.append(f"{join(name)}: required key is missing")
            continue
        n_before = len(problems)
        value = _convert(hints[name], data[name], join(name), problems)
        check: Callable[[Any], str | None] | None = f.metadata.get("check")
        if check is not None and len(problems) == n_before and value is not None:
            for i, v in enumerate(value if isinstance(value, list) else [value]):
                msg = check(v)
                if msg:
                    where = f"{join(name)}[{i}]" if isinstance(value, list) else join(name)
                    problems.append(f"{where}: {msg}")
        kwargs[name] = value
    if len(problems):
        return None
    return cls(**kwargs)


def build(cls: type, data: dict | None, source: str | None = None) -> Any:
    """An instance of dataclass ``cls`` from nested dicts; :class:`ConfigError` lists every problem."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a mapping (key: value lines), got {_type_name(data)}"], source)
    out = _build(cls, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return out
