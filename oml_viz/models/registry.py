"""The extractor kinds by name: what a checkpoint's ``kind`` field and a config's ``model.kind`` mean.

Extractor classes register themselves with :func:`register_extractor` where they are defined;
checkpoint loading looks them up here, so neither module imports the other.

Example:
    >>> from oml_viz.models import ViTExtractor
    >>> EXTRACTOR_KINDS["vit"] is ViTExtractor, sorted(EXTRACTOR_KINDS)
    (True, ['resnet', 'timm', 'vit'])
"""
from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)

EXTRACTOR_KINDS: dict[str, Any] = {}


def register_extractor(cls: T) -> T:
    """Class decorator: make ``cls`` the extractor for its ``kind`` (a class attribute)."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} needs a non-empty string class attribute 'kind' to be registered")
    EXTRACTOR_KINDS[kind] = cls
    return cls


def extractor_class(kind: Any) -> Any:
    """The class registered for ``kind``; unknown or missing kinds give the generic ``"timm"`` one."""
    return EXTRACTOR_KINDS.get(kind, EXTRACTOR_KINDS["timm"])


def is_extractor(obj: Any) -> bool:
    """True for instances of a registered extractor class (and their subclasses)."""
    return bool(EXTRACTOR_KINDS) and isinstance(obj, tuple(EXTRACTOR_KINDS.values()))
