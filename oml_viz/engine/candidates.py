"""Exact top-k by filter and verify: a fast score pass with a proven error bound, exact re-scoring.

The answer is defined by the exact float32 distances of :func:`.search.exact_distances` (the
formula the engine has always reported) and ties by item id: the k gallery items with the smallest
``(distance, id)``. The fast pass only decides which items cannot be in that answer.

**Scores.** The gallery operand's rows are ``[-2g, n_hi, n_lo, 1, 1]`` (cosine ``[-g, 0, 0, 1, 1]``)
and the queries' ``[q, 1, 1, c_hi, c_lo]`` (:data:`WIDTH_EXTRA` columns after the vector), so the
real-number score of a pair is ``s + c`` with ``s = |g|^2 - 2 q.g`` (euclidean, so
``d^2 = s + |q|^2``) or ``s = -q.g`` (cosine, unit rows, so ``d = 1 + s``). ``n_hi + n_lo`` is the
float32 ``|g|^2`` split into two values of the operand's dtype (the pair is within ``u_in^2`` of it), and
``c = c_hi + c_lo`` per query is large enough that every score is positive, so that bf16 minima can
be taken on the bits as int16 (here ``c_lo = 0``: ``c`` is a bf16 value; :mod:`.leave_one_out` uses
both). A backend (:mod:`.gemm`) rounds the operands with unit roundoff ``u_in`` (bf16: ``2^-8``;
TF32: ``2^-11``; fp32: exact), accumulates in float32 in any order (unit ``u = 2^-24``,
``gamma = n u / (1 - n u)``, n = D + 4 terms) and rounds the result with ``u_out`` (bf16 output:
``2^-8``). Then for every pair ``|s~ - (s + c)| <= B_in(q, g) + u' |s~|`` with
``u' = u_out / (1 - u_out)`` and ``B_in = alpha |q||g| + beta |g|^2 + gamma c + eps (1 + |q| + 2|g|)``:

- operands: the rounded vectors are ``q + e_q`` and ``g + e_g`` with ``|e_q| <= r_q |q|`` and
  ``|e_g| <= r_g |g|``, where ``r`` is the largest ratio measured on the rows themselves
  (:func:`.gemm.operand_rounding`; at most ``u_in`` but for denormals, ~0.52 ``u_in`` for bf16), so by
  Cauchy-Schwarz the dot product moves by at most ``(r_q + r_g + r_q r_g) |q||g|``; the ``|g|^2`` pair
  is computed in float32 (``gamma``) and split (``v = u_in^2``; a backend that rounds inside the
  product, TF32, rounds it again: ``v = u_in``); ``c`` and the ones are exact;
- accumulation: ``gamma`` times the sum of the magnitudes of the terms, at most
  ``f (1+r_q)(1+r_g) |q||g| + (1+u_in)^2 (1+gamma) |g|^2 + c`` (``f = 2`` euclidean, ``1`` cosine,
  which has no ``|g|^2`` term);
- output rounding: ``u_out |exact sum| <= u' |s~|``;
- ``eps = 8 (D + 4) 2^-126`` covers denormals flushed to zero by bf16 dot-product instructions.

So ``alpha = f (r_q + r_g + r_q r_g) + gamma f (1 + r_q)(1 + r_g)`` and
``beta = gamma + v (1 + gamma) + gamma (1 + u_in)^2 (1 + gamma)`` (euclidean), each raised by 1 % for
the float64 arithmetic that applies them. Without measured ratios ``r = u_in``.

**Exact distances.** The float32 formula ``d~`` is within a relative ``theta = 2 (D + 8) u`` of the
real distance (squared, euclidean) plus ``(D + 2) 2^-125`` for squares below the normal range; cosine's
``1 - q.g`` is within ``gamma_n |q||g| + u (1 + 2 |q||g|)``.

**Filter.** Per query: ``tau`` = the largest ``s~ + B`` over k distinct items (the k smallest
``s~``), an upper bound of the k-th smallest real score. Every item of the answer has
``d~ <= `` (k-th smallest ``d~``), hence a real score ``s <= T(tau)`` (tau widened by the distance
error above), hence ``s~ - B <= T(tau)``. The filter keeps exactly those items (first whole groups
of 128 columns by their minimum and largest norm, then single items), computes ``d~`` for them with
the same formula, and selects by ``(d~, id)``: the result equals the exact answer, whatever the
backend's rounding. Rows left with more than ``MAX_CANDIDATES`` candidates (massive exact ties,
extreme norms) are redone with the float32 backend, then, if still needed, by exact distances over
the whole gallery in pieces.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .gemm import Backend, fp32_backend, operand_rounding
from .topk import GROUP, ordered_int

U32 = 2.0**-24
TINY = 2.0**-126  # smallest normal float32 (and bfloat16)
MAX_CANDIDATES = 4096  # per query; more goes to the next, tighter stage
_VERIFY_PAIRS = 1 << 12  # pairs whose vectors are gathered at once when verifying (~6 MB each)
_PAD = 1e38
_INVALID = 1e37
_PIECE = 1024  # gallery rows converted at once (small pieces: the transients stay a few MB)
_SAFE_SCORE = 1e35  # larger possible scores could reach the padding sentinels: use exact pieces
WIDTH_EXTRA = 4  # operand columns after the vector: gallery [n_hi, n_lo, 1, 1], queries [1, 1, c_hi, c_lo]


def _gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


@dataclass(frozen=True)
class Bound:
    """``|s~ - (s + c)| <= alpha |q||g| + beta |g|^2 + gamma c + eps (1 + |q| + 2|g|) + u_out' |s~|``."""

    alpha: float
    beta: float
    gamma: float
    eps: float
    u_out: float  # u_out / (1 - u_out)

    @classmethod
    def of(cls, backend: Backend, dim: int, distance: str, rho_q: float | None = None,
           rho_g: float | None = None) -> Bound:
        """The bound of ``backend``'s scores for ``dim``-dimensional vectors (derivation: module doc);
        ``rho_q`` / ``rho_g``: the operands' measured rounding ratios (:func:`.gemm.operand_rounding`),
        ``u_in`` when not given.

        Example:
            >>> from oml_viz.engine.gemm import BACKENDS
            >>> b = Bound.of(BACKENDS["torch-bf16"], 384, "euclidean")
            >>> 4 * 2**-8 < b.alpha < 4.1 * 2**-8, b.u_out > 2**-8
            (True, True)
            >>> Bound.of(BACKENDS["torch-bf16"], 384, "euclidean", 0.52 * 2**-8, 0.52 * 2**-8).alpha < 2.2 * 2**-8
            True
        """
        u_in, g = backend.u_in, _gamma(dim + WIDTH_EXTRA)
        r_q = u_in if rho_q is None else rho_q
        r_g = u_in if rho_g is None else rho_g
        f = 2.0 if distance == "euclidean" else 1.0
        alpha = f * (r_q + r_g + r_q * r_g) + g * f * (1 + r_q) * (1 + r_g)
        beta = 0.0
        if distance == "euclidean":
            v = u_in**2 if backend.dtype != torch.float32 else u_in  # the split |g|^2 (module doc)
            beta = g + v * (1 + g) + g * (1 + u_in) ** 2 * (1 + g)
        u_out = backend.u_out / (1 - backend.u_out)
        return cls(alpha * 1.01, beta * 1.01, g * 1.01, 8 * (dim + WIDTH_EXTRA) * TINY, u_out * 1.01)

    def at(self, q_norm: torch.Tensor, g_norm: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``B_in`` for (broadcast) norms and shifts, float64."""
        return (self.alpha * q_norm * g_norm + self.beta * g_norm * g_norm + self.gamma * shift
                + self.eps * (1 + q_norm + 2 * g_norm))

    def below(self, x: torch.Tensor) -> torch.Tensor:
        """The largest ``s~`` with ``s~ - u_out' |s~| <= x`` (in place on ``x``)."""
        return torch.where(x >= 0, x / (1 - self.u_out), x / (1 + self.u_out))


def score_limit(tau: torch.Tensor, q_sq: torch.Tensor, qg_max: torch.Tensor, dim: int, distance: str) -> torch.Tensor:
    """Largest real score an answer item can have, given ``tau`` >= the k-th smallest real score.

    ``q_sq`` is ``|q|^2`` and ``qg_max`` the largest ``|q||g|`` (float64, per query).
    """
    if distance == "euclidean":
        theta = 2 * (dim + 8) * U32
        under = (dim + 2) * 2.0**-125  # squares flushed or rounded below the normal range
        d2 = (tau + q_sq).clamp(min=0)
        limit = ((1 + theta) * d2 + 2 * under) / (1 - theta) - q_sq
    else:
        err = _gamma(dim + 2) * qg_max + U32 * (1 + 2 * qg_max) + (dim + 3) * 2.0**-125
        limit = torch.maximum(tau + 2 * err, -1 + err)
    limit = limit + 1e-12 * (tau.abs() + q_sq.abs() + 1e-30)  # the float64 arithmetic above
    return torch.where(torch.isfinite(tau), limit, torch.full_like(limit, float("inf")))


class FilterSearch:
    """Exact top-k of query chunks against one gallery by filter and verify (see the module doc)."""

    def __init__(
        self,
        gallery: torch.Tensor,
        gallery_ids: torch.Tensor,
        distance: str,
        k: int,
        backend: Backend,
        spare: int = 0,
    ) -> None:
        """``gallery`` (G, D) float32 rows (unit rows for cosine), ``gallery_ids`` their item ids;
        ``spare`` padding rows after the padded gallery in the operand (:func:`padded_operand`)."""
        self.gallery, self.gallery_ids, self.distance, self.k = gallery, gallery_ids, distance, k
        self.spare = spare
        self.n, self.dim = gallery.shape
        self.padded = -(-self.n // GROUP) * GROUP
        self.n_groups = self.padded // GROUP
        # squared norms in float64, in pieces (no float64 copy of the whole gallery) written into one array:
        # a list of small results between the pieces' temporaries fragmented the heap (measured: +60-120 MB
        # resident at 50k in some runs)
        self.sq_norms = torch.empty(self.n, dtype=torch.float64, device=gallery.device)
        for start in range(0, self.n, _PIECE):
            torch.sum(gallery[start : start + _PIECE].double().pow_(2), 1, out=self.sq_norms[start : start + _PIECE])
        norms = torch.zeros(self.padded, dtype=torch.float64, device=gallery.device)
        norms[: self.n] = self.sq_norms.sqrt() * (1 + 1e-12)
        self.norms = norms
        self.group_norms = norms.view(self.n_groups, GROUP).amax(1)
        self.max_norm = float(norms.max()) if self.n else 0.0
        self.fp32 = fp32_backend(gallery.device)
        self._matrices: dict[str, torch.Tensor | None] = {}
        self._rho: dict[str, float] = {}
        self.backend = backend if self._matrix(backend) is not None else self.fp32

    def _matrix(self, backend: Backend) -> torch.Tensor | None:
        """The gallery operand in ``backend``'s dtype, (padded G, D + WIDTH_EXTRA); None when rounding
        made it non-finite."""
        m = self.padded_operand(backend)
        return None if m is None else m[: self.padded]

    def padded_operand(self, backend: Backend) -> torch.Tensor | None:
        """:meth:`_matrix` with ``spare`` more padding rows (they score +PAD against any query)."""
        if backend.name not in self._matrices:
            m = self._augmented(backend)
            if m.dtype != backend.dtype or not m.is_contiguous():
                m = backend.prepare(m)
            finite = all(bool(torch.isfinite(m[i : min(i + _PIECE, self.n)]).all()) for i in range(0, self.n, _PIECE))
            self._matrices[backend.name] = m if finite else None
        return self._matrices[backend.name]

    def operand_ratio(self, backend: Backend) -> float:
        """The gallery operand's measured rounding ratio on ``backend`` (:func:`.gemm.operand_rounding`)."""
        self.padded_operand(backend)
        return self._rho[backend.name]

    def bound(self, backend: Backend, rho_q: float | None = None) -> Bound:
        """:class:`Bound` of ``backend``'s scores against this gallery (``rho_q``: the queries' measured
        rounding ratio)."""
        return Bound.of(backend, self.dim, self.distance, rho_q, self.operand_ratio(backend))

    def _augmented(self, backend: Backend) -> torch.Tensor:
        """(padded G + spare, D + WIDTH_EXTRA) rows ``[-2g, n_hi, n_lo, 1, 1]`` (cosine ``[-g, 0, 0, 1, 1]``,
        module doc) in ``dtype``, built in pieces so that no float32 copy of the whole gallery is held next
        to the result; records the rows' measured rounding (:func:`.gemm.operand_rounding`)."""
        from .search import _PAD_SCORE

        g, n, dim, dtype = self.gallery, self.n, self.dim, backend.dtype
        rho = 0.0
        out = torch.zeros(self.padded + self.spare, dim + WIDTH_EXTRA, dtype=dtype, device=g.device)
        for start in range(0, n, _PIECE):
            piece = g[start : start + _PIECE]
            rows = slice(start, start + len(piece))
            vectors = -2 * piece if self.distance == "euclidean" else -piece
            out[rows, :dim] = vectors.to(dtype)
            rho = max(rho, operand_rounding(backend, vectors))
            if self.distance == "euclidean":
                out[rows, dim : dim + 2] = split(piece.pow(2).sum(1), dtype)
        self._rho[backend.name] = rho
        out[:n, dim + 2 :] = 1
        out[n:, dim] = _PAD_SCORE
        return out

    def query_operand(self, queries: torch.Tensor, c: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(R, D + WIDTH_EXTRA) query rows ``[q, 1, 1, c_hi, c_lo]`` in ``dtype`` (``c`` float64, per query).

        Example:
            >>> f = FilterSearch(torch.ones(1, 2), torch.arange(1), "euclidean", 1, fp32_backend(torch.device("cpu")))
            >>> f.query_operand(torch.ones(1, 2), torch.tensor([3.0], dtype=torch.float64), torch.bfloat16).tolist()
            [[1.0, 1.0, 1.0, 1.0, 3.0, 0.0]]
        """
        out = torch.ones(queries.shape[0], self.dim + WIDTH_EXTRA, dtype=dtype, device=queries.device)
        out[:, : self.dim] = queries
        out[:, self.dim + 2 :] = split(c, dtype)
        return out

    def run(
        self, queries: torch.Tensor, excluded: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, k) retrieved item ids (-1 padded) and float32 distances (inf padded) of a query chunk."""
        rows, device = queries.shape[0], queries.device
        out_ids = torch.full((rows, self.k), -1, dtype=torch.int64, device=device)
        out_dist = torch.full((rows, self.k), float("inf"), dtype=torch.float32, device=device)
        q64 = queries.double()
        q_sq = (q64 * q64).sum(1)
        q_norm = q_sq.sqrt() * (1 + 1e-12)
        extreme = self.max_norm * (2 * q_norm + self.max_norm) > _SAFE_SCORE
        pending = None if not bool(extreme.any()) else torch.arange(rows, device=device)[~extreme]
        for backend in (self.backend, self.fp32):
            if (pending is not None and not len(pending)) or self._matrix(backend) is None:
                continue
            if pending is None:
                heavy = self._filter(backend, queries, q_norm, q_sq, excluded, out_ids, out_dist, None)
                pending = torch.arange(rows, device=device)[heavy]
            else:
                sub = _subset(excluded, pending, rows)
                heavy = self._filter(backend, queries[pending], q_norm[pending], q_sq[pending], sub,
                                     out_ids, out_dist, pending)
                pending = pending[heavy]
            if backend is self.fp32:
                break
        leftover = torch.arange(rows, device=device)[extreme]
        if pending is not None:
            leftover = torch.cat([leftover, pending])
        for row in leftover.tolist():
            self._brute(queries[row], _subset(excluded, torch.tensor([row], device=device), rows),
                        out_ids, out_dist, row)
        return out_ids, out_dist

    def _filter(
        self,
        backend: Backend,
        queries: torch.Tensor,
        q_norm: torch.Tensor,
        q_sq: torch.Tensor,
        excluded: tuple[torch.Tensor, torch.Tensor],
        out_ids: torch.Tensor,
        out_dist: torch.Tensor,
        out_rows: torch.Tensor | None,
    ) -> torch.Tensor:
        """Fill the rows it can; return the mask of rows with too many candidates."""
        bound = self.bound(backend, operand_rounding(backend, queries))
        shift = self._shift(bound, q_norm, q_sq)
        lhs = self.query_operand(queries, shift, backend.dtype)
        scores = backend.mm(backend.prepare(lhs), self._matrix(backend))
        with _bookkeeping_threads(scores.device):
            return self._select(backend, bound, scores, queries, q_norm, q_sq, shift, excluded,
                                out_ids, out_dist, out_rows)

    def _shift(self, bound: Bound, q_norm: torch.Tensor, q_sq: torch.Tensor) -> torch.Tensor:
        """Per-query ``c`` (float64 holding a bf16 value) that makes every score positive."""
        lowest = q_sq if self.distance == "euclidean" else q_norm * self.max_norm  # -min of s
        gm = torch.tensor(self.max_norm, dtype=torch.float64, device=q_norm.device)
        need = lowest * (1 + 2**-6) + 2 * bound.at(q_norm, gm, 4 * lowest + 4) + 1e-30
        c = (need * (1 + 2**-6)).to(torch.bfloat16)  # rounding to bf16 loses < 2^-8: still >= need
        return c.double()

    def kept_groups(
        self, bound: Bound, minima32: torch.Tensor, q_norm: torch.Tensor, q_sq: torch.Tensor, shift: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, group, float32 threshold) of every group whose smallest score (``minima32``, float32,
        (rows, groups)) is at most its threshold: an item of the group can be in the row's answer only
        if its score is at most the threshold (rounded up to float32: still conservative). ``shift``:
        score minus real score, per query.

        The threshold grows with the group's largest norm, so a row's threshold at the largest norm
        bounds all of them: one float32 compare over the table finds the few groups (~14 of 391 at 50k)
        whose exact threshold is worth computing (float64 over the whole table cost 4x more).
        """
        k = self.k
        # tau: the k smallest group minima are k distinct items; their bound at the largest norm
        gm = torch.tensor(self.max_norm, dtype=torch.float64, device=q_norm.device)
        if self.n_groups >= k:
            kth = _kth_smallest(minima32, k).double()
            tau = kth + bound.u_out * kth.abs() + bound.at(q_norm, gm, shift) - shift
            tau = torch.where(kth < _INVALID, tau, torch.full_like(tau, float("inf")))
        else:
            tau = torch.full_like(q_norm, float("inf"))
        limit = score_limit(tau, q_sq, q_norm * self.max_norm, self.dim, self.distance) + shift

        # an item stays when s~ - B <= limit; B at its group's largest norm holds for each item
        # (groups first, by their minimum; then the items of the groups kept)
        def threshold(rows: torch.Tensor | slice, norms: torch.Tensor) -> torch.Tensor:
            return bound.below(bound.at(q_norm[rows], norms, shift[rows]).add_(limit[rows])).clamp_(max=_INVALID)

        every = slice(None)
        row_x, row_g = (minima32 <= round_up(threshold(every, gm)).unsqueeze(1)).nonzero().unbind(1)
        thr = threshold(row_x, self.group_norms[row_g])
        keep = minima32[row_x, row_g].double() <= thr
        return row_x[keep], row_g[keep], round_up(thr[keep])

    def _select(
        self,
        backend: Backend,
        bound: Bound,
        scores: torch.Tensor,
        queries: torch.Tensor,
        q_norm: torch.Tensor,
        q_sq: torch.Tensor,
        shift: torch.Tensor,
        excluded: tuple[torch.Tensor, torch.Tensor],
        out_ids: torch.Tensor,
        out_dist: torch.Tensor,
        out_rows: torch.Tensor | None,
    ) -> torch.Tensor:
        rows = queries.shape[0]
        scores[excluded] = float("inf")
        grouped = scores.view(rows, self.n_groups, GROUP)
        if scores.dtype == torch.bfloat16:  # positive bf16 values order as their int16 bits (fast)
            minima32 = grouped.view(torch.int16).amin(dim=2).view(torch.bfloat16).float()
        else:
            minima32 = grouped.amin(dim=2)
        g_rows, g_idx, thr32 = self.kept_groups(bound, minima32, q_norm, q_sq, shift)  # sorted by row
        heavy = torch.bincount(g_rows, minlength=rows) * GROUP > 8 * MAX_CANDIDATES
        if bool(heavy.any()):
            light = ~heavy[g_rows]
            g_rows, g_idx, thr32 = g_rows[light], g_idx[light], thr32[light]
        keep = grouped[g_rows, g_idx].float() <= thr32.unsqueeze(1)
        del scores, grouped
        pair, slot = keep.nonzero().unbind(1)
        cand_rows, cand_cols = g_rows[pair], g_idx[pair] * GROUP + slot  # sorted by row
        counts = torch.bincount(cand_rows, minlength=rows)
        over = counts > MAX_CANDIDATES
        if bool(over.any()):
            heavy |= over
            light = ~heavy[cand_rows]
            cand_rows, cand_cols = cand_rows[light], cand_cols[light]
            counts = torch.bincount(cand_rows, minlength=rows)
        self._verify(queries, cand_rows, cand_cols, counts, out_ids, out_dist, out_rows)
        return heavy

    def _verify(
        self,
        queries: torch.Tensor,
        cand_rows: torch.Tensor,
        cand_cols: torch.Tensor,
        counts: torch.Tensor,
        out_ids: torch.Tensor,
        out_dist: torch.Tensor,
        out_rows: torch.Tensor | None,
    ) -> None:
        """Exact distances of candidate pairs (sorted by row); each row's k smallest (distance, id) go out."""
        from .search import exact_distances

        if not len(cand_rows):
            return
        pieces = []
        for start in range(0, len(cand_rows), _VERIFY_PAIRS):
            r = cand_rows[start : start + _VERIFY_PAIRS]
            c = cand_cols[start : start + _VERIFY_PAIRS]
            q, g = queries.index_select(0, r), self.gallery.index_select(0, c)
            pieces.append(exact_distances(q, g.unsqueeze(1), self.distance)[:, 0])
        dist = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        # distances are >= 0, so their float32 bits sort as the values; ids fill the low 32 bits
        keys = (dist.view(torch.int32).to(torch.int64) << 32) | self.gallery_ids[cand_cols]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(cand_rows), device=keys.device) - starts[cand_rows]
        width = int(counts.max())
        table = torch.full((queries.shape[0], width), torch.iinfo(torch.int64).max, device=keys.device)
        table[cand_rows, rank] = keys
        best = torch.topk(table, min(self.k, width), dim=1, largest=False).values
        n = best.shape[1]
        filled = best != torch.iinfo(torch.int64).max
        ids = torch.where(filled, best & 0xFFFFFFFF, -1)
        dists = torch.where(filled, (best >> 32).to(torch.int32).view(torch.float32), float("inf"))
        if out_rows is None:
            out_ids[:, :n], out_dist[:, :n] = ids, dists
        else:
            out_ids[out_rows, :n], out_dist[out_rows, :n] = ids, dists

    def _brute(
        self,
        query: torch.Tensor,
        excluded: tuple[torch.Tensor, torch.Tensor],
        out_ids: torch.Tensor,
        out_dist: torch.Tensor,
        row: int,
    ) -> None:
        """Exact distances to the whole gallery in pieces: the last resort, always exact."""
        from .search import exact_distances

        mask = torch.ones(self.n, dtype=torch.bool, device=query.device)
        mask[excluded[1][excluded[1] < self.n]] = False
        best_key = torch.empty(0, dtype=torch.int64, device=query.device)
        best_dist = torch.empty(0, dtype=torch.float32, device=query.device)
        piece = max(1, _VERIFY_PAIRS // 4)
        for start in range(0, self.n, piece):
            cols = torch.arange(start, min(start + piece, self.n), device=query.device)
            cols = cols[mask[cols]]
            if not len(cols):
                continue
            dist = exact_distances(query.unsqueeze(0), self.gallery[cols].unsqueeze(0), self.distance)[0]
            key = (ordered_int(dist) << 32) | self.gallery_ids[cols]
            best_key, best_dist = torch.cat([best_key, key]), torch.cat([best_dist, dist])
            order = torch.argsort(best_key)[: self.k]
            best_key, best_dist = best_key[order], best_dist[order]
        n = len(best_key)
        out_ids[row, :n] = best_key & 0xFFFFFFFF
        out_dist[row, :n] = best_dist


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block, then restored."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _bookkeeping_threads(device: torch.device) -> Iterator[None]:
    """One torch thread for the many small steps after the product on CPU.

    They are short and memory-bound: on a shared machine, every parallel step waits for the other
    threads to be scheduled (measured 2-3x slower with 2 threads on a loaded 2-core box).
    """
    if device.type != "cpu":
        yield
        return
    with torch_threads(1):
        yield


def round_up(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x`` rounded up to the lower precision ``dtype`` (a compare against the result stays conservative).

    Example:
        >>> round_up(torch.tensor([1 + 2**-30, 1.0], dtype=torch.float64)).tolist() == [1 + 2**-23, 1.0]
        True
    """
    low = x.to(dtype)
    return torch.where(low.to(x.dtype) < x, torch.nextafter(low, low.new_tensor(float("inf"))), low)


def _kth_smallest(x: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's k-th smallest value (numpy's partition on CPU: 5x faster than torch's topk there).

    Example:
        >>> _kth_smallest(torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]), 2).tolist()
        [2.0, 4.0]
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.partition(x.numpy(), k - 1, axis=1)[:, k - 1])
    return torch.topk(x, k, dim=1, largest=False, sorted=False).values.amax(dim=1)


def split(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 2) ``[hi, lo]`` in ``dtype`` with ``hi + lo`` within ``u^2 |values|`` of ``values`` (``u``:
    ``dtype``'s unit roundoff; float32 values in float32 give ``lo = 0``).

    Example:
        >>> split(torch.tensor([1 + 2**-9 + 2**-12], dtype=torch.float64), torch.bfloat16).double().sum().item() - 1
        0.002197265625
    """
    hi = values.to(dtype)
    lo = (values - hi.to(values.dtype)).to(dtype)
    return torch.stack([hi, lo], dim=1)


def _subset(
    excluded: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, n_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Excluded pairs of the chunk's ``rows``, renumbered 0..len(rows)-1."""
    ex_rows, ex_cols = excluded
    if len(rows) == n_rows:
        return ex_rows, ex_cols
    position = torch.full((n_rows,), -1, dtype=torch.int64, device=rows.device)
    position[rows] = torch.arange(len(rows), device=rows.device)
    new_rows = position[ex_rows]
    keep = new_rows >= 0
    return new_rows[keep], ex_cols[keep]


def ids_are_packable(gallery_ids: np.ndarray) -> bool:
    """Item ids fit the 31 low bits of the packed (distance, id) keys."""
    return len(gallery_ids) == 0 or int(gallery_ids.max()) < 2**31
