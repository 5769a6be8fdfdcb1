"""Exact leave-one-out top-k that scores each pair once (the same items are queries and gallery).

Then d(i, j) = d(j, i), so the product of a block of rows with the columns from the block's first item
on serves both the rows (their scores along each row) and the later columns (down each column).

1. Products over the upper triangle (blocks of 1024 items against 4 MB tiles of the columns from the
   block on) keep only the smallest score of every group of 128 items (:data:`.topk.GROUP`), for both
   views: a (N, groups) table of group minima (39 MB at N = 50k in bf16 bits).
2. The table gives each query its group thresholds exactly as :class:`.candidates.FilterSearch` derives
   them; only the groups that pass are scored again (about 14 of 391 per query at N = 50k), their items
   filtered by the same thresholds and verified with the exact distances of :mod:`.candidates`. Rows
   left with too many groups or candidates go through :class:`.candidates.FilterSearch` itself.

So the answer is FilterSearch's (tested equal on near-ties, duplicates, sequences, both distances).

**Symmetric scores.** The product's rows are ``[x, 1, 1, c_hi, c_lo]`` against the gallery's
``[-2g, n_hi, n_lo, 1, 1]`` (cosine ``[-g, 0, 0, 1, 1]``) as in :mod:`.candidates`, with ``c_hi + c_lo`` the
backend's two-term rounding of ``|x|^2 + C`` (cosine: of ``C``) for one constant ``C``. Its real value
for the pair (i, j) is ``T(i, j) + delta_i``, where ``T = d^2 + C`` (cosine ``C - cos``) is symmetric
and ``delta_i`` the rounding of ``c_i`` (bf16: ``2^-16`` relative). The computed score is within
``B(i, j) + |delta_i|`` of ``T(i, j)`` (``B`` from :class:`.candidates.Bound`, whose roles are not
symmetric, with the larger of the two roles' measured rounding ratios), so :class:`SymmetricBound` bounds both
roles: ``alpha |x||g| + beta max(|x|, |g|)^2 + gamma c_max + eps (1 + 3 max(|x|, |g|)) + max |delta|``.
Seen from query x, ``T(x, j) = s(x, j) + shift_x`` with ``shift_x = |x|^2 + C`` (cosine ``C``), the
score/real-score relation that FilterSearch's thresholds take.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import candidates
from .candidates import WIDTH_EXTRA, Bound, FilterSearch, _bookkeeping_threads, _SAFE_SCORE, round_up, split
from .gemm import Backend, operand_rounding
from .heap import release_free_heap
from .topk import GROUP

_QUERY_CHUNK = 512  # queries whose thresholds and verification tables are built at once
_VERIFY_QUERIES = 256  # queries verified at once (their table is queries x most candidates)
_BLOCK_ROWS = 1024  # items a block of the upper triangle holds (a multiple of GROUP)
# a tile's scores: measured at 50k on a 2-core EPYC (1 MB L2 a core, 32 MB L3), the minima pass took
# 2.7-3.0 s with 2-12 MB tiles and 3.4 s with 24 MB
_TILE_BYTES = 4 * 2**20
# queries a rescoring product holds (one shape: see _group_minima); small, because a pass's queries keep
# a group ~N/30 times at 50k and the last product of each group is padded (256: 330 GFLOP/s, 1024: 390)
_RESCORE_ROWS = 256
_RESCORE_BATCH = 16  # pieces per batched rescoring product (390 GFLOP/s; one piece a product: 280)
_PASS_QUERIES = 32768  # queries answered together: one product per kept group for all of them
_INF16 = 0x7F80  # bfloat16 +inf as int16 bits


@dataclass(frozen=True)
class SymmetricBound(Bound):
    """:class:`.candidates.Bound` for a score that may come from either role of the pair (module doc)."""

    c_max: float = 0.0  # the largest shift column value
    delta: float = 0.0  # the largest rounding of a shift column value

    @classmethod
    def of_pair(cls, backend: Backend, dim: int, distance: str, c_max: float, delta: float,
                rho: float | None = None) -> SymmetricBound:
        """The symmetric bound for ``dim``-dimensional vectors on ``backend`` (``rho``: the operands'
        largest measured rounding ratio, both roles; ``u_in`` when not given).

        Example:
            >>> from oml_viz.engine.gemm import BACKENDS
            >>> b = SymmetricBound.of_pair(BACKENDS["torch-bf16"], 8, "euclidean", c_max=10.0, delta=0.5)
            >>> one, three = torch.tensor(1.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
            >>> bool(b.at(one, three, one) == b.at(three, one, one))  # the same for both roles
            True
        """
        b = Bound.of(backend, dim, distance, rho, rho)
        return cls(b.alpha, b.beta, b.gamma, b.eps, b.u_out, c_max * 1.01, delta * 1.01 + 1e-30)

    def at(self, q_norm: torch.Tensor, g_norm: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The bound for either role (``shift`` unused: the shift term takes the largest shift)."""
        m = torch.maximum(q_norm, g_norm)
        return (self.alpha * q_norm * g_norm + self.beta * m * m + self.gamma * self.c_max
                + self.eps * (1 + 3 * m) + self.delta)


def leave_one_out_search(
    finder: FilterSearch,
    seq_codes: np.ndarray,
    block_bytes: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k of every gallery item among the others (``finder``'s gallery), excluding items whose
    ``seq_codes`` (one per gallery row) equal the query's: (item ids (N, k), distances (N, k)), or None
    when the norms are too extreme for the shared shift (the caller then runs the row-by-row search)."""
    gallery, n, device = finder.gallery, finder.n, finder.gallery.device
    backend = finder.backend
    matrix = finder.padded_operand(backend)  # with spare padding rows for whole tiles
    if n == 0 or matrix is None:
        return None
    q_sq = finder.sq_norms
    q_norm = finder.norms[:n]
    if finder.max_norm * 3 * finder.max_norm > _SAFE_SCORE:
        return None

    shared = shared_shift(finder, q_norm, q_sq)
    if shared is None:
        return None
    c, shift, bound = shared
    release_free_heap()
    minima = _group_minima(finder, c, matrix, seq_codes, block_bytes, progress)
    release_free_heap()

    seq = torch.as_tensor(seq_codes, device=device)
    out_ids = torch.full((n, finder.k), -1, dtype=torch.int64, device=device)
    out_dist = torch.full((n, finder.k), float("inf"), dtype=torch.float32, device=device)
    heavy = torch.zeros(n, dtype=torch.bool, device=device)
    for start in range(0, n, _PASS_QUERIES):  # bounded memory: thresholds, rescoring, verification
        rows = torch.arange(start, min(start + _PASS_QUERIES, n), device=device)
        _answer(finder, bound, c, matrix, minima, rows, q_norm, q_sq, shift, seq, out_ids, out_dist, heavy)
        release_free_heap()
    rest = heavy.nonzero().flatten()
    if len(rest):  # rows the thresholds could not narrow: FilterSearch row by row
        from .search import Exclusions

        exclusions = Exclusions.build(seq_codes, int(seq_codes.max()) + 1, device)
        ids, dist = finder.run(gallery[rest], exclusions.pairs(seq[rest]))
        out_ids[rest], out_dist[rest] = ids, dist
    return out_ids.cpu().numpy(), out_dist.cpu().numpy()


def shared_shift(
    finder: FilterSearch, q_norm: torch.Tensor, q_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, SymmetricBound] | None:
    """The shift columns ``c`` ((N, 2) ``[c_hi, c_lo]`` in the backend's dtype), ``shift`` = T - s per item
    (float64) and the bound of :class:`SymmetricBound`; None when a rounded ``c`` falls short or overflows.

    Every ``c_x`` is at least what :class:`.candidates.FilterSearch` asks of its own shift (so that every
    score is positive), and ``c_x - shift_x`` is the rounding ``delta_x`` that the bound takes in.
    Both roles' operands are rounded: the bound takes the larger measured ratio of the two.
    """
    backend, euclid, device = finder.backend, finder.distance == "euclidean", q_norm.device
    rho_rows = operand_rounding(backend, finder.gallery)
    row_bound = finder.bound(backend, rho_rows)
    rho = max(rho_rows, finder.operand_ratio(backend))
    lowest = q_sq if euclid else q_norm * finder.max_norm
    gm = torch.tensor(finder.max_norm, dtype=torch.float64, device=device)
    need = lowest * (1 + 2**-6) + 2 * row_bound.at(q_norm, gm, 4 * lowest + 4) + 1e-30
    base = q_sq if euclid else torch.zeros_like(q_sq)
    big_c = float((need - base).max()) + 2**-6 * float(need.max())
    target = base + big_c
    c = split(target, backend.dtype)
    c64 = c.double().sum(1)
    if not bool((c64 >= need).all()) or not bool(torch.isfinite(c64).all()):
        return None
    delta = float((c64 - target).abs().max()) + 1e-12 * float(target.max())
    if backend.dtype == torch.float32:  # a backend that rounds inside the product rounds c too
        delta += backend.u_in * float(c64.abs().max())
    return c, target, SymmetricBound.of_pair(backend, finder.dim, finder.distance, float(c64.max()), delta, rho)


def _answer(
    finder: FilterSearch,
    bound: SymmetricBound,
    c: torch.Tensor,
    matrix: torch.Tensor,
    minima: torch.Tensor,
    rows: torch.Tensor,
    q_norm: torch.Tensor,
    q_sq: torch.Tensor,
    shift: torch.Tensor,
    seq: torch.Tensor,
    out_ids: torch.Tensor,
    out_dist: torch.Tensor,
    heavy: torch.Tensor,
) -> None:
    """The answers of the queries ``rows`` (consecutive) from the group minima; rows that need the
    row-by-row search are marked in ``heavy``."""
    n, first_row, device = finder.n, int(rows[0]), rows.device
    # the kept (query, group) pairs go into buffers that grow by doubling: kept pieces between the
    # temporaries of each step fragmented the heap (measured: +150 MB resident at 50k)
    size, capacity = 0, 32 * len(rows)
    pair_x = torch.empty(capacity, dtype=torch.int64, device=device)
    pair_g = torch.empty(capacity, dtype=torch.int64, device=device)
    pair_thr = torch.empty(capacity, dtype=torch.float32, device=device)
    with _bookkeeping_threads(device):
        for start in range(0, len(rows), _QUERY_CHUNK):
            sub = rows[start : start + _QUERY_CHUNK]
            x, g, thr32 = finder.kept_groups(bound, _as_float(minima[sub]), q_norm[sub], q_sq[sub], shift[sub])
            too_many = torch.bincount(x, minlength=len(sub)) * GROUP > 8 * candidates.MAX_CANDIDATES
            heavy[sub] = too_many
            light = ~too_many[x]
            x, g, thr32 = x[light], g[light], thr32[light]
            if size + len(x) > capacity:
                capacity = 2 * (size + len(x))
                pair_x, pair_g, pair_thr = (torch.cat([t[:size], t.new_empty(capacity - size)])
                                            for t in (pair_x, pair_g, pair_thr))
            pair_x[size : size + len(x)] = sub[x]
            pair_g[size : size + len(x)] = g
            pair_thr[size : size + len(x)] = thr32
            size += len(x)
    cand_x, cand_j = _rescore(finder, c, matrix, pair_x[:size], pair_g[:size], pair_thr[:size])
    del pair_x, pair_g, pair_thr
    release_free_heap()
    with _bookkeeping_threads(device):
        keep = (cand_j < n) & (seq[cand_x] != seq[cand_j.clamp(max=n - 1)])  # padding; the excluded pairs
        cand_x, cand_j = cand_x[keep] - first_row, cand_j[keep]
        counts = torch.bincount(cand_x, minlength=len(rows))
        heavy[rows] |= counts > candidates.MAX_CANDIDATES
        light = ~heavy[rows][cand_x]
        cand_x, cand_j = cand_x[light], cand_j[light]
        order = torch.argsort(cand_x, stable=True)
        cand_x, cand_j = cand_x[order], cand_j[order]
        counts = torch.bincount(cand_x, minlength=len(rows))
        ends = torch.cumsum(counts, 0).tolist()
        for start in range(0, len(rows), _VERIFY_QUERIES):
            stop = min(start + _VERIFY_QUERIES, len(rows))
            lo, hi = (ends[start - 1] if start else 0), ends[stop - 1]
            finder._verify(finder.gallery[rows[start:stop]], cand_x[lo:hi] - start, cand_j[lo:hi],
                           counts[start:stop], out_ids, out_dist, rows[start:stop])


def _as_float(bits: torch.Tensor) -> torch.Tensor:
    return bits.view(torch.bfloat16).float() if bits.dtype == torch.int16 else bits


def _group_minima(
    finder: FilterSearch, c: torch.Tensor, matrix: torch.Tensor, seq_codes: np.ndarray, block_bytes: int, progress: bool
) -> torch.Tensor:
    """(N, groups) smallest score of each group for each query, every pair scored once (as int16 bits
    for a bfloat16 product, whose positive values order as their bits; float32 otherwise).

    Blocks of ``rows`` items against tiles of ``width`` columns from the block's first item on: one
    shape for every product (oneDNN keeps a primitive, with its buffers, per shape: measured +180 MB
    resident at 50k with a shape per block), and a tile's scores stay in the cache.
    """
    from .search import Exclusions

    n, padded, n_groups, device = finder.n, finder.padded, finder.n_groups, c.device
    bits = finder.backend.dtype == torch.bfloat16
    minima = torch.full((n, n_groups), _INF16 if bits else float("inf"),
                        dtype=torch.int16 if bits else torch.float32, device=device)
    exclusions = Exclusions.build(seq_codes, int(seq_codes.max()) + 1, device)
    seq = torch.as_tensor(seq_codes, device=device)
    dtype = finder.backend.dtype if finder.backend.library == "torch" else torch.float32
    rows = min(_BLOCK_ROWS, padded)
    width = tile_width(finder.padded, finder.backend, block_bytes)
    if max(a + -(-(padded - a) // width) * width for a in range(0, n, rows)) > len(matrix):
        raise ValueError("the gallery operand needs spare rows for whole tiles (FilterSearch(spare=...))")
    block = _operand_rows(finder, rows)
    scores = torch.empty(rows, width, dtype=dtype, device=device)
    starts = list(range(0, n, rows))
    for a in tqdm(starts, desc="retrieval", unit="block", disable=not progress, leave=False):
        real = min(rows, n - a)
        block[:real, : finder.dim] = finder.gallery[a : a + real]
        block[:real, finder.dim + 2 :] = c[a : a + real]
        if real < rows:  # padding rows score +PAD against every item: never a minimum
            block[real:] = 0
            block[real:, -1] = 1e38
        r, pos = exclusions.pairs(seq[a : a + real])
        for t0 in range(a, padded, width):
            finder.backend.mm(block, matrix[t0 : t0 + width], out=scores)
            with _bookkeeping_threads(device):
                here = (pos >= t0) & (pos < t0 + width)
                scores[r[here], pos[here] - t0] = float("inf")
                view = scores.view(torch.int16) if bits else scores
                g0, g1 = t0 // GROUP, min((t0 + width) // GROUP, n_groups)
                # rows: their minimum in each group of the tile (the block's own groups included)
                minima[a : a + real, g0:g1] = view[:real, : (g1 - g0) * GROUP].view(real, -1, GROUP).amin(2)
                # columns after the block: their minimum over each of the block's groups of rows
                c0, c1 = max(t0, a + rows), min(t0 + width, n)
                if c0 < c1:
                    down = view[:, c0 - t0 : c1 - t0].view(rows // GROUP, GROUP, -1).amin(1)
                    minima[c0:c1, a // GROUP : (a + rows) // GROUP] = down.T
    return minima


def _rescore(
    finder: FilterSearch, c: torch.Tensor, matrix: torch.Tensor, x: torch.Tensor, g: torch.Tensor, thr32: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, gallery position) of every item of the kept (query ``x``, group ``g``) pairs whose score
    is at most the pair's threshold.

    Per group, its items (as queries: the other role, which the symmetric bound covers) against the
    gallery rows of the queries that kept it, in pieces of ``_RESCORE_ROWS`` queries; ``_RESCORE_BATCH``
    pieces go through one batched product (per-piece steps cost more than the products here). Fixed
    buffers throughout: new tensors per product, interleaved with the kept hits, fragmented the heap
    (measured: +76 MB resident at 50k)."""
    order = torch.argsort(g, stable=True)
    x, g, thr32 = x[order], g[order], thr32[order]
    backend, n, dim, device = finder.backend, finder.n, finder.dim, c.device
    dtype = backend.dtype if backend.library == "torch" else torch.float32
    bits = dtype == torch.bfloat16
    # the pieces: (group, first pair, pairs); a slot past a piece's pairs gets a threshold no score meets
    groups, counts = torch.unique_consecutive(g, return_counts=True)
    per_group = -(-counts // _RESCORE_ROWS)
    piece_group = torch.repeat_interleave(groups, per_group)
    group_start = torch.cumsum(counts, 0) - counts
    piece_rank = torch.arange(len(piece_group), device=device) - torch.repeat_interleave(
        torch.cumsum(per_group, 0) - per_group, per_group)
    piece_first = torch.repeat_interleave(group_start, per_group) + piece_rank * _RESCORE_ROWS
    piece_end = torch.repeat_interleave(group_start + counts, per_group)
    slots = torch.arange(_RESCORE_ROWS, device=device)
    thr = _ceiling_bits(thr32) if bits else thr32
    never = -1 if bits else float("-inf")

    batch, width = _RESCORE_BATCH, matrix.shape[1]
    items = torch.zeros(batch * GROUP, width, dtype=dtype, device=device)
    others = torch.zeros(batch * _RESCORE_ROWS, width, dtype=matrix.dtype, device=device)
    scores = torch.empty(batch, GROUP, _RESCORE_ROWS, dtype=dtype, device=device)
    item_slots = torch.arange(GROUP, device=device)
    size, capacity = 0, len(x) + 1024
    out_x = torch.empty(capacity, dtype=torch.int64, device=device)
    out_j = torch.empty(capacity, dtype=torch.int64, device=device)
    for b0 in range(0, len(piece_group), batch):
        pg = piece_group[b0 : b0 + batch]
        pos = piece_first[b0 : b0 + batch, None] + slots
        valid = pos < piece_end[b0 : b0 + batch, None]
        if len(pg) < batch:  # the last batch: dummy pieces (group 0, no valid slot) keep one shape
            pad = batch - len(pg)
            pg = torch.cat([pg, pg.new_zeros(pad)])
            pos = torch.cat([pos, pos.new_zeros(pad, _RESCORE_ROWS)])
            valid = torch.cat([valid, valid.new_zeros(pad, _RESCORE_ROWS)])
        pos = torch.where(valid, pos, 0).view(-1)
        queries = x[pos]
        limit = torch.where(valid.view(-1), thr[pos], never).view(batch, 1, _RESCORE_ROWS)
        torch.index_select(matrix, 0, queries, out=others)
        item_ids = (pg[:, None] * GROUP + item_slots).view(-1)
        real = item_ids < n
        safe = item_ids.clamp(max=n - 1)
        items[:, :dim] = finder.gallery.index_select(0, safe)
        items[:, dim : dim + 2] = 1
        items[:, dim + 2 :] = c[safe]
        if not bool(real.all()):  # padding items score +PAD against every row: never under a threshold
            items[~real] = 0
            items[~real, -1] = 1e38
        torch.bmm(items.view(batch, GROUP, width), others.view(batch, _RESCORE_ROWS, width).transpose(1, 2), out=scores)
        if bits:  # positive bf16 scores order as their int16 bits (3x faster than a float compare)
            hits = scores.view(torch.int16) <= limit
        else:
            hits = scores <= limit
        piece, item, slot = hits.nonzero().unbind(1)
        if size + len(item) > capacity:
            capacity = 2 * (size + len(item))
            out_x, out_j = (torch.cat([t[:size], t.new_empty(capacity - size)]) for t in (out_x, out_j))
        torch.index_select(queries, 0, piece * _RESCORE_ROWS + slot, out=out_x[size : size + len(item)])
        torch.add(item, pg[piece] * GROUP, out=out_j[size : size + len(item)])
        size += len(item)
    return out_x[:size], out_j[:size]


def _ceiling_bits(thr32: torch.Tensor) -> torch.Tensor:
    """int16 bits of the smallest bfloat16 >= each float32 threshold (-1 for a negative one: no positive
    bf16 score's bits are below it), so that ``score_bits <= bits`` is ``score <= threshold``.

    Example:
        >>> _ceiling_bits(torch.tensor([1.0, 1.001, -2.0])).tolist()  # 1.0 is 0x3F80; the next bf16 up
        [16256, 16257, -1]
    """
    up = round_up(thr32, torch.bfloat16)
    return torch.where(thr32 < 0, torch.full_like(up.view(torch.int16), -1), up.view(torch.int16))


def _operand_rows(finder: FilterSearch, rows: int) -> torch.Tensor:
    """A (rows, D + WIDTH_EXTRA) buffer for query rows ``[x, 1, 1, c_hi, c_lo]`` in the backend's dtype
    (ones set)."""
    out = torch.zeros(rows, finder.dim + WIDTH_EXTRA, dtype=finder.backend.dtype, device=finder.gallery.device)
    out[:, finder.dim : finder.dim + 2] = 1
    return out


def tile_width(padded: int, backend: Backend, block_bytes: int) -> int:
    """Columns of a tile of the minima pass (a multiple of GROUP): whole tiles need this many spare
    padding rows in the gallery operand."""
    element = torch.finfo(backend.dtype if backend.library == "torch" else torch.float32).bits // 8
    rows = min(_BLOCK_ROWS, padded)
    tile = min(block_bytes, _TILE_BYTES)
    return max(rows, min(padded, max(GROUP, tile // (element * rows) // GROUP * GROUP)))
