"""The pairs that FNMR@FMR works on, shared by its algorithms (:mod:`.fnmr`): the task, the relevant
pairs straight from the label groups, and exact distances of chosen pairs (the ones ``retrieve`` reports)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .candidates import _bookkeeping_threads
from .gemm import Backend, fastest_fp32
from .search import Exclusions, exact_distances, gallery_matrix

_EXACT_PIECE = 1 << 11  # pairs per exact-distance piece (8192 grew the peak by 1.4 GB at 1.1M pairs)
_RELEVANT_PIECE = 1 << 21  # relevant pairs whose distances are held at once (16 MB)


class FnmrTask(NamedTuple):
    """One FNMR@FMR computation: the arguments of :func:`fnmr_at_fmr`, passed whole between its paths."""

    vectors: torch.Tensor  # (N, D) float32, every item
    query_ids: np.ndarray  # rows of ``vectors`` that are queries
    gallery_ids: np.ndarray  # rows of ``vectors`` in the gallery
    label_codes: np.ndarray  # (N,) label code per item
    seq_codes: np.ndarray  # (N,) sequence code per item (a query never matches its own sequence)
    query_groups: np.ndarray  # group (category) code per query
    n_groups: int
    fmr_vals: Sequence[float]
    distance: str  # "euclidean" or "cosine"
    device: torch.device


def shifted_product_operands(task: FnmrTask) -> tuple[torch.Tensor, Backend, torch.Tensor, Exclusions, torch.Tensor]:
    """What the windowed passes share: the gallery rows on the device, the fastest float32 backend, its
    prepared gallery operand with a ones column (the queries' shift column meets it, so that the product
    approximates d^2 or d), the gallery's sequence exclusions and the queries' sequence codes."""
    n_g = len(task.gallery_ids)
    gallery = task.vectors[torch.as_tensor(task.gallery_ids)].to(task.device)
    base = gallery_matrix(gallery, task.distance)[:n_g]
    backend = fastest_fp32(task.device)
    rhs = backend.prepare(torch.cat([base, base.new_ones(n_g, 1)], dim=1))
    exclusions = Exclusions.build(task.seq_codes[task.gallery_ids], int(task.seq_codes.max()) + 1, task.device)
    return gallery, backend, rhs, exclusions, torch.as_tensor(task.seq_codes[task.query_ids], device=task.device)


def label_index(gallery_ids: np.ndarray, label_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gallery positions sorted by label, and where each label code starts in that order."""
    g_labels = label_codes[gallery_ids]
    order = np.argsort(g_labels, kind="stable")
    return order, np.searchsorted(g_labels[order], np.arange(int(label_codes.max()) + 2))


def relevant_pairs(
    rows: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray, label_codes: np.ndarray, seq_codes: np.ndarray,
    index: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(row index into ``rows``, gallery position) of the relevant, non-excluded pairs of ``rows``
    (``index``: :func:`label_index`, when the caller asks for many chunks)."""
    order, starts = index if index is not None else label_index(gallery_ids, label_codes)
    q_labels = label_codes[query_ids[rows]]
    begin, counts = starts[q_labels], starts[q_labels + 1] - starts[q_labels]
    local = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = order[np.repeat(begin, counts) + offsets]
    keep = seq_codes[gallery_ids[cols]] != seq_codes[query_ids[rows[local]]]
    return local[keep], cols[keep]


def merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of closed intervals as sorted, disjoint ones.

    Example:
        >>> merge_intervals([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0)])
        [(0.0, 2.0), (3.0, 4.0)]
    """
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def exact_pair_distances(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery: torch.Tensor,
    rows: np.ndarray,
    cols: np.ndarray,
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """Exact float32 distances (as float64) of (query row, gallery position) pairs, in pieces.

    The pieces are gathered into two buffers and the results written into one array: new tensors for
    every piece, interleaved with the kept results, fragmented the heap (measured: +4.5 GB resident
    for 3.6M pairs at 50k).
    """
    out = np.empty(len(rows))
    piece = max(1, min(_EXACT_PIECE, len(rows)))
    q_buf = torch.empty(piece, vectors.shape[1], dtype=vectors.dtype)
    g_buf = torch.empty(piece, gallery.shape[1], dtype=gallery.dtype, device=gallery.device)
    with _bookkeeping_threads(device):  # small steps: one thread (measured 10x faster on the loaded box)
        for start in range(0, len(rows), piece):
            m = min(piece, len(rows) - start)
            # index_select: 2x faster than indexing here (measured); the same rows, so the same bits
            q = torch.index_select(vectors, 0, torch.as_tensor(query_ids[rows[start : start + m]]), out=q_buf[:m])
            g = torch.index_select(gallery, 0, torch.as_tensor(cols[start : start + m], device=device), out=g_buf[:m])
            dist = exact_distances(q.to(device), g.unsqueeze(1), distance)[:, 0]
            out[start : start + m] = dist.double().cpu().numpy()
    return out


def relevant_counts(query_ids: np.ndarray, gallery_ids: np.ndarray, label_codes: np.ndarray,
                    seq_codes: np.ndarray) -> np.ndarray:
    """Per query, its relevant gallery items (same label, another sequence), counted without listing them.

    Example:
        >>> labels, seqs = np.array([0, 0, 0, 1]), np.array([0, 1, 1, 2])
        >>> relevant_counts(np.arange(4), np.arange(4), labels, seqs).tolist()
        [2, 1, 1, 0]
    """
    g_labels, g_seqs = label_codes[gallery_ids].astype(np.int64), seq_codes[gallery_ids].astype(np.int64)
    per_label = np.bincount(g_labels, minlength=int(label_codes.max()) + 1)
    n_seqs = int(seq_codes.max()) + 1
    keys, same = np.unique(g_labels * n_seqs + g_seqs, return_counts=True)  # (label, sequence) pairs
    q_keys = label_codes[query_ids].astype(np.int64) * n_seqs + seq_codes[query_ids]
    at = np.minimum(np.searchsorted(keys, q_keys), max(len(keys) - 1, 0))
    in_own_sequence = np.where(keys[at] == q_keys, same[at], 0) if len(keys) else np.zeros(len(q_keys), np.int64)
    return per_label[label_codes[query_ids]] - in_own_sequence


def relevant_at_or_above(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery: torch.Tensor,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    query_groups: np.ndarray,
    thresholds: Sequence[tuple[int, float]],
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """Per ``(group, t)`` (group 0: every query, 1 + g: the queries of group g) the relevant pairs whose
    exact distance is ``>= t``. Their distances are computed in pieces of queries and counted at once, so
    that memory stays bounded however many relevant pairs there are (a few labels: N^2 / labels).

    Example:
        >>> v = torch.tensor([[0.0], [2.0], [3.0], [4.0]])  # labels 0, 0, 1, 1: relevant distances 2, 2, 1, 1
        >>> ids = np.arange(4)
        >>> relevant_at_or_above(v, ids, v, ids, np.array([0, 0, 1, 1]), ids, np.array([0, 0, 0, 1]),
        ...                      [(0, 1.5), (2, 0.5)], "euclidean", torch.device("cpu")).tolist()
        [2, 1]
    """
    out = np.zeros(len(thresholds), dtype=np.int64)
    index = label_index(gallery_ids, label_codes)
    per_query = relevant_counts(query_ids, gallery_ids, label_codes, seq_codes)
    ends = np.searchsorted(np.cumsum(per_query), np.arange(1, int(per_query.sum()) // _RELEVANT_PIECE + 1)
                           * _RELEVANT_PIECE, side="right") + 1
    bounds = np.unique(np.concatenate([[0], np.minimum(ends, len(query_ids)), [len(query_ids)]]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = np.arange(a, b)
        local, cols = relevant_pairs(rows, query_ids, gallery_ids, label_codes, seq_codes, index)
        dist = exact_pair_distances(vectors, query_ids, gallery, rows[local], cols, distance, device)
        groups = query_groups[rows[local]]
        for j, (g, t) in enumerate(thresholds):
            out[j] += int(np.count_nonzero((dist if g == 0 else dist[groups == g - 1]) >= t))
    return out
