"""Flatten nested configs and metric tables into the flat ``a/b/c`` keys trackers expect."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["flat_metrics", "flatten_config"]


def flatten_config(cfg: Mapping[str, Any] | None, sep: str = "/") -> dict[str, Any]:
    """Nested mappings become ``parent/child`` keys; lists and tuples become ``parent/0``, ...

    Leaves that trackers cannot store (objects, None) are kept as their ``str``.

    Example:
        >>> flatten_config({"model": {"name": "vit", "dims": [384, 128]}, "lr": 0.1})
        {'model/name': 'vit', 'model/dims/0': 384, 'model/dims/1': 128, 'lr': 0.1}
    """
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ValueError(f"cfg must be a mapping (e.g. the parsed YAML), got {type(cfg).__name__}")
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if not value and prefix:
                out[prefix] = "{}"
            for k, v in value.items():
                walk(f"{prefix}{sep}{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            if not value:
                out[prefix] = "[]"
            for i, v in enumerate(value):
                walk(f"{prefix}{sep}{i}", v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    walk("", cfg)
    return out


def flat_metrics(table: Any, sep: str = "/") -> dict[str, float]:
    """``RetrievalResult.metrics()`` table -> ``{"OVERALL/cmc/1": 0.8, "cat/map/5": ...}``.

    NaN cells (a category with no valid query) are left out: trackers chart them badly.

    Example:
        >>> import pandas as pd
        >>> flat_metrics(pd.DataFrame({"cmc/1": [0.5, 1.0]}, index=["OVERALL", "shoes"]))
        {'OVERALL/cmc/1': 0.5, 'shoes/cmc/1': 1.0}
    """
    out: dict[str, float] = {}
    for index, row in table.iterrows():
        for column, value in row.items():
            value = float(value)
            if not math.isnan(value):
                out[f"{index}{sep}{column}"] = value
    return out
