"""The small protocol between a LightningModule and :class:`MetricValCallback`.

A validation step returns (or the batch holds) a mapping with these keys, one row per item:

=============== ========================================== ==================================
key             value                                      required
=============== ========================================== ==================================
``embeddings``  (B, D) float tensor                        yes (in the step's output)
``labels``      (B,) ints or any hashable values           yes (output or batch)
``is_query``    (B,) bools                                 no: every item is a query
``is_gallery``  (B,) bools                                 no: every item is in the gallery
``categories``  (B,) hashable values                       no: OVERALL only
``sequence``    (B,) sequence ids (hashable; ints batch    no: every item its own sequence
                best): items of one sequence never match
``idx``         (B,) int dataset indices                   no: items keep their batch order;
                                                           needed under DDP (deduplication)
``paths``       (B,) image paths (for worst-query figures) no
=============== ========================================== ==================================

Keys are read from the step's output first, then from the batch when it is a mapping, so a
module can return just ``{"embeddings": emb}`` when its batches carry the rest.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["FIELDS", "OPTIONAL_FIELDS", "collect_fields", "to_numpy"]

FIELDS = ("embeddings", "labels")
OPTIONAL_FIELDS = ("is_query", "is_gallery", "categories", "sequence", "idx", "paths")


def to_numpy(value: Any) -> np.ndarray:
    """A batch column (tensor, list, tuple, array) as a 1-d or 2-d numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy() if value.is_floating_point() \
            else value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        out = np.empty(len(value), dtype=object)
        out[:] = list(value)
        return out
    return np.asarray(value)


def collect_fields(outputs: Any, batch: Any) -> dict[str, np.ndarray]:
    """Pick the protocol's fields for one validation batch (see the module docstring)."""
    if not isinstance(outputs, Mapping) or "embeddings" not in outputs:
        raise ValueError(
            "MetricValCallback needs validation_step to return a dict with 'embeddings' (and "
            "'labels', or labels in the batch); got "
            f"{type(outputs).__name__ if not isinstance(outputs, Mapping) else sorted(outputs)}"
        )
    sources = [outputs] + ([batch] if isinstance(batch, Mapping) else [])
    fields: dict[str, np.ndarray] = {}
    for key in FIELDS + OPTIONAL_FIELDS:
        for src in sources:
            if key in src and src[key] is not None:
                fields[key] = to_numpy(src[key])
                break
    if "labels" not in fields:
        raise ValueError("MetricValCallback: no 'labels' in validation_step's output nor in the batch")
    n = len(fields["embeddings"])
    for key, value in fields.items():
        if len(value) != n:
            raise ValueError(f"MetricValCallback: '{key}' has {len(value)} rows but 'embeddings' "
                             f"has {n} in one validation batch")
    return fields
