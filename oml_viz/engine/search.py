"""Batched exact top-k search of queries against a gallery, with bounded memory.

The hot loop is one matrix product per query chunk on *augmented* vectors, so that the product is
already a score that ranks like the distance (no separate norm pass):

- euclidean: ``[q, 1] . [-2g, |g|^2] = |g|^2 - 2 q.g``  (= squared distance - |q|^2)
- cosine:    ``[q/|q|, 1] . [-g/|g|, 0] = -cos(q, g)``

then an exact grouped top-k (:mod:`.topk`). The k winners' distances are recomputed directly from
the vectors (no cancellation error) and re-sorted by (distance, item id).
"""
from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .candidates import FilterSearch, ids_are_packable
from .leave_one_out import leave_one_out_search, tile_width
from .gemm import choose_backend
from .topk import GROUP, ordered_int, smallest_k

_PAD_SCORE = 1e38  # padding columns: finite so that 0 * pad never makes NaN in the product
_INVALID = 1e37  # any score above this is padding or an excluded pair
_CPU_BLOCK_BYTES = 192 * 2**20
_PROGRESS_MIN_PAIRS = 2e8
_MEASURE_MIN_PAIRS = 5e7  # below this the backend measurement would cost more than it saves
_SYMMETRIC_MIN_PAIRS = 4e8  # below (20k items) the leave-one-out pass does not pay (10k: 0.72 s vs 0.56 s row by row)
_SYMMETRIC_TABLE_BYTES = 256 * 2**20  # its table on CPU (bf16: N <= ~128k; larger sets go row by row)


@dataclass
class Exclusions:
    """Gallery positions that each sequence id excludes (CSR layout over sequence codes)."""

    starts: torch.Tensor  # (n_codes + 1,) offsets into ``positions``
    positions: torch.Tensor  # gallery positions sorted by sequence code
    at_most_one: bool  # no sequence holds two gallery items
    only: torch.Tensor  # with at_most_one: the gallery position of each code, or -1

    @classmethod
    def build(cls, gallery_seq: np.ndarray, n_codes: int, device: torch.device) -> Exclusions:
        order = np.argsort(gallery_seq, kind="stable")
        counts = np.bincount(gallery_seq, minlength=n_codes)
        starts = np.concatenate([[0], np.cumsum(counts)])
        only = np.full(n_codes, -1, dtype=np.int64)
        only[gallery_seq] = np.arange(len(gallery_seq))
        return cls(
            torch.as_tensor(starts, device=device),
            torch.as_tensor(order, device=device),
            bool(counts.max(initial=0) <= 1),
            torch.as_tensor(only, device=device),
        )

    def pairs(self, query_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, gallery position) of every excluded pair for a chunk of queries."""
        if self.at_most_one:  # the common case: each query excludes only itself
            rows = torch.arange(len(query_seq), device=query_seq.device)
            pos = self.only[query_seq]
            keep = pos >= 0
            return rows[keep], pos[keep]
        begin, end = self.starts[query_seq], self.starts[query_seq + 1]
        counts = end - begin
        rows = torch.repeat_interleave(torch.arange(len(query_seq), device=counts.device), counts)
        offsets = torch.arange(int(counts.sum()), device=counts.device)
        offsets = offsets - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        return rows, self.positions[torch.repeat_interleave(begin, counts) + offsets]


def unit_rows(x: torch.Tensor, name: str = "embeddings") -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    zero = (norms.squeeze(1) == 0).nonzero().flatten()
    if len(zero):
        rows = ", ".join(str(int(r)) for r in zero[:5])
        raise ValueError(f"{name} has zero vectors (rows [{rows}]): cosine distance is undefined")
    return x / norms


def gallery_matrix(gallery: torch.Tensor, distance: str) -> torch.Tensor:
    """(G padded to a multiple of GROUP, D + 1) right-hand side of the score product."""
    n, dim = gallery.shape
    padded = -(-n // GROUP) * GROUP
    out = torch.zeros(padded, dim + 1, dtype=torch.float32, device=gallery.device)
    if distance == "euclidean":
        out[:n, :dim] = -2 * gallery
        out[:n, dim] = (gallery * gallery).sum(1)
    else:
        out[:n, :dim] = -gallery
    out[n:, dim] = _PAD_SCORE
    return out


def query_matrix(queries: torch.Tensor) -> torch.Tensor:
    return torch.cat([queries, queries.new_ones(len(queries), 1)], dim=1)


def exact_distances(queries: torch.Tensor, gallery: torch.Tensor, distance: str) -> torch.Tensor:
    """Distances of paired rows: queries (R, D) against gallery (R, k, D)."""
    if distance == "euclidean":
        return (queries.unsqueeze(1) - gallery).norm(dim=2)
    return (1 - (queries.unsqueeze(1) * gallery).sum(2)).clamp_(min=0)


@functools.lru_cache(maxsize=1)
def filter_block_bytes() -> int:
    """Bytes of the filter's score block on CPU: 3/4 of the largest CPU cache, within 8-48 MB.

    The block is the product's output. Measured on a 2-core AMD EPYC (32 MB L3): torch's bf16 GEMM runs
    at ~400 GFLOP/s while its output fits the L3 and ~310 beyond (50k: retrieval 7.3 s with 24 MB
    blocks against 8.5 s with 48 MB); numpy's float32 GEMM did not care. Unknown cache: 24 MB.
    """
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip().upper()
            sizes.append(int(text.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1))
        except (OSError, ValueError):
            continue
    cache = max(sizes, default=32 * 2**20)
    return int(min(max(cache * 3 // 4, 8 * 2**20), 48 * 2**20))


def auto_batch_size(n_gallery: int, device: torch.device) -> int:
    """Queries per chunk so that a chunk's score block fits the device's free memory."""
    per_row = 4 * (-(-n_gallery // GROUP) * GROUP) * 2  # scores + transient copies
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = _CPU_BLOCK_BYTES
    return int(max(1, min(budget // per_row, 65536)))


def finalize(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    gallery_ids: torch.Tensor,
    values: torch.Tensor,
    cols: torch.Tensor,
    distance: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and exact distances of selected gallery positions, ordered by (distance, id).

    ``values`` are the ranking scores of the selection (above ``_INVALID`` for an empty slot).
    """
    valid = values < _INVALID
    safe_cols = torch.where(valid, cols, 0)
    dist = exact_distances(queries, gallery[safe_cols], distance)
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))
    ids = torch.where(valid, gallery_ids[safe_cols], -1)
    order = torch.argsort((ordered_int(dist) << 32) | torch.where(valid, ids, 2**31), dim=1)
    return ids.gather(1, order).cpu().numpy(), dist.gather(1, order).cpu().numpy()


def search(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    seq_codes: np.ndarray,
    *,
    k: int,
    distance: str,
    device: torch.device,
    batch_size: int | None,
    progress: bool | None,
    method: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery items of every query: (retrieved item ids, distances), padded with -1 / inf.

    ``vectors`` are all N embeddings (already unit length for cosine). Gallery items whose sequence
    code equals the query's are excluded (every item has a code, so this also excludes the query
    itself).

    ``method`` (default: env ``OML_VIZ_SEARCH``, else ``"filter"``): ``"filter"`` is the exact
    filter-and-verify search of :mod:`.candidates` on the fastest measured backend, scoring each pair
    once when the queries are the gallery (:mod:`.leave_one_out`); ``"filter-rows"`` the same search row
    by row (the reference the leave-one-out pass is tested against); ``"fp32"`` the
    single float32 pass that ranks by the augmented score (kept as the reference the fast path is
    tested against; it can differ only where two distances agree to float32 rounding).
    """
    method = method or os.environ.get("OML_VIZ_SEARCH") or "filter"
    if method not in ("filter", "filter-rows", "fp32"):
        raise ValueError(f"method must be 'filter', 'filter-rows' or 'fp32', got {method!r}")
    if method != "fp32" and ids_are_packable(gallery_ids):
        return _search_filter(vectors, query_ids, gallery_ids, seq_codes, k=k, distance=distance,
                              device=device, batch_size=batch_size, progress=progress,
                              symmetric=method == "filter")
    exclusions = Exclusions.build(seq_codes[gallery_ids], int(seq_codes.max()) + 1, device)
    if progress is None:
        progress = len(query_ids) * len(gallery_ids) >= _PROGRESS_MIN_PAIRS
    gallery = vectors[torch.as_tensor(gallery_ids)].to(device)
    rhs_t = gallery_matrix(gallery, distance).T  # transposed view: the GEMM reads it as is
    query_seq = torch.as_tensor(seq_codes[query_ids], device=device)
    gallery_ids_dev = torch.as_tensor(gallery_ids, device=device)
    n_query = len(query_ids)
    chunk = batch_size or auto_batch_size(len(gallery_ids), device)
    out_ids = np.empty((n_query, k), dtype=np.int64)
    out_dist = np.empty((n_query, k), dtype=np.float32)
    starts = range(0, n_query, chunk)
    for start in tqdm(starts, desc="retrieval", unit="chunk", disable=not progress, leave=False):
        stop = min(start + chunk, n_query)
        queries = vectors[torch.as_tensor(query_ids[start:stop])].to(device)
        scores = torch.mm(query_matrix(queries), rhs_t)
        rows, cols = exclusions.pairs(query_seq[start:stop])
        scores[rows, cols] = float("inf")
        values, cols = smallest_k(scores, k)
        del scores
        out_ids[start:stop], out_dist[start:stop] = finalize(queries, gallery, gallery_ids_dev, values, cols, distance)
    return out_ids, out_dist


def _search_filter(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    seq_codes: np.ndarray,
    *,
    k: int,
    distance: str,
    device: torch.device,
    batch_size: int | None,
    progress: bool | None,
    symmetric: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search` by filter and verify (:class:`.candidates.FilterSearch`): the exact answer."""
    exclusions = Exclusions.build(seq_codes[gallery_ids], int(seq_codes.max()) + 1, device)
    n_query, n_gallery = len(query_ids), len(gallery_ids)
    if progress is None:
        progress = n_query * n_gallery >= _PROGRESS_MIN_PAIRS
    if n_gallery == len(vectors) and np.array_equal(gallery_ids, np.arange(n_gallery)):
        gallery = vectors.to(device)  # no copy of the whole set
    else:
        gallery = vectors[torch.as_tensor(gallery_ids)].to(device)
    big = n_query * n_gallery >= _MEASURE_MIN_PAIRS
    backend = choose_backend(device, measure=big)
    # the leave-one-out pass keeps a (N, N / 128) table of group minima: only where it fits the budget.
    # CPU only for now: its tiles are sized to CPU caches and it has not been measured on a GPU
    groups = -(-n_gallery // GROUP)
    table = n_gallery * groups * (2 if backend.dtype == torch.bfloat16 else 4)
    leave_one_out = (symmetric and device.type == "cpu" and n_query * n_gallery >= _SYMMETRIC_MIN_PAIRS
                     and table <= _SYMMETRIC_TABLE_BYTES and np.array_equal(query_ids, gallery_ids))
    if leave_one_out:
        block = filter_block_bytes()
        spare = tile_width(groups * GROUP, backend, block)
    finder = FilterSearch(gallery, torch.as_tensor(gallery_ids, device=device), distance, k, backend,
                          spare=spare if leave_one_out else 0)
    if leave_one_out:
        found = leave_one_out_search(finder, seq_codes[gallery_ids], block, progress)
        if found is not None:
            return found
    if batch_size:
        chunk = batch_size
    elif device.type == "cuda":
        chunk = auto_batch_size(n_gallery, device)
    else:
        per_row = finder.padded * torch.finfo(finder.backend.dtype).bits // 8
        chunk = int(max(1, min(filter_block_bytes() // per_row, 65536)))
    query_seq = torch.as_tensor(seq_codes[query_ids], device=device)
    out_ids = np.empty((n_query, k), dtype=np.int64)
    out_dist = np.empty((n_query, k), dtype=np.float32)
    starts = range(0, n_query, chunk)
    for start in tqdm(starts, desc="retrieval", unit="chunk", disable=not progress, leave=False):
        stop = min(start + chunk, n_query)
        queries = vectors[torch.as_tensor(query_ids[start:stop])].to(device)
        ids, dist = finder.run(queries, exclusions.pairs(query_seq[start:stop]))
        out_ids[start:stop], out_dist[start:stop] = ids.cpu().numpy(), dist.cpu().numpy()
    return out_ids, out_dist
