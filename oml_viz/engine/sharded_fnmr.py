"""FNMR@FMR of a sharded result: the two streaming passes of :mod:`.fnmr`, over query chunks.

Same definition and same method as the single-process version (histogram pass, then collection
of the distances inside the bins that hold the quantile's order statistics); here each process
scores the gathered query chunks against its own gallery shard, the histograms are all-reduced
and the (few) collected distances all-gathered, so every process ends with the same values.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import distributed as D
from .fnmr_two_pass import fnmr_from_bins, quantile_plans
from .search import Exclusions, gallery_matrix, query_matrix

N_BINS = 1 << 14  # the histogram's bins per group (all-reduced every pass)
_BLOCK_ELEMENTS = 1 << 23  # (query, gallery) pairs per step and process, as the single-process passes

if TYPE_CHECKING:
    from .sharded import ShardedRetrievalResult


def _chunks(res: ShardedRetrievalResult) -> Iterator[tuple[np.ndarray, torch.Tensor, tuple, torch.Tensor]]:
    """(global query rows, distances (R, G_local), excluded pairs, relevant mask) per step."""
    group = res._group
    rank, world = D.group_info(group, "metrics(fmr_vals=...)")
    device, comm = res._device, D.comm_device(group)
    vectors = res._local_vectors
    n_local = len(vectors)
    lo = res._offset
    local_gallery = np.flatnonzero(res.is_gallery[lo : lo + n_local])
    gallery_global = local_gallery + lo
    gallery = vectors[torch.as_tensor(local_gallery)].to(device)
    rhs_t = gallery_matrix(gallery, res.distance)[: len(local_gallery)].T
    gallery_labels = torch.as_tensor(res._label_codes[gallery_global], device=device)

    counts = D.all_gather_objects(n_local, group)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    q_counts = [int(res.is_query[offsets[r] : offsets[r + 1]].sum()) for r in range(world)]
    q_offsets = np.concatenate([[0], np.cumsum(q_counts)]).astype(np.int64)
    local_queries = np.flatnonzero(res.is_query[lo : lo + n_local])
    widest = max(int(res.is_gallery[offsets[r] : offsets[r + 1]].sum()) for r in range(world))
    chunk = max(1, _BLOCK_ELEMENTS // (world * max(widest, 1)))  # each step's (W c, G_r) distances stay bounded
    for step in range(max(-(-c // chunk) for c in q_counts)):
        begin = step * chunk
        sizes = [max(0, min(chunk, c - begin)) for c in q_counts]
        mine = local_queries[begin : begin + sizes[rank]]
        sent = vectors[torch.as_tensor(mine)].to(comm) if len(mine) else torch.zeros(0, vectors.shape[1], device=comm)
        queries = torch.cat([g.to(device) for g in D.all_gather_rows(sent, group, counts=sizes)])
        rows = np.concatenate([q_offsets[r] + begin + np.arange(sizes[r]) for r in range(world)]).astype(np.int64)
        if len(local_gallery) == 0:
            continue
        query_global = res.query_ids[rows]
        _, seq = np.unique(np.concatenate([res._seq_codes[query_global], res._seq_codes[gallery_global]]),
                           return_inverse=True)
        exclusions = Exclusions.build(seq[len(rows):].astype(np.int64), int(seq.max()) + 1, device)
        scores = torch.mm(query_matrix(queries), rhs_t)
        if res.distance == "euclidean":
            dist = (scores + (queries * queries).sum(1, keepdim=True)).clamp_(min=0).sqrt_()
        else:
            dist = (scores + 1).clamp_(0, 2)
        query_labels = torch.as_tensor(res._label_codes[query_global], device=device)
        relevant = query_labels.unsqueeze(1) == gallery_labels.unsqueeze(0)
        excluded = exclusions.pairs(torch.as_tensor(seq[: len(rows)].astype(np.int64), device=device))
        yield rows, dist, excluded, relevant


def sharded_fnmr_at_fmr(
    res: ShardedRetrievalResult, query_groups: np.ndarray, n_groups: int, fmr_vals: Sequence[float]
) -> np.ndarray:
    """(1 + n_groups, len(fmr_vals)) FNMR values, row 0 OVERALL; identical on every process."""
    import torch.distributed as dist

    group, device, comm = res._group, res._device, D.comm_device(res._group)
    if res.distance == "euclidean":
        local_max = res._local_vectors.norm(dim=1).max() if len(res._local_vectors) else torch.tensor(0.0)
        top = local_max.reshape(1).float().to(comm)
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
        d_max = 2 * float(top) * (1 + 1e-5) + 1e-12
    else:
        d_max = 2.0 * (1 + 1e-6)
    scale = N_BINS / d_max
    groups = torch.as_tensor(query_groups, device=device)

    def bins_of(d: torch.Tensor) -> torch.Tensor:
        return (d * scale).long().clamp_(0, N_BINS - 1)

    size = n_groups * N_BINS
    hist = torch.zeros(2 * size + 1, dtype=torch.int64, device=device)
    for rows, d, (ex_rows, ex_cols), relevant in _chunks(res):
        index = bins_of(d)
        index += (groups[torch.as_tensor(rows, device=device)] * N_BINS).unsqueeze(1)
        index += relevant * size
        index[ex_rows, ex_cols] = 2 * size
        hist += torch.bincount(index.view(-1), minlength=2 * size + 1)
    hist = hist.to(comm)
    dist.all_reduce(hist, group=group)
    D._count(hist.numel() * 8, hist.numel() * 8)
    hist = hist[: 2 * size].view(2, n_groups, N_BINS).cpu().numpy()
    hist = np.concatenate([hist.sum(axis=1, keepdims=True), hist], axis=1)
    neg_hist, pos_hist = hist[0], hist[1]

    plans, wanted = quantile_plans(neg_hist, pos_hist, fmr_vals)

    wanted_flat = torch.as_tensor(wanted.reshape(-1), device=device)
    collected: list[list[torch.Tensor]] = [[], []]
    for rows, d, (ex_rows, ex_cols), relevant in _chunks(res):
        b = bins_of(d)
        group_row = (1 + groups[torch.as_tensor(rows, device=device)]).unsqueeze(1)
        for_all = wanted_flat[b]
        for_group = wanted_flat[b + group_row * N_BINS]
        keep = for_all | for_group
        keep[ex_rows, ex_cols] = False
        r, c = keep.nonzero().unbind(1)
        values = torch.stack([d[r, c].double(), b[r, c].double(), relevant[r, c].double(),
                              group_row[r, 0].double()], 1)
        collected[0].append(values[for_all[r, c]].cpu())
        collected[1].append(values[for_group[r, c]].cpu())
    tables = []
    for parts in collected:
        local = torch.cat(parts) if parts else torch.zeros(0, 4, dtype=torch.float64)
        tables.append(torch.cat([t.cpu() for t in D.all_gather_rows(local.to(comm), group)]).numpy())

    return fnmr_from_bins(plans, tables, neg_hist, pos_hist, n_groups, fmr_vals)
