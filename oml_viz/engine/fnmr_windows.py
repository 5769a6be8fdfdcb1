"""FNMR@FMR by two passes with windows (:mod:`.fnmr`): the relevant pairs are scored directly from the
label groups, with the exact distances of :func:`.search.exact_distances` (the ones ``retrieve``
reports); only the non-relevant distances' quantile needs passes over every pair, in query chunks
sorted by group:

1. one product per chunk on the fastest float32 backend, with a shift column so that the result
   approximates d^2 (euclidean) or d (cosine) within a proven bound W (:mod:`.candidates`);
   relevant and excluded pairs are set to +inf; ``torch.histc`` adds the chunk to its group's
   histogram (OVERALL is the sum);
2. the bins of the order statistics that the quantile interpolates give, widened by 2W and one
   bin, a narrow window per (group, p); a second pass counts the pairs below each window and
   collects those inside it; their exact distances give the order statistics exactly (checked:
   a window that does not provably hold them returns None, and the caller falls back).
"""
from __future__ import annotations

import numpy as np
import torch

from .candidates import U32, Bound
from .fnmr_pairs import FnmrTask, exact_pair_distances, merge_intervals, relevant_pairs, shifted_product_operands
from .search import query_matrix

_FINE_BINS = 1 << 18  # the first pass's histogram (1 MB: stays in cache)
_MAX_WINDOW_PAIRS = 1_500_000  # pairs whose exact distance pass 2 may need; more: the older algorithm
_BLOCK_BYTES = 64 * 2**20  # a chunk's scores


def fnmr_windows(task: FnmrTask) -> np.ndarray | None:
    """The window path of :func:`fnmr_at_fmr`; None when a window fails its check."""
    vectors, query_ids, gallery_ids, label_codes, seq_codes, query_groups, n_groups, fmr_vals, distance, device = task
    euclid = distance == "euclidean"
    n_g, dim = len(gallery_ids), vectors.shape[1]
    gallery, backend, rhs, exclusions, query_seq = shifted_product_operands(task)

    # relevant pairs: exact distances, straight from the label groups
    all_rows = np.arange(len(query_ids))
    rel_rows, rel_cols = relevant_pairs(all_rows, query_ids, gallery_ids, label_codes, seq_codes)
    rel_dist = exact_pair_distances(vectors, query_ids, gallery, rel_rows, rel_cols, distance, device)
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
    theta = 2 * (dim + 8) * U32  # relative error of the exact formula's d^2 (cosine: of 1 - q.g)
    under = (dim + 3) * 2.0**-125 + U32 * 4
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
        r, c = relevant_pairs(rows, query_ids, gallery_ids, label_codes, seq_codes)
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
        intervals = merge_intervals([(plans[i][4], plans[i][5]) for i in mine])
        edges = torch.tensor([e for iv in intervals for e in iv], dtype=y.dtype, device=device)
        edges[1::2] = torch.nextafter(edges[1::2], edges.new_tensor(float("inf")))  # closed windows
        bucket = torch.bucketize(y, edges, out_int32=True, right=True)
        counts = torch.bincount(bucket.view(-1), minlength=len(edges) + 1).cpu().numpy()
        r, c = (bucket & 1).nonzero().unbind(1)
        y_in = y[r, c].double().cpu().numpy()
        exact = exact_pair_distances(vectors, query_ids, gallery, rows[r.cpu().numpy()], c.cpu().numpy(), distance, device)
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
