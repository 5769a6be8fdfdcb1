"""A brute-force reference of the engine, written from DESIGN.md's formulas with plain loops.

Slow on purpose: full float64 distance matrix, Python loops over queries and ranks.
"""
from __future__ import annotations

import numpy as np


def distance_matrix(emb: np.ndarray, distance: str) -> np.ndarray:
    x = emb.astype(np.float64)
    if distance == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return np.clip(1.0 - x @ x.T, 0.0, None)
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def candidates(n: int, q: int, is_gallery, seq) -> list[int]:
    """Gallery items a query may retrieve: not itself, not of its sequence."""
    out = []
    for g in range(n):
        if not is_gallery[g] or g == q:
            continue
        if seq is not None and seq[g] is not None and seq[g] == seq[q]:
            continue
        out.append(g)
    return out


def reference(emb, labels, is_query, is_gallery, top_n, distance, seq=None):
    n = len(labels)
    dist = distance_matrix(emb, distance)
    queries = [q for q in range(n) if is_query[q]]
    gallery_size = sum(bool(g) for g in is_gallery)
    k = min(top_n, gallery_size)
    ids, dists, rel, n_gt, pairs = [], [], [], [], []
    for q in queries:
        cands = candidates(n, q, is_gallery, seq)
        ranked = sorted(cands, key=lambda g: (dist[q, g], g))[:k]
        row_ids = ranked + [-1] * (k - len(ranked))
        ids.append(row_ids)
        dists.append([dist[q, g] for g in ranked] + [np.inf] * (k - len(ranked)))
        rel.append([g >= 0 and labels[g] == labels[q] for g in row_ids])
        n_gt.append(sum(labels[g] == labels[q] for g in cands))
        pairs.append([(dist[q, g], labels[g] == labels[q]) for g in cands])
    return {
        "query_ids": np.array(queries),
        "retrieved_ids": np.array(ids, dtype=np.int64).reshape(len(queries), k),
        "distances": np.array(dists, dtype=np.float64).reshape(len(queries), k),
        "is_relevant": np.array(rel, dtype=bool).reshape(len(queries), k),
        "n_gt": np.array(n_gt),
        "pairs": pairs,
        "dist": dist,
    }


def query_metric(kind: str, k: int, hits: list[bool], n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    hits = list(hits[:k]) + [False] * max(0, k - len(hits))
    if kind == "cmc":
        return float(any(hits))
    if kind == "precision":
        return sum(hits) / min(k, n_gt)
    h_k = sum(hits)
    if h_k == 0:
        return 0.0
    total, found = 0.0, 0
    for i, hit in enumerate(hits, start=1):
        if hit:
            found += 1
            total += found / i
    return total / h_k


def mean_metric(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def fnmr(pairs_per_query: list[list[tuple[float, bool]]], p: float) -> tuple[float, bool]:
    """(value, ambiguous): ambiguous when a relevant distance sits within 1e-5 of the threshold."""
    neg = [d for pairs in pairs_per_query for d, r in pairs if not r]
    pos = [d for pairs in pairs_per_query for d, r in pairs if r]
    if not neg or not pos:
        return float("nan"), False
    t = float(np.quantile(np.array(neg), p))
    ambiguous = any(abs(d - t) < 1e-5 for d in pos)
    return sum(d >= t for d in pos) / len(pos), ambiguous


def pcf(emb: np.ndarray, share: float) -> float:
    x = emb.astype(np.float64)
    x = x - x.mean(0)
    eig = np.sort(np.linalg.eigvalsh(x.T @ x))[::-1].clip(0)
    if len(x) < 2 or eig.sum() <= 0:
        return float("nan")
    cum = np.cumsum(eig) / eig.sum()
    for i, c in enumerate(cum):
        if c >= share - 1e-12:
            return (i + 1) / x.shape[1]
    return 1.0
