"""Lazy attributes for packages: ``import oml_viz.x`` stays cheap until a name is used."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(package: str, names: Mapping[str, str], namespace: dict[str, Any]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for a package whose ``names`` map to their modules.

    A module path starting with ``.`` is relative to ``package``. A name resolved once is stored in
    the package's ``namespace`` (its ``globals()``), so later lookups skip ``__getattr__``.

    Example:
        >>> ns = {}
        >>> getattr_, dir_, all_ = lazy_names("json", {"dumps": "json", "JSONDecoder": ".decoder"}, ns)
        >>> getattr_("dumps")([1]), all_, "dumps" in ns
        ('[1]', ['JSONDecoder', 'dumps'], True)
        >>> getattr_("nope")
        Traceback (most recent call last):
        ...
        AttributeError: module 'json' has no attribute 'nope'
    """
    public = sorted(names)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(names[name], package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__, public
