"""Exact FNMR@FMR without a Q x G matrix.

:func:`fnmr_at_fmr` (the default) scores the relevant pairs directly from the label groups, with the
exact distances of :func:`.search.exact_distances` (the ones ``retrieve`` reports); only the
non-relevant distances' quantile needs passes over every pair, in query chunks sorted by group:

1. one product per chunk on the fastest float32 backend, with a shift column so that the result
   approximates d^2 (euclidean) or d (cosine) within a proven bound W (:mod:`.candidates`);
   relevant and excluded pairs are set to +inf; ``torch.histc`` adds the chunk to its group's
   histogram (OVERALL is the sum);
2. the bins of the order statistics that the quantile interpolates give, widened by 2W and one
   bin, a narrow window per (group, p); a second pass counts the pairs below each window and
   collects those inside it; their exact distances give the order statistics exactly (checked:
   a window that does not provably hold them falls back to the older algorithm below).

The older algorithm (``_fnmr_two_pass``) histograms distances derived from the product for every
pair; it serves when the relevant pairs are too many to score directly.

For each group of queries (OVERALL and each category) the threshold t is the p-quantile (linear
interpolation, as ``numpy.quantile``) of the non-relevant pairs' distances, and FNMR is the share of
relevant pairs with distance >= t.

Pass 1 histograms the relevant and non-relevant distances of every group into ``_TWO_PASS_BINS`` bins. The
two order statistics that t interpolates between fall into known bins; pass 2 collects only the
distances inside those bins, which gives t exactly, and the relevant pairs in the same bins are
compared with t one by one (pairs in other bins are decided by their bin alone).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .candidates import Bound
from .gemm import fastest_fp32
from .search import Exclusions, exact_distances, gallery_matrix, query_matrix

N_BINS = 1 << 14  # (the sharded FNMR's histogram)
# the two-pass algorithm's bins: its second pass keeps every pair of the wanted bins, so finer bins
# keep that small (measured at 50k x 50k, 10 categories, 3 FMR values: 8.5 GB peak with 2^14)
_TWO_PASS_BINS = 1 << 18
_FINE_BINS = 1 << 18  # histogram of the fast path (1 MB: stays in cache)
_MAX_WINDOW_PAIRS = 1_500_000  # pairs whose exact distance pass 2 may need; more: the older algorithm
# above this many pairs the windows (~4 W wide, W the float32 product's proven error) hold millions of
# pairs to verify, and the older algorithm is faster (measured: 1.8x faster at 10k^2, slower at 30k^2)
_MAX_WINDOWED_PAIRS = 3e8
_MAX_RELEVANT = 1 << 25  # relevant pairs scored directly; more: the older algorithm
_BLOCK_BYTES = 64 * 2**20
_U32 = 2.0**-24
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


def _fnmr_two_pass(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    query_groups: np.ndarray,
    n_groups: int,
    fmr_vals: Sequence[float],
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """:func:`fnmr_at_fmr` on distances from the score product, histogrammed over every pair."""
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
    plans = []
    wanted = np.zeros((1 + n_groups, _TWO_PASS_BINS), dtype=bool)
    for g in range(1 + n_groups):
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


def fnmr_at_fmr(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    query_groups: np.ndarray,
    n_groups: int,
    fmr_vals: Sequence[float],
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """(1 + n_groups, len(fmr_vals)) FNMR values: row 0 is OVERALL, row 1 + g is group g.

    Example:
        >>> v = torch.tensor([[0.0], [2.0], [3.0], [4.0]])
        >>> ids = np.arange(4)  # labels 0, 0, 1, 1: relevant distances 2, 2, 1, 1
        >>> fnmr_at_fmr(v, ids, ids, np.array([0, 0, 1, 1]), ids, np.zeros(4, int), 1, [0.3], "euclidean",
        ...             torch.device("cpu")).tolist()
        [[0.5], [0.5]]
    """
    args = (vectors, query_ids, gallery_ids, label_codes, seq_codes, query_groups, n_groups, fmr_vals, distance, device)
    g_labels = label_codes[gallery_ids]
    per_label = np.bincount(g_labels, minlength=int(label_codes.max()) + 1)
    too_big = len(query_ids) * len(gallery_ids) > _MAX_WINDOWED_PAIRS
    if too_big or int(per_label[label_codes[query_ids]].sum()) > _MAX_RELEVANT:
        return _fnmr_two_pass(*args)
    out = _fnmr_windows(*args)
    return _fnmr_two_pass(*args) if out is None else out


def _relevant_pairs(
    rows: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray, label_codes: np.ndarray, seq_codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row index into ``rows``, gallery position) of the relevant, non-excluded pairs of ``rows``."""
    g_labels = label_codes[gallery_ids]
    order = np.argsort(g_labels, kind="stable")
    starts = np.searchsorted(g_labels[order], np.arange(int(label_codes.max()) + 2))
    q_labels = label_codes[query_ids[rows]]
    begin, counts = starts[q_labels], starts[q_labels + 1] - starts[q_labels]
    local = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = order[np.repeat(begin, counts) + offsets]
    keep = seq_codes[gallery_ids[cols]] != seq_codes[query_ids[rows[local]]]
    return local[keep], cols[keep]


def _fnmr_windows(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    label_codes: np.ndarray,
    seq_codes: np.ndarray,
    query_groups: np.ndarray,
    n_groups: int,
    fmr_vals: Sequence[float],
    distance: str,
    device: torch.device,
) -> np.ndarray | None:
    """The fast path of :func:`fnmr_at_fmr`; None when a window fails its check."""
    euclid = distance == "euclidean"
    n_g, dim = len(gallery_ids), vectors.shape[1]
    gallery = vectors[torch.as_tensor(gallery_ids)].to(device)
    base = gallery_matrix(gallery, distance)[:n_g]
    backend = fastest_fp32(device)
    rhs = backend.prepare(torch.cat([base, base.new_ones(n_g, 1)], dim=1))
    del base
    exclusions = Exclusions.build(seq_codes[gallery_ids], int(seq_codes.max()) + 1, device)
    query_seq = torch.as_tensor(seq_codes[query_ids], device=device)

    # relevant pairs: exact distances, straight from the label groups
    all_rows = np.arange(len(query_ids))
    rel_rows, rel_cols = _relevant_pairs(all_rows, query_ids, gallery_ids, label_codes, seq_codes)
    rel_dist = _exact(vectors, query_ids, gallery, rel_rows, rel_cols, distance, device)
    rel_group = query_groups[rel_rows]

    # the error W of the approximate value y (d^2 or d) against the exact one, in y units
    q_all = vectors[torch.as_tensor(query_ids)].double()
    q_sq_all = (q_all * q_all).sum(1)
    g_max = float(gallery.double().norm(dim=1).max())
    q_max = float(q_sq_all.max().sqrt())
    shift_all = q_sq_all.float().double() if euclid else torch.ones_like(q_sq_all)
    bound = Bound.of(backend, dim, distance)
    w = bound.at(q_sq_all.sqrt(), torch.tensor(g_max, dtype=torch.float64), shift_all)
    if euclid:
        w = w + (shift_all - q_sq_all).abs()
    y_max = (q_max + g_max) ** 2 if euclid else 2.0
    theta = 2 * (dim + 8) * _U32  # relative error of the exact formula's d^2 (cosine: of 1 - q.g)
    under = (dim + 3) * 2.0**-125 + _U32 * 4
    big_w = float(w.max()) * 1.01 + theta * y_max + under + 1e-30
    lo, hi = -2 * big_w, y_max + 2 * big_w
    width = (hi - lo) / _FINE_BINS

    # chunks of queries sorted by group, never straddling two groups
    order = np.argsort(query_groups, kind="stable")
    chunk = max(1, _BLOCK_BYTES // (4 * max(n_g, 1)))
    chunks = []
    for g in range(n_groups):
        rows_g = order[query_groups[order] == g]
        chunks += [(g, rows_g[i : i + chunk]) for i in range(0, len(rows_g), chunk)]

    def scores(rows: np.ndarray) -> torch.Tensor:
        q = vectors[torch.as_tensor(query_ids[rows])].to(device)
        shift = shift_all[torch.as_tensor(rows)].float().to(device).unsqueeze(1)
        y = backend.mm(backend.prepare(torch.cat([query_matrix(q), shift], dim=1)), rhs)
        r, c = _relevant_pairs(rows, query_ids, gallery_ids, label_codes, seq_codes)
        y[torch.as_tensor(r, device=device), torch.as_tensor(c, device=device)] = float("inf")
        y[exclusions.pairs(query_seq[torch.as_tensor(rows, device=device)])] = float("inf")
        return y

    # pass 1: histograms per group
    hist = torch.zeros(n_groups, _FINE_BINS, dtype=torch.float64)
    for g, rows in chunks:
        hist[g] += torch.histc(scores(rows), bins=_FINE_BINS, min=lo, max=hi).double().cpu()
    hist = torch.cat([hist.sum(0, keepdim=True), hist]).numpy()  # (1 + G, bins)

    # windows of the order statistics, in y units
    plans = []
    for g in range(1 + n_groups):
        n_neg, cum = int(round(hist[g].sum())), np.cumsum(hist[g])
        n_pos = int(((rel_group == g - 1) | (g == 0)).sum())
        for p in fmr_vals:
            if n_neg == 0 or n_pos == 0:
                plans.append(None)
                continue
            h = (n_neg - 1) * float(p)
            r0 = int(np.floor(h))
            r1 = min(r0 + 1, n_neg - 1)
            b0, b1 = (int(np.searchsorted(cum, r + 0.5, side="right")) for r in (r0, r1))
            plans.append((g, h, r0, r1, lo + (b0 - 1) * width - 2 * big_w, lo + (b1 + 2) * width + 2 * big_w))

    # the pairs pass 2 would verify, from the histogram (each window widened by a bin); too many:
    # the older algorithm is cheaper
    cum_all = np.cumsum(hist, axis=1)
    expected = 0.0
    for plan in plans:
        if plan is not None:
            lo_bin = max(int((plan[4] - lo) / width) - 1, 0)
            hi_bin = min(int((plan[5] - lo) / width) + 1, _FINE_BINS - 1)
            expected += cum_all[plan[0], hi_bin] - (cum_all[plan[0], lo_bin - 1] if lo_bin else 0)
    if expected > _MAX_WINDOW_PAIRS:
        return None

    # pass 2: below-counts and the pairs inside each window (merged per chunk into disjoint intervals)
    below = np.zeros(len(plans), dtype=np.int64)
    inside: list[list[np.ndarray]] = [[] for _ in plans]
    for g, rows in chunks:
        mine = [i for i, pl in enumerate(plans) if pl is not None and pl[0] in (0, g + 1)]
        if not mine:
            continue
        y = scores(rows)
        intervals = _merge([(plans[i][4], plans[i][5]) for i in mine])
        edges = torch.tensor([e for iv in intervals for e in iv], dtype=y.dtype, device=device)
        edges[1::2] = torch.nextafter(edges[1::2], edges.new_tensor(float("inf")))  # closed windows
        bucket = torch.bucketize(y, edges, out_int32=True, right=True)
        counts = torch.bincount(bucket.view(-1), minlength=len(edges) + 1).cpu().numpy()
        r, c = (bucket & 1).nonzero().unbind(1)
        y_in = y[r, c].double().cpu().numpy()
        exact = _exact(vectors, query_ids, gallery, rows[r.cpu().numpy()], c.cpu().numpy(), distance, device)
        for i in mine:
            a, b = plans[i][4], plans[i][5]
            j = next(j for j, iv in enumerate(intervals) if iv[0] <= a and b <= iv[1])
            sel = (y_in >= a) & (y_in <= b)
            below[i] += int(counts[: 2 * j + 1].sum()) + int(((y_in >= intervals[j][0]) & (y_in < a)).sum())
            inside[i].append(np.stack([exact[sel], y_in[sel]], 1))

    out = np.full((1 + n_groups, len(fmr_vals)), np.nan)
    for i, plan in enumerate(plans):
        if plan is None:
            continue
        g, h, r0, r1, a, b = plan
        found = np.concatenate(inside[i]) if inside[i] else np.empty((0, 2))
        values = np.sort(found[:, 0])
        k0, k1 = r0 - below[i], r1 - below[i]
        if k0 < 0 or k1 >= len(values):
            return None
        x0, x1 = float(values[k0]), float(values[k1])
        # both must lie where every pair outside the window provably ranks below / above them
        ys = [x * x if euclid else x for x in (x0, x1)]
        if min(ys) < a + big_w or max(ys) > b - big_w:
            return None
        t = x0 + (h - r0) * (x1 - x0)
        pos = rel_dist if g == 0 else rel_dist[rel_group == g - 1]
        out[g, i % len(fmr_vals)] = float((pos >= t).sum()) / len(pos)
    return out


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _exact(
    vectors: torch.Tensor,
    query_ids: np.ndarray,
    gallery: torch.Tensor,
    rows: np.ndarray,
    cols: np.ndarray,
    distance: str,
    device: torch.device,
) -> np.ndarray:
    """Exact float32 distances (as float64) of (query row, gallery position) pairs, in pieces."""
    out = []
    for start in range(0, len(rows), 1 << 13):
        q = vectors[torch.as_tensor(query_ids[rows[start : start + (1 << 13)]])].to(device)
        g = gallery[torch.as_tensor(cols[start : start + (1 << 13)], device=device)]
        out.append(exact_distances(q, g.unsqueeze(1), distance)[:, 0].double().cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)
