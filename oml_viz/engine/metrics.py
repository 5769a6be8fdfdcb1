"""Vectorised retrieval metrics (OML 4.0 definitions, see DESIGN.md).

Every function takes ``hits`` (Q, k) bool (result at rank i is relevant) and ``n_gt`` (Q,) and returns
per-query float64 values, NaN for queries without ground truth.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import torch

RANKED_METRICS = ("cmc", "precision", "map")
_NAME = re.compile(r"^(cmc|precision|map)/([1-9][0-9]*)$")


def parse_metric(name: str) -> tuple[str, int]:
    """``"map/5"`` -> ``("map", 5)``; a clear error for anything else."""
    match = _NAME.match(str(name))
    if not match:
        raise ValueError(
            f"unknown metric {name!r}: per-query metrics are 'cmc/K', 'precision/K' or 'map/K' "
            "with K a positive int (e.g. 'map/5')"
        )
    return match.group(1), int(match.group(2))


def _cumulative_hits(hits: np.ndarray, k: int) -> np.ndarray:
    """Running hit counts over ranks 1..k, padding with misses when fewer results exist."""
    hits = hits[:, :k]
    if hits.shape[1] < k:
        hits = np.pad(hits, ((0, 0), (0, k - hits.shape[1])))
    return np.cumsum(hits, axis=1, dtype=np.int64)


def _nan_where_no_gt(values: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    values[n_gt == 0] = np.nan
    return values


def cmc(hits: np.ndarray, n_gt: np.ndarray, k: int) -> np.ndarray:
    """1 when any of the first k results is relevant."""
    return _nan_where_no_gt(_cumulative_hits(hits, k)[:, -1] > 0, n_gt)


def precision(hits: np.ndarray, n_gt: np.ndarray, k: int) -> np.ndarray:
    """Relevant results among the first k, divided by min(k, n_gt)."""
    found = _cumulative_hits(hits, k)[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_no_gt(found / np.minimum(k, n_gt), n_gt)


def average_precision(hits: np.ndarray, n_gt: np.ndarray, k: int) -> np.ndarray:
    """(1 / h_k) * sum_{i<=k} hit_i * (hits in 1..i) / i; 0 when h_k = 0."""
    cum = _cumulative_hits(hits, k)
    padded = np.zeros_like(cum, dtype=bool)
    padded[:, : min(k, hits.shape[1])] = hits[:, :k]
    terms = (padded * cum / np.arange(1, k + 1)).sum(axis=1)
    found = cum[:, -1]
    values = np.divide(terms, found, out=np.zeros(len(found)), where=found > 0)
    return _nan_where_no_gt(values, n_gt)


_FUNCTIONS = {"cmc": cmc, "precision": precision, "map": average_precision}


def per_query(name: str, hits: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    kind, k = parse_metric(name)
    return _FUNCTIONS[kind](hits, n_gt, k)


def pcf(embeddings: torch.Tensor, shares: Iterable[float]) -> list[float]:
    """Principal components needed to explain each share of variance, divided by D.

    NaN when the items have no variance (fewer than two distinct embeddings).
    """
    x = embeddings.double()
    x = x - x.mean(0)
    eig = torch.linalg.eigvalsh(x.T @ x).flip(0).clamp(min=0)
    total = eig.sum()
    shares = list(shares)
    if len(x) < 2 or total <= 0:
        return [float("nan")] * len(shares)
    cum = (torch.cumsum(eig, 0) / total).numpy()
    dim = x.shape[1]
    # 1e-12: a share of 1.0 must not fail on the last cumulative sum's rounding
    needed = np.searchsorted(cum, np.asarray(shares) - 1e-12, side="left") + 1
    return list(np.minimum(needed, dim) / dim)
