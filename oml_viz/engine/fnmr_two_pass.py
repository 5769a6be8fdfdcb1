"""FNMR@FMR by the older two-pass algorithm (:mod:`.fnmr`): it histograms distances derived from the
product for every pair, and serves when the relevant pairs are too many to score directly or when the
faster paths cannot decide.

Pass 1 histograms the relevant and non-relevant distances of every group into ``_TWO_PASS_BINS`` bins. The
two order statistics that t interpolates between fall into known bins; pass 2 collects only the
distances inside those bins, which gives t exactly, and the relevant pairs in the same bins are
compared with t one by one (pairs in other bins are decided by their bin alone).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .fnmr_pairs import FnmrTask
from .gemm import fastest_fp32
from .search import Exclusions, gallery_matrix, query_matrix

# the two-pass algorithm's bins: its second pass keeps every pair of the wanted bins, so finer bins
# keep that small (measured at 50k x 50k, 10 categories, 3 FMR values: 8.5 GB peak with 2^14)
_TWO_PASS_BINS = 1 << 18
_BLOCK_ELEMENTS = 1 << 23  # pairs per chunk: the chunk's int64 bin indices stay ~64 MB


def _distance_chunks(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    distance: str,
    device: torch.device,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (query slice, distances (R, G), excluded pairs (rows, cols), relevant mask) per chunk."""
    n_gallery = len(gallery_ids)
    gallery = vectors[torch.as_tensor(gallery_ids)].to(device)
    backend = fastest_fp32(device)
    rhs = backend.prepare(gallery_matrix(gallery, distance)[:n_gallery])
    gallery_labels = torch.as_tensor(label_codes[gallery_ids], device=device)
    exclusions = Exclusions.build(seq_codes[gallery_ids], int(seq_codes.max()) + 1, device)
    query_seq = torch.as_tensor(seq_codes[query_ids], device=device)
    query_labels = torch.as_tensor(label_codes[query_ids], device=device)
    chunk = max(1, _BLOCK_ELEMENTS // n_gallery)
    for start in range(0, len(query_ids), chunk):
        rows = slice(start, min(start + chunk, len(query_ids)))
        queries = vectors[torch.as_tensor(query_ids[rows])].to(device)
        scores = backend.mm(backend.prepare(query_matrix(queries)), rhs)
        if distance == "euclidean":
            dist = (scores + (queries * queries).sum(1, keepdim=True)).clamp_(min=0).sqrt_()
        else:
            dist = (scores + 1).clamp_(0, 2)
        relevant = query_labels[rows].unsqueeze(1) == gallery_labels.unsqueeze(0)
        yield rows, dist, exclusions.pairs(query_seq[rows]), relevant


def quantile_plans(neg_hist: np.ndarray, pos_hist: np.ndarray, fmr_vals: Sequence[float]
                   ) -> tuple[list[tuple | None], np.ndarray]:
    """Where the two order statistics of each (group, p) quantile lie, from per-group histograms.

    ``neg_hist`` / ``pos_hist``: (groups, bins) counts of non-relevant / relevant pairs. Returns one
    plan per (group, p), group-major: ``(g, h, r0, r1, b0, b1)`` (h = (n_neg - 1) p, ranks r0, r1
    and their bins), or None when the group has no pair of a kind; and the (groups, bins) mask of
    the bins whose pairs a second pass must collect.

    Example:
        >>> plans, wanted = quantile_plans(np.array([[2, 0, 2]]), np.array([[1, 0, 0]]), [0.5])
        >>> plans, wanted.tolist()
        ([(0, 1.5, 1, 2, 0, 2)], [[True, True, True]])
    """
    plans: list[tuple | None] = []
    wanted = np.zeros(neg_hist.shape, dtype=bool)
    for g in range(neg_hist.shape[0]):
        n_neg, cum = int(neg_hist[g].sum()), np.cumsum(neg_hist[g])
        for p in fmr_vals:
            if n_neg == 0 or pos_hist[g].sum() == 0:
                plans.append(None)
                continue
            h = (n_neg - 1) * float(p)
            r0 = int(np.floor(h))
            r1 = min(r0 + 1, n_neg - 1)
            b0, b1 = (int(np.searchsorted(cum, r, side="right")) for r in (r0, r1))
            wanted[g, b0 : b1 + 1] = True
            plans.append((g, h, r0, r1, b0, b1))
    return plans, wanted


def fnmr_from_bins(plans: list[tuple | None], tables: list[np.ndarray], neg_hist: np.ndarray, pos_hist: np.ndarray,
                   n_groups: int, fmr_vals: Sequence[float]) -> np.ndarray:
    """FNMR per (group, p) from the histograms and the distances collected in the wanted bins.

    ``plans``: from :func:`quantile_plans`; ``tables``: rows ``[distance, bin, relevant, group row]`` of the
    pairs collected for OVERALL and for the groups. The order statistics come from the collected
    non-relevant distances, the relevant pairs above t from the bins above and the collected ones.
    """
    out = np.full((1 + n_groups, len(fmr_vals)), np.nan)
    for i, plan in enumerate(plans):
        if plan is None:
            continue
        g, h, r0, r1, b0, b1 = plan
        table = tables[0] if g == 0 else tables[1][tables[1][:, 3] == g]
        in_bins = (table[:, 1] >= b0) & (table[:, 1] <= b1)
        is_rel = table[:, 2] > 0
        neg_in = np.sort(table[in_bins & ~is_rel, 0])
        below = int(neg_hist[g, :b0].sum())
        x0, x1 = neg_in[r0 - below], neg_in[r1 - below]
        t = x0 + (h - r0) * (x1 - x0)
        n_above = int(pos_hist[g, b1 + 1 :].sum()) + int((table[in_bins & is_rel, 0] >= t).sum())
        out[g, i % len(fmr_vals)] = n_above / pos_hist[g].sum()
    return out


def fnmr_two_pass(task: FnmrTask) -> np.ndarray:
    """:func:`fnmr_at_fmr` on distances from the score product, histogrammed over every pair."""
    vectors, query_ids, gallery_ids, label_codes, seq_codes, query_groups, n_groups, fmr_vals, distance, device = task
    if distance == "euclidean":
        d_max = 2 * float(vectors.norm(dim=1).max()) * (1 + 1e-5) + 1e-12
    else:
        d_max = 2.0 * (1 + 1e-6)
    scale = _TWO_PASS_BINS / d_max
    groups = torch.as_tensor(query_groups, device=device)
    args = (vectors, query_ids, gallery_ids, label_codes, seq_codes, distance, device)

    def bins_of(dist: torch.Tensor) -> torch.Tensor:
        return (dist * scale).long().clamp_(0, _TWO_PASS_BINS - 1)

    # pass 1: one histogram of (relevant, group, bin) over every pair, excluded pairs in a trash
    # bin; OVERALL is the sum over groups
    size = n_groups * _TWO_PASS_BINS
    hist = torch.zeros(2 * size + 1, dtype=torch.int64, device=device)
    for rows, dist, (ex_rows, ex_cols), relevant in _distance_chunks(*args):
        index = bins_of(dist)
        index += (groups[rows] * _TWO_PASS_BINS).unsqueeze(1)
        index += relevant * size
        index[ex_rows, ex_cols] = 2 * size
        hist += torch.bincount(index.view(-1), minlength=2 * size + 1)
    hist = hist[: 2 * size].view(2, n_groups, _TWO_PASS_BINS).cpu().numpy()
    hist = np.concatenate([hist.sum(axis=1, keepdims=True), hist], axis=1)  # (2, 1 + G, bins)
    neg_hist, pos_hist = hist[0], hist[1]

    # which bins hold the two order statistics of each (group, p)
    plans, wanted = quantile_plans(neg_hist, pos_hist, fmr_vals)

    # pass 2: collect the distances inside the wanted bins: OVERALL's bins, and each query's
    # group's bins (one table lookup per pair, whatever the number of groups)
    wanted_flat = torch.as_tensor(wanted.reshape(-1), device=device)
    collected: list[list[torch.Tensor]] = [[], []]  # OVERALL, groups: rows of [dist, bin, rel, group row]
    for rows, dist, (ex_rows, ex_cols), relevant in _distance_chunks(*args):
        b = bins_of(dist)
        group_row = (1 + groups[rows]).unsqueeze(1)
        for_all = wanted_flat[b]
        for_group = wanted_flat[b + group_row * _TWO_PASS_BINS]
        keep = for_all | for_group
        keep[ex_rows, ex_cols] = False
        r, c = keep.nonzero().unbind(1)  # few pairs: gather everything else at them
        values = torch.stack(
            [dist[r, c].double(), b[r, c].double(), relevant[r, c].double(), group_row[r, 0].double()], 1
        )
        collected[0].append(values[for_all[r, c]].cpu())
        collected[1].append(values[for_group[r, c]].cpu())
    tables = [torch.cat(c).numpy() if c else np.empty((0, 4)) for c in collected]

    return fnmr_from_bins(plans, tables, neg_hist, pos_hist, n_groups, fmr_vals)
