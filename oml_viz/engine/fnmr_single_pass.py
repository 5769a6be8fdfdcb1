"""FNMR@FMR in one pass over the pairs (:mod:`.fnmr`'s default): a seeded, stratified sample of queries
brackets each quantile; one pass over every pair counts the pairs below each bracket and keeps those
inside it (leave-one-out: each unordered pair once, counted for both of its queries); the kept pairs
near each order statistic get their exact distances. Past a budget of kept pairs, a histogram pass over
every pair brackets the quantiles exactly first (:func:`fnmr_single_pass`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from . import block_scans
from .candidates import U32, Bound, _bookkeeping_threads, round_up, torch_threads
from .fnmr_pairs import (
    FnmrTask,
    exact_pair_distances,
    label_index,
    merge_intervals,
    relevant_at_or_above,
    relevant_counts,
    relevant_pairs,
    shifted_product_operands,
)
from .search import _PROGRESS_MIN_PAIRS, query_matrix

_FINE_BINS = 1 << 18  # the sample's and the histogram pass's bins (1 MB a group)
_BLOCK_BYTES = 64 * 2**20  # the sample's blocks of whole rows
_SAMPLE_QUERIES = 4096  # sampled queries (all of them when there are fewer), at least 64 per group
_ROUGH_EVERY = 8  # every 8th sampled query (at least 64 a group) gives the thresholds where the spread is measured
_MARGIN_Z = 5.0  # bracket half-width in standard errors of the sampled share below the estimate
_MAX_COLLECT = 40_000_000  # pairs one pass may keep (~25 bytes each, measured at 100k); more: more passes
_TILE_ROWS, _TILE_COLS = 1024, 1024  # the pass's tiles of scores (4 MB)
_HISTOGRAM_BUFFER = 1 << 23  # bin indices gathered before one bincount (64 MB)
# a block marks its relevant pairs by label (one compare per pair) when they are more than this share of
# its pairs; listing them one by one costs ~16 bytes and a scattered write each
_DENSE_MARKING = 1 / 16
_RELEVANT_BLOCK = 1 << 22  # relevant pairs scored at once (16 MB of scores)
_LARGE_LABEL = 128  # gallery items from which a label's relevant pairs are scored by the product


def fnmr_single_pass(task: FnmrTask) -> np.ndarray | None:
    """:func:`.fnmr.fnmr_at_fmr` in one pass over the pairs (more past the budget); None when a bracket
    misses or one alone keeps more than the budget (the caller falls back).

    Approximations ``y~`` (d^2 or d) come from the fastest float32 product, within a proven ``W`` of the
    exact ``y``. A stratified sample of queries gives, per (group, p), a bracket ``[L, H)`` of ``y~``
    that very likely holds the wanted order statistics; the pass counts the non-relevant pairs with
    ``y~ < L`` and keeps those inside. The r-th smallest ``y~`` is then ``a_r`` (checked: r must fall
    inside the bracket), the r-th smallest exact ``y`` lies in ``[a_r - W, a_r + W]``, and it is found
    exactly among the kept pairs with ``|y~ - a_r| <= 2 W`` (checked: inside the bracket), all other
    pairs ranking provably below or above it.

    When the sample's brackets would keep more than ``_MAX_COLLECT`` pairs, a histogram pass over every
    pair replaces them by exact ones (the bins of the order statistics, widened by 2 W); brackets that
    together keep more than that share further passes.
    """
    threads = torch.get_num_threads()
    with _bookkeeping_threads(task.device):  # the steps around the product: one torch thread (see there)
        return _single_pass(task, threads)


def _single_pass(task: FnmrTask, threads: int) -> np.ndarray | None:
    """The body of :func:`fnmr_single_pass`; the product runs on ``threads`` torch threads.

    In order: the product's operands and its bound ``err`` (``operand``, ``product``, ``scores``); the
    sample's brackets (``histogram``, ``quantiles``); the passes over every pair (``tiled``, ``one_pass``,
    each tile seen by a ``visit``); the exact brackets (``exact_brackets``, a histogram visit); a
    collecting pass and its order statistics (``resolve``, the ``scan`` visit); the relevant pairs against
    the thresholds (``relevant_above``); and the decision between them at the end (``thresholds_of``).
    """
    vectors, query_ids, gallery_ids, label_codes, seq_codes, query_groups, n_groups, fmr_vals, distance, device = task
    euclid = distance == "euclidean"
    n_q, n_g, dim = len(query_ids), len(gallery_ids), vectors.shape[1]
    if n_q == 0 or n_g == 0:
        return None
    gallery, backend, rhs, exclusions, query_seq = shifted_product_operands(task)

    # relevant pairs: counted from the label groups here, their exact distances compared with each
    # threshold at the end (:func:`.fnmr_pairs.relevant_at_or_above`, in pieces: a few labels make them
    # N^2 / labels)
    by_label = label_index(gallery_ids, label_codes)
    rel_per_query = relevant_counts(query_ids, gallery_ids, label_codes, seq_codes)
    n_pos_of = np.concatenate([[rel_per_query.sum()], np.bincount(query_groups, rel_per_query, n_groups)])

    # W: |y~ - y| for pairs with y~ below ``top`` (exact formula: relative theta on d^2; cosine: absolute)
    q_sq_all = vectors[torch.as_tensor(query_ids)].double().pow(2).sum(1)
    g_max = float(gallery.double().norm(dim=1).max())
    q_max = float(q_sq_all.max().sqrt())
    shift_all = q_sq_all.float().double() if euclid else torch.ones_like(q_sq_all)
    w = Bound.of(backend, dim, distance).at(q_sq_all.sqrt(), torch.tensor(g_max, dtype=torch.float64), shift_all)
    if euclid:
        w = w + (shift_all - q_sq_all).abs()
    w_prod = float(w.max()) * 1.01
    y_max = (q_max + g_max) ** 2 if euclid else 2.0
    if not 8 * (y_max + w_prod) < 1e37:
        return None
    theta = 2 * (dim + 8) * U32
    under = (dim + 3) * 2.0**-125 + U32 * 4

    def err(top: float) -> float:
        cap = min(y_max, max(top, 0.0) + w_prod) if euclid and np.isfinite(top) else y_max
        return (w_prod + theta * cap + under) * 1.01 + 1e-30

    big_w = err(float("inf"))
    lo, hi = -2 * big_w, y_max + 2 * big_w
    width = (hi - lo) / _FINE_BINS

    # leave-one-out (the same items as queries and gallery): d(i, j) = d(j, i) bit for bit, so the pass
    # scores each unordered pair once and counts it for both of its queries (half the product and
    # scans). The gallery is then ordered by group, so that a block's columns split into group segments
    symmetric = n_q == n_g and np.array_equal(query_ids, gallery_ids)
    col_ids: np.ndarray | None = None  # gallery position of each column of ``rhs`` (None: the same)
    if symmetric:
        col_ids = np.argsort(query_groups, kind="stable")
        rhs = rhs[torch.as_tensor(col_ids, device=device)]
    col_of = None
    if col_ids is not None:
        col_of = np.empty(n_g, dtype=np.int64)
        col_of[col_ids] = np.arange(n_g)

    col_labels = torch.as_tensor(label_codes[gallery_ids if col_ids is None else gallery_ids[col_ids]], device=device)

    class Operand(NamedTuple):
        """A block's prepared rows, and the pairs to mark with the columns of ``rhs`` from ``first`` on:
        ``(r, c)`` (column - first) one by one, and with ``labels`` (the rows' label codes) every pair of
        the same label, when the block has too many relevant pairs to list (a few labels)."""

        lhs: torch.Tensor
        r: np.ndarray
        c: np.ndarray
        labels: torch.Tensor | None

    def operand(rows: np.ndarray, first: int = 0) -> Operand:
        """The rows' operand: relevant and excluded pairs listed (disjoint), or excluded pairs of another
        label listed and the relevant ones marked by label."""
        q = vectors[torch.as_tensor(query_ids[rows])].to(device)
        shift = shift_all[torch.as_tensor(rows)].float().to(device).unsqueeze(1)
        lhs = backend.prepare(torch.cat([query_matrix(q), shift], dim=1))
        ex_r, ex_c = (t.cpu().numpy() for t in exclusions.pairs(query_seq[torch.as_tensor(rows, device=device)]))
        labels = None
        if rel_per_query[rows].sum() > len(rows) * (n_g - first) * _DENSE_MARKING:
            labels = torch.as_tensor(label_codes[query_ids[rows]], device=device)
            other = label_codes[gallery_ids[ex_c]] != label_codes[query_ids[rows[ex_r]]]
            r, c = ex_r[other], ex_c[other]
        else:
            r, c = relevant_pairs(rows, query_ids, gallery_ids, label_codes, seq_codes, by_label)
            r, c = np.concatenate([r, ex_r]), np.concatenate([c, ex_c])
        if col_of is not None:
            c = col_of[c] - first
            r, c = r[c >= 0], c[c >= 0]
        return Operand(lhs, r, c, labels)

    def product(op: Operand, c_first: int, c0: int, c1: int,
                out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """y~ against the columns ``c0:c1`` of ``rhs`` (into ``out``'s storage when given), +inf at the
        marked pairs (``op``'s listed columns count from ``c_first``); and the count of marked pairs in
        each of the columns."""
        if out is not None:
            out = out.view(-1)[: len(op.lhs) * (c1 - c0)].view(len(op.lhs), c1 - c0)
        with torch_threads(threads):
            y = backend.mm(op.lhs, rhs[c0:c1], out=out)
        c = op.c + c_first
        inside = (c >= c0) & (c < c1)
        r, c = op.r[inside], c[inside] - c0
        marked = np.bincount(c, minlength=c1 - c0)
        if op.labels is not None:
            same = op.labels.unsqueeze(1) == col_labels[c0:c1].unsqueeze(0)
            y[same] = float("inf")
            marked += same.sum(0).cpu().numpy()
        y[torch.as_tensor(r, device=device), torch.as_tensor(c, device=device)] = float("inf")
        return y, marked

    def scores(rows: np.ndarray) -> torch.Tensor:
        """y~ of the rows' pairs with every column of ``rhs``, +inf at relevant and excluded pairs."""
        return product(operand(rows), 0, 0, n_g)[0]

    # the sample's blocks: whole rows (per-row counts); the histogram's bincount per block costs more
    # on tiles than the cache saves (measured: sample 2.7 s in 64 MB blocks, 3.3 s in 4 MB tiles)
    chunk = max(1, _BLOCK_BYTES // (4 * n_g))

    # the sample: per group, evenly spaced in the order of |q|^2 (euclidean; a seeded shuffle for cosine),
    # so that the spread of the share below a threshold between queries is mostly stratified out
    rng = np.random.default_rng(0)
    key = q_sq_all.numpy() if euclid else rng.random(n_q)
    by_group = [np.flatnonzero(query_groups == g) for g in range(n_groups)]
    by_group = [rows[np.argsort(key[rows], kind="stable")] for rows in by_group]
    sample, rough = [], []
    size = min(_SAMPLE_QUERIES, max(n_q // 8, 512))  # small sets: the sample would cost most of the pass
    for rows in by_group:
        k = min(len(rows), max(64, -(-size * len(rows) // n_q)))
        picked = rows[((np.arange(k) + rng.random()) * len(rows) / max(k, 1)).astype(np.int64)] if k else rows
        sample.append(picked)
        rough.append(picked[:: max(1, min(_ROUGH_EVERY, len(picked) // 64))])
    below_est: list[list[np.ndarray]] = [[] for _ in range(1 + n_groups)]  # per row: counts below, n

    def histogram(rows_per_group: list[np.ndarray], thresholds: np.ndarray | None, cut: float = np.inf) -> np.ndarray:
        """(1 + G, bins) cumulated histogram of the rows' non-relevant y~ (those at or above ``cut`` in
        the last bin); per-row counts below ``thresholds``."""
        hist = np.zeros((n_groups, _FINE_BINS))
        for g, rows in enumerate(rows_per_group):
            t_all = None if thresholds is None else [*thresholds[0], *thresholds[g + 1], np.inf]
            for i in range(0, len(rows), chunk):
                y = scores(rows[i : i + chunk])
                hist[g] += block_scans.histogram(y, lo, hi, _FINE_BINS, cut)
                if t_all is None:
                    continue
                counts = block_scans.row_counts_below(y, t_all)
                c, n_row = counts[:, :-1], counts[:, -1:]
                k = len(fmr_vals)
                below_est[0].append(np.concatenate([c[:, :k], n_row], 1))
                below_est[g + 1].append(np.concatenate([c[:, k:], n_row], 1))
        return np.cumsum(np.concatenate([hist.sum(0, keepdims=True), hist]), axis=1)

    def quantiles(cum: np.ndarray, shares: Sequence[float]) -> np.ndarray:
        return np.array([[lo + (int(np.searchsorted(cum[g], p * (cum[g, -1] - 1), side="right")) + 0.5) * width
                          for p in shares] for g in range(1 + n_groups)])

    # a rough subsample gives thresholds, and a cut well above the largest quantile: the whole sample
    # bins only the values below it (the brackets never reach above), and counts each row's values
    # below the thresholds
    rough_cum = histogram(rough, None)
    cut_share = 1.5 * max(fmr_vals) + 0.02
    cut = float(quantiles(rough_cum, [cut_share]).max()) + 2 * width if cut_share < 1 else np.inf
    cum = histogram(sample, quantiles(rough_cum, fmr_vals), cut)  # cumulated sampled non-relevant y~

    def edge_at(g: int, rank: float) -> int:
        return int(np.searchsorted(cum[g], rank, side="right"))

    # brackets [L, H) of y~ per (group, p), float32 like y~
    n_group_queries = [n_q] + [len(rows) for rows in by_group]
    plans: list[tuple[int, float, float, float] | None] = []
    expected: list[float] = []  # per plan: the pairs its bracket is expected to keep
    for g in range(1 + n_groups):
        n_pos = int(n_pos_of[g])
        table = np.concatenate(below_est[g]) if below_est[g] else np.empty((0, len(fmr_vals) + 1))
        n_s = table[:, -1]
        for j, p in enumerate(fmr_vals):
            if n_pos == 0:
                plans.append(None)
                expected.append(0.0)
                continue
            if cum[g, -1] == 0:  # nothing sampled: the whole range
                plans.append((g, float(p), -np.inf, np.inf))
                expected.append(float(n_group_queries[g] * n_g))
                continue
            k = len(table)
            share = table[:, j].sum() / n_s.sum()
            e = table[:, j] - share * n_s
            var = 0.0
            if k < n_group_queries[g]:
                s_d2 = float((np.diff(e) ** 2).sum() / (2 * (k - 1))) if k > 1 else float(n_s.mean() ** 2)
                var = (1 - k / n_group_queries[g]) * s_d2 / k / float(n_s.mean()) ** 2
            m = _MARGIN_Z * np.sqrt(var)
            total = cum[g, -1]
            lo_share, hi_share = p - m, p + m
            lo_rank, hi_rank = np.floor(lo_share * (total - 1)) - 2, np.floor(hi_share * (total - 1)) + 3
            low = lo + edge_at(g, lo_rank) * width if lo_rank >= 0 else -np.inf
            high = lo + (edge_at(g, hi_rank) + 1) * width if hi_rank < total else np.inf
            pad = 2 * err(high + 3 * big_w) + width
            low, high = np.float32(low - pad), np.float32(high + pad)
            top = cum[g, min(max(int((high - lo) / width) + 1, 0), _FINE_BINS - 1)] if np.isfinite(high) else total
            bottom = cum[g, min(max(int((low - lo) / width) - 1, 0), _FINE_BINS - 1)] if np.isfinite(low) else 0.0
            inside = top - bottom
            expected.append(inside / max(total, 1) * n_group_queries[g] * n_g)
            plans.append((g, float(p), float(low), float(high)))
    # every pass visits the same tiles: blocks of rows against tiles of columns whose scores stay in the
    # cache for the scans (measured at 50k: 2.2 ns a value on 4 MB tiles, 3.6 on 64 MB blocks); one buffer
    # for every tile. ``visit(g, rows, y, marked, first, segments)`` sees one tile; a segment ``(c0, c1, h)``
    # of its columns is counted for the rows' queries (group g), and with h for the columns' queries too
    tile = torch.empty(_TILE_ROWS * _TILE_COLS, dtype=torch.float32, device=device)
    Segments = list[tuple[int, int, int | None]]

    def tiled(visit: Callable[..., bool], g: int, rows: np.ndarray, first: int, segments: Segments) -> bool:
        """``visit`` every tile of the rows against the columns from ``first`` on (``segments`` from ``first``)."""
        op = operand(rows, first)
        for t0 in range(first, n_g, _TILE_COLS):
            t1 = min(t0 + _TILE_COLS, n_g)
            clipped = [(max(c0 + first, t0) - t0, min(c1 + first, t1) - t0, h) for c0, c1, h in segments]
            clipped = [(c0, c1, h) for c0, c1, h in clipped if c1 > c0]
            if not clipped:
                continue
            y, marked = product(op, first, t0, t1, tile)
            if not visit(g, rows, y, marked, t0, clipped):
                return False
        return True

    # a pass is most of the time (15 s at 50k here): a bar in pairs scored, from the size at which
    # retrieval shows one; leave-one-out blocks score their rows against the columns from the block on
    group_start = np.concatenate([[0], np.cumsum(np.bincount(query_groups, minlength=n_groups))])
    if symmetric:
        firsts = [a for g in range(n_groups) for a in range(int(group_start[g]), int(group_start[g + 1]), _TILE_ROWS)]
        lasts = [min(a + _TILE_ROWS, int(group_start[np.searchsorted(group_start, a, side="right")])) for a in firsts]
        total = sum((b - a) * (n_g - a) for a, b in zip(firsts, lasts))
    else:
        total = n_q * n_g

    def one_pass(visit: Callable[..., bool], desc: str) -> bool:
        """``visit`` every pair once (leave-one-out: each unordered pair once); False when a visit says so."""
        with tqdm(total=total, desc=desc, unit="pair", unit_scale=True, leave=False,
                  disable=n_q * n_g < _PROGRESS_MIN_PAIRS) as bar:
            if symmetric:
                # rows of group g (positions a.. in group order) against the columns from a on: the block's own
                # square holds both orders of its pairs; each later column's pair is counted for both queries
                for g in range(n_groups):
                    a = int(group_start[g])
                    while a < group_start[g + 1]:
                        size = int(min(group_start[g + 1] - a, _TILE_ROWS))
                        rows = col_ids[a : a + size]
                        segments = [(0, size, None), (size, int(group_start[g + 1]) - a, g)]
                        segments += [(int(group_start[h]) - a, int(group_start[h + 1]) - a, h)
                                     for h in range(g + 1, n_groups)]
                        if not tiled(visit, g, rows, a, segments):
                            return False
                        bar.update(size * (n_g - a))
                        a += size
            else:
                for g, rows_g in enumerate(by_group):
                    for i in range(0, len(rows_g), _TILE_ROWS):
                        rows = rows_g[i : i + _TILE_ROWS]
                        if not tiled(visit, g, rows, 0, [(0, n_g, None)]):
                            return False
                        bar.update(len(rows) * n_g)
        return True

    def finite_in(rows: np.ndarray, marked: np.ndarray, c0: int, c1: int) -> int:
        """Pairs of the rows with the tile's columns ``c0:c1`` that are not marked (relevant or excluded)."""
        return len(rows) * (c1 - c0) - int(marked[c0:c1].sum())

    def exact_brackets() -> tuple[list[tuple[int, float, float, float] | None], list[float]] | None:
        """Brackets, and the pairs each holds, from one histogram pass over every pair: each order
        statistic's bin is then known exactly, so its bracket is that bin widened by 2 W and a bin (it keeps
        little more than the window pairs, whatever N); None when one lies at or above the cut."""
        hist = np.zeros(n_groups * _FINE_BINS, dtype=np.int64)
        buffer = np.empty(_HISTOGRAM_BUFFER, dtype=np.int64)  # bin + group offset of values below the cut
        fill = 0
        n_above = np.zeros(n_groups, dtype=np.int64)  # finite values at or above the cut, per group

        def flush() -> None:
            nonlocal fill
            hist[:] += np.bincount(buffer[:fill], minlength=len(hist))
            fill = 0

        def visit(g: int, rows: np.ndarray, y: torch.Tensor, marked: np.ndarray, first: int,
                  segments: Segments) -> bool:
            nonlocal fill
            for c0, c1, h in segments:
                bins = block_scans.bins_below(y[:, c0:c1], lo, hi, _FINE_BINS, cut)
                n_finite = finite_in(rows, marked, c0, c1)
                for v in [g] if h is None else [g, h]:
                    n_above[v] += n_finite - len(bins)
                    if fill + len(bins) > len(buffer):
                        flush()
                    if len(bins) > len(buffer):  # a tile larger than the buffer: counted on its own
                        hist[v * _FINE_BINS : (v + 1) * _FINE_BINS] += np.bincount(bins, minlength=_FINE_BINS)
                        continue
                    np.add(bins, v * _FINE_BINS, out=buffer[fill : fill + len(bins)])
                    fill += len(bins)
            return True

        if not one_pass(visit, "fnmr@fmr (histogram)"):
            return None
        flush()
        counts = hist.reshape(n_groups, _FINE_BINS)
        counts[:, -1] += n_above
        cum_all = np.cumsum(np.concatenate([counts.sum(0, keepdims=True), counts]), axis=1)
        brackets: list[tuple[int, float, float, float] | None] = []
        holds: list[float] = []
        for g in range(1 + n_groups):
            n_pos = int(n_pos_of[g])
            c = cum_all[g]
            n_neg_g = int(c[-1])
            for p in fmr_vals:
                if n_pos == 0:
                    brackets.append(None)
                    holds.append(0.0)
                    continue
                if n_neg_g == 0:  # no non-relevant pair: left to the older paths, like a missed bracket
                    return None
                h = (n_neg_g - 1) * float(p)
                r0 = int(np.floor(h))
                r1 = min(r0 + 1, n_neg_g - 1)
                b0, b1 = (int(np.searchsorted(c, r, side="right")) for r in (r0, r1))
                if b1 >= _FINE_BINS - 1:  # the last bin holds everything at or above the cut
                    return None
                high = lo + (b1 + 1) * width
                pad = 2 * err(high + 3 * big_w) + width
                low, high = np.float32(lo + b0 * width - pad), np.float32(high + pad)
                lb = min(max(int((low - lo) / width) - 1, 0), _FINE_BINS - 1)
                hb = min(max(int((high - lo) / width) + 1, 0), _FINE_BINS - 1)
                holds.append(float(c[hb] - (c[lb - 1] if lb else 0)))
                brackets.append((g, float(p), float(low), float(high)))
        return brackets, holds

    def resolve(plans: list[tuple[int, float, float, float] | None]) -> np.ndarray | None:
        """One pass that counts the pairs below each bracket and keeps those inside it, then each
        bracket's order statistics and threshold t (the plans that are None stay NaN); None when a check
        fails."""
        # the pass: per block segment, the brackets of its groups and OVERALL merged into disjoint regions;
        # per region the pairs below its start are counted and those inside kept (:func:`.block_scans.scan_regions`)
        n_plans = len(plans)
        below = np.zeros(n_plans, dtype=np.int64)
        n_neg = np.zeros(1 + n_groups, dtype=np.int64)
        # (group, y~ float32, flat pair index, -1) or, for the same pairs counted for a second group, (group,
        # y~, None, index of the piece that holds their ids)
        kept: list[tuple[int, np.ndarray, np.ndarray | None, int]] = []
        of_group = [[i for i, pl in enumerate(plans) if pl is not None and pl[0] == g] for g in range(1 + n_groups)]
        n_kept = 0

        def scan(g: int, rows: np.ndarray, y: torch.Tensor, marked: np.ndarray, first: int,
                 segments: Segments) -> bool:
            """Count and keep the pairs of one tile (a ``visit`` of :func:`one_pass`)."""
            nonlocal n_kept
            for c0, c1, h in segments:
                if c1 <= c0:
                    continue
                views = [g] if h is None else [g, h]
                n_finite = finite_in(rows, marked, c0, c1)
                mine = sorted({i for v in views for i in of_group[0] + of_group[v + 1]})
                for v in views:
                    n_neg[v + 1] += n_finite
                if not mine:
                    continue
                regions = [(np.float32(a), np.float32(b)) for a, b in merge_intervals([plans[i][2:] for i in mine])]
                starts, r, c, y_in = block_scans.scan_regions(y[:, c0:c1], regions)
                n_kept += len(r) * len(views)
                if n_kept > 2 * _MAX_COLLECT:
                    return False
                row_ids = rows[r]
                col_pos = c + (first + c0)
                col_pos = col_pos if col_ids is None else col_ids[col_pos]
                for v in views:
                    for i in of_group[0] + of_group[v + 1]:
                        j = next(j for j, (a, b) in enumerate(regions) if a <= plans[i][2] and plans[i][3] <= b)
                        low = np.float32(plans[i][2])
                        below[i] += starts[j] + int(((y_in >= regions[j][0]) & (y_in < low)).sum())
                kept.append((g, y_in, row_ids * n_g + col_pos, -1))
                if h is not None:  # the same pairs as (column's query, row's item): one distance, a twin piece
                    kept.append((h, y_in, None, len(kept) - 1))
            return True

        if not one_pass(scan, "fnmr@fmr"):
            return None
        n_neg[0] = n_neg[1:].sum()

        # per (group, p): the order statistics' approximations, their window, and the pairs to verify;
        # kept pairs in group order (a stable sort of the pieces): a group's pairs are one slice. A twin
        # piece's pairs are looked up at their original piece ("canonical" positions), so that each pair's
        # exact distance is computed once (a hash table of the pair ids took 0.7 s at 50k)
        order = sorted(range(len(kept)), key=lambda i: kept[i][0])
        sizes = np.array([len(kept[i][1]) for i in order], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        start_of = np.empty(len(kept), dtype=np.int64)
        start_of[order] = starts[:-1]
        canon_start = np.array([start_of[kept[i][3]] if kept[i][3] >= 0 else start_of[i] for i in order], dtype=np.int64)
        y_all = np.concatenate([kept[i][1] for i in order]) if kept else np.empty(0, np.float32)
        f_all = np.empty(len(y_all), dtype=np.int64)  # pair ids at canonical positions (twins' slots unused)
        for i in order:
            if kept[i][3] < 0:
                f_all[start_of[i] : start_of[i] + len(kept[i][1])] = kept[i][2]
        per_group = np.zeros(n_groups, dtype=np.int64)
        for gk, yk, _, _ in kept:
            per_group[gk] += len(yk)
        bounds = np.concatenate([[0], np.cumsum(per_group)])
        kept.clear()  # the pieces are in y_all and f_all now

        def canonical(pos: np.ndarray) -> np.ndarray:
            piece = np.searchsorted(starts, pos, side="right") - 1
            return pos - starts[piece] + canon_start[piece]

        need = []
        wanted = np.zeros(len(y_all), dtype=bool)  # positions whose exact distance a window needs
        for i, plan in enumerate(plans):
            if plan is None:
                continue
            g, p, low, high = plan
            if n_neg[g] == 0:
                return None
            first, last = (0, len(y_all)) if g == 0 else (bounds[g - 1], bounds[g])
            part = y_all[first:last]
            pos_in = np.flatnonzero((part >= np.float32(low)) & (part < np.float32(high))) + first
            y_in = y_all[pos_in].astype(np.float64)
            h = (int(n_neg[g]) - 1) * p
            r0 = int(np.floor(h))
            r1 = min(r0 + 1, int(n_neg[g]) - 1)
            k0, k1 = r0 - int(below[i]), r1 - int(below[i])
            if not (0 <= k0 and k1 < len(y_in)):
                return None
            ordered = np.partition(y_in, [k0, k1])
            a0, a1 = float(ordered[k0]), float(ordered[k1])
            w_i = err(high)
            # the r-th smallest exact y is within W of a_r: pairs below a0 - 2W rank below both order
            # statistics, pairs above a1 + 2W above both; one window holds both
            if a0 - 2 * w_i < low or a1 + 2 * w_i >= high:
                return None
            inside = (y_in >= a0 - 2 * w_i) & (y_in <= a1 + 2 * w_i)
            window = canonical(pos_in[inside])
            wanted[window] = True
            skipped = int(below[i]) + int((y_in < a0 - 2 * w_i).sum())
            need.append((i, h, r0, w_i, [(r0 - skipped, a0), (r1 - skipped, a1)], window))

        positions = np.flatnonzero(wanted)  # each pair once, however many windows hold it
        flats = f_all[positions]
        exact = exact_pair_distances(vectors, query_ids, gallery, flats // n_g, flats % n_g, distance, device)
        out = np.full((1 + n_groups, len(fmr_vals)), np.nan)
        for i, h, r0, w_i, stats, window in need:
            g = plans[i][0]
            values = exact[np.searchsorted(positions, window)]
            ks = [k for k, _ in stats]
            if not all(0 <= k < len(values) for k in ks):
                return None
            values = np.partition(values, ks)  # the order statistics only
            xs = []
            for k, a in stats:
                x = float(values[k])
                if abs((x * x if euclid else x) - a) > w_i:
                    return None
                xs.append(x)
            x0, x1 = xs
            out[g, i % len(fmr_vals)] = x0 + (h - r0) * (x1 - x0)  # the threshold t
        return out

    def relevant_above(wanted: list[tuple[int, float]]) -> np.ndarray:
        """Per ``(group, t)``: the relevant pairs with exact distance ``>= t``. A large label's queries are
        scored against its gallery items with the pass's product (``y~`` within ``big_w`` of ``y``), and only
        the pairs whose ``y~`` lies that close to a threshold get their exact distance (a few labels make the
        relevant pairs N^2 / labels; an exact distance costs ~300 ns); small labels' pairs are listed and
        measured exactly (:func:`.fnmr_pairs.relevant_at_or_above`)."""
        per_label = np.bincount(label_codes[gallery_ids], minlength=int(label_codes.max()) + 1)
        small = np.flatnonzero(per_label[label_codes[query_ids]] < _LARGE_LABEL)
        out = relevant_at_or_above(vectors, query_ids[small], gallery, gallery_ids, label_codes, seq_codes,
                                   query_groups[small], wanted, distance, device)
        # float32 edges rounded outwards: ``y~ >= hi`` proves ``y >= t``, ``y~ < lo`` proves ``y < t``
        levels = torch.tensor([t * t if euclid else t for _, t in wanted], dtype=torch.float64)
        slack = big_w * (1 + 1e-6) + 4 * 2.0**-52 * levels.abs() + 1e-300
        edges = list(zip((-round_up(slack - levels)).numpy(), round_up(levels + slack).numpy()))
        order, starts = by_label
        q_order, q_starts = label_index(query_ids, label_codes)
        for lab in np.flatnonzero(per_label >= _LARGE_LABEL):
            cols, rows_l = order[starts[lab] : starts[lab + 1]], q_order[q_starts[lab] : q_starts[lab + 1]]
            if len(cols) == 0 or len(rows_l) == 0:
                continue
            rhs_l = rhs[torch.as_tensor(cols if col_of is None else col_of[cols], device=device)]
            g_seq = seq_codes[gallery_ids[cols]]
            step = max(1, _RELEVANT_BLOCK // len(cols))
            for a in range(0, len(rows_l), step):
                rows = rows_l[a : a + step]
                q = vectors[torch.as_tensor(query_ids[rows])].to(device)
                shift = shift_all[torch.as_tensor(rows)].float().to(device).unsqueeze(1)
                with torch_threads(threads):
                    y = backend.mm(backend.prepare(torch.cat([query_matrix(q), shift], dim=1)), rhs_l).cpu().numpy()
                y[seq_codes[query_ids[rows]][:, None] == g_seq[None, :]] = np.nan  # excluded: counted nowhere
                groups = query_groups[rows]
                for j, ((g, t), (lo, hi)) in enumerate(zip(wanted, edges)):
                    part = y if g == 0 else y[groups == g - 1]
                    out[j] += int(np.count_nonzero(part >= hi))
                    r, c = np.nonzero((part >= lo) & (part < hi))
                    if len(r):
                        mine = rows if g == 0 else rows[groups == g - 1]
                        d = exact_pair_distances(vectors, query_ids, gallery, mine[r], cols[c], distance, device)
                        out[j] += int(np.count_nonzero(d >= t))
        return out

    def thresholds_of(plans: list[tuple[int, float, float, float] | None], expected: list[float]) -> np.ndarray | None:
        """Each plan's threshold t (NaN where the plan is None). Plans whose brackets together keep at most
        the budget share a pass (the same p first: their brackets overlap); None when a check fails or one
        bracket alone would keep more."""
        batches: list[list[int]] = []
        held = 0.0
        for i in sorted((i for i, pl in enumerate(plans) if pl is not None), key=lambda i: (plans[i][1], plans[i][0])):
            if expected[i] > _MAX_COLLECT:
                return None
            if not batches or held + expected[i] > _MAX_COLLECT:
                batches.append([])
                held = 0.0
            batches[-1].append(i)
            held += expected[i]
        thresholds = np.full((1 + n_groups, len(fmr_vals)), np.nan)
        for batch in batches:
            part = resolve([pl if i in batch else None for i, pl in enumerate(plans)])
            if part is None:
                return None
            for i in batch:
                thresholds[plans[i][0], i % len(fmr_vals)] = part[plans[i][0], i % len(fmr_vals)]
        return thresholds

    # the sample's brackets keep a share of the pairs that shrinks only as the sample grows, while the pairs
    # grow as N^2 (measured: 26M kept at 50k, 109M expected at 100k): beyond the budget, or where one of them
    # missed (rare: five standard errors), one histogram pass over every pair brackets each order statistic
    # by its exact bin instead
    thresholds = thresholds_of(plans, expected) if sum(expected) <= _MAX_COLLECT else None
    if thresholds is None:
        exact = exact_brackets()
        thresholds = None if exact is None else thresholds_of(*exact)
        if thresholds is None:
            return None
    wanted = [(g, float(thresholds[g, j])) for g in range(1 + n_groups) for j in range(len(fmr_vals))
              if not np.isnan(thresholds[g, j])]
    above = relevant_above(wanted)
    out = np.full((1 + n_groups, len(fmr_vals)), np.nan)
    places = [(g, j) for g in range(1 + n_groups) for j in range(len(fmr_vals)) if not np.isnan(thresholds[g, j])]
    for (g, j), n_above in zip(places, above):
        out[g, j] = n_above / n_pos_of[g]
    return out
