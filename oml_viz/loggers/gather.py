"""One validation set out of what every DDP process saw: gathered, deduplicated by ``idx``, in order.

Under DDP each process validates its shard; ``DistributedSampler`` pads the shards to equal
length by repeating items, so a plain concatenation counts some items twice. Here the
embeddings travel as one all-gather of tensors (padded to the longest shard), the other
columns (N small values) as objects, and rows are kept once per ``idx``, sorted by it: the same
rows, in the same order, as one process validating the whole set.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from oml_viz.engine import distributed as D

__all__ = ["gather_validation"]


def _describe(data: dict[str, np.ndarray] | None, error: str | None) -> dict[str, Any]:
    if data is None:
        return {"n": 0, "keys": None, "dim": None, "error": error}
    return {"n": len(data["embeddings"]), "keys": sorted(data), "dim": int(data["embeddings"].shape[1]),
            "error": error}


def gather_validation(data: dict[str, np.ndarray] | None, group: Any = None,
                      error: str | None = None) -> dict[str, np.ndarray] | None:
    """Every process's validation columns as one deduplicated set, on every process (a collective).

    ``data`` is this process's columns (``embeddings`` (n, D), ``labels``, ``idx``...) or None when it
    saw no batch. Returns None when no process saw anything. Disagreements (keys, widths, no
    ``idx``) and an ``error`` any process reports raise the same ``ValueError`` on every process.
    """
    infos = D.all_gather_objects(_describe(data, error), group)
    errors = [f"rank {r}: {i['error']}" for r, i in enumerate(infos) if i["error"]]
    if errors:
        raise ValueError("MetricValCallback: " + "; ".join(errors))
    seen = [(r, i) for r, i in enumerate(infos) if i["n"]]
    if not seen:
        return None
    keys = {tuple(i["keys"]) for _, i in seen}
    if len(keys) > 1:
        raise ValueError("MetricValCallback: processes disagree on the validation keys: "
                         + ", ".join(f"rank {r}: {i['keys']}" for r, i in seen))
    dims = {i["dim"] for _, i in seen}
    if len(dims) > 1:
        raise ValueError("MetricValCallback: embeddings have different widths across processes: "
                         + ", ".join(f"rank {r}: D={i['dim']}" for r, i in seen))
    columns = list(seen[0][1]["keys"])
    if "idx" not in columns:
        raise ValueError("MetricValCallback under DDP needs 'idx' (dataset indices) in the validation "
                         "outputs or batches: DistributedSampler repeats items to even out the shards, "
                         "and only idx tells the copies apart")
    dim = dims.pop()
    local = torch.zeros(0, dim) if data is None else torch.as_tensor(np.ascontiguousarray(data["embeddings"]),
                                                                    dtype=torch.float32)
    parts = D.all_gather_rows(local, group, counts=[i["n"] for i in infos])
    embeddings = torch.cat([p.cpu() for p in parts]).numpy()
    others = D.all_gather_objects(None if data is None else {k: v for k, v in data.items() if k != "embeddings"},
                                  group)
    out: dict[str, np.ndarray] = {"embeddings": embeddings}
    for key in columns:
        if key == "embeddings":
            continue
        pieces = [o[key] for o in others if o is not None]
        if all(p.dtype != object for p in pieces):
            out[key] = np.concatenate(pieces)
        else:
            out[key] = np.fromiter((v for p in pieces for v in p.tolist()), dtype=object,
                                   count=sum(len(p) for p in pieces))
    _, first = np.unique(out["idx"].astype(np.int64), return_index=True)  # sorted by idx, one copy each
    return {key: value[first] for key, value in out.items()}
