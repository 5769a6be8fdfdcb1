"""Near-duplicate pairs and train/validation leaks, from the engine's exact neighbours.

No N x N matrix: every item's nearest neighbours come from :func:`oml_viz.retrieve` (chunked,
bounded memory). Pairs closer than the threshold are kept; an item whose last retrieved neighbour
is still under the threshold (a cluster of many copies) is searched again with twice as many
neighbours, until none is, so every pair under the threshold is reported exactly once.

**The automatic threshold** (``threshold=None``) is an outlier cut on each item's nearest-neighbour
distance ``d_1``: near-duplicates sit far below the usual nearest-neighbour distance of the data.
On ``l = log d_1`` (over the items with ``d_1 > 0``), the cut is
``exp(median(l) - 4 * 1.4826 * MAD(l))``, four robust standard deviations below the typical
nearest-neighbour distance (a normal spread of ``l`` puts 3 in 100,000 items there by chance; the
median and MAD stay put while fewer than half of the items are duplicates). The value used is in
``df.attrs["threshold"]``. **Exact copies** (distance 0, e.g. identical rows) always count,
whatever the threshold.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(50, 8)).astype("float32")
    >>> emb[7] = emb[3]                       # an exact copy
    >>> emb[20] = emb[11] + 1e-3              # a near duplicate
    >>> splits = ["train"] * 25 + ["validation"] * 25
    >>> dups = find_duplicates(emb, splits=splits)
    >>> dups[["id_a", "id_b", "cross_split"]].values.tolist()
    [[3, 7, False], [11, 20, False]]
    >>> bool(dups.attrs["threshold"] > 0)
    True
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.engine import retrieve
from oml_viz.engine.validation import as_codes, as_embeddings, check_positive_int

__all__ = ["AUTO_Z", "auto_threshold", "duplicates_from_result", "find_duplicates"]

AUTO_Z = 4.0  # robust standard deviations below the median log nearest-neighbour distance
_FIRST_K = 4  # neighbours per item in the first pass (doubled for items that need more)
_MAX_PAIRS = 5_000_000


def auto_threshold(nn_distances: np.ndarray, z: float = AUTO_Z) -> float:
    """The automatic duplicate cut from nearest-neighbour distances (see the module docstring).

    Example:
        >>> d = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 0.001])
        >>> t = auto_threshold(d)
        >>> 0.001 < t < 0.9
        True
    """
    d = np.asarray(nn_distances, dtype=np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    if len(d) == 0:
        return 0.0
    logs = np.log(d)
    med = float(np.median(logs))
    mad = 1.4826 * float(np.median(np.abs(logs - med)))
    if mad == 0.0:  # every distance the same: nothing stands out but exact copies
        return 0.0
    return float(np.exp(med - z * mad))


def find_duplicates(
    embeddings: Any,
    *,
    threshold: float | None = None,
    splits: Sequence[Hashable] | None = None,
    labels: Sequence[Hashable] | None = None,
    sequence_ids: Sequence[Hashable] | None = None,
    distance: str = "euclidean",
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Pairs of items closer than ``threshold`` (near-duplicates), and which of them cross splits.

    Args:
        embeddings: (N, D) numpy array or torch tensor.
        threshold: pairs at distance <= threshold count; ``None`` picks it from the data (module
            docstring). Exact copies (distance 0) always count.
        splits: (N,) optional split names (e.g. the dataframe's ``split`` column): ``cross_split``
            marks pairs whose items are in different splits (train/validation leaks).
        labels: (N,) optional labels: ``same_label`` says whether both items share one.
        sequence_ids: (N,) optional; pairs within one sequence are never reported.
        distance: ``"euclidean"`` or ``"cosine"``.
        device, batch_size, progress: passed to :func:`oml_viz.retrieve`.

    Returns:
        A DataFrame of pairs with ``id_a < id_b``, sorted by distance (ties by ids): ``id_a``,
        ``id_b``, ``distance``, ``same_label`` and ``cross_split`` (nullable booleans, ``<NA>``
        without labels / splits). ``attrs``: ``threshold`` (the one used), ``auto_threshold``
        (whether it was picked from the data), ``distance``.
    """
    raw = as_embeddings(embeddings)
    n = raw.shape[0]
    if n < 2:
        raise ValueError(f"embeddings has {n} row: duplicates need at least 2 items")
    split_codes = None if splits is None else as_codes("splits", splits, n)[0]
    label_codes = None if labels is None else as_codes("labels", labels, n)[0]
    if sequence_ids is None:
        seq = np.arange(n, dtype=np.int64)
    else:
        seq = as_codes("sequence_ids", sequence_ids, n, missing_unique=True)[0]
    _check_threshold(threshold)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    kwargs = dict(distance=distance, sequence_ids=seq, device=device, batch_size=batch_size)
    res = retrieve(raw, np.zeros(n, dtype=np.int64), top_n=min(_FIRST_K, n - 1), progress=progress, **kwargs)
    return _from_first_pass(raw, seq, res, threshold, label_codes, split_codes, kwargs)


def duplicates_from_result(res: Any, *, threshold: float | None = None, splits: Sequence[Hashable] | None = None,
                           labels: Sequence[Hashable] | None = None) -> pd.DataFrame:
    """:func:`find_duplicates` on a leave-one-out result that is already there (every item a query
    and a gallery item, e.g. the search of :func:`oml_viz.find_label_issues`): its neighbours are
    the first pass, so only items with more neighbours under the cut than it holds are searched
    again. Its embeddings, distance and sequence exclusions are used.
    """
    if not (res.is_query.all() and res.is_gallery.all()):
        raise ValueError("res: duplicates need every item as a query and a gallery item "
                         "(call retrieve without is_query / is_gallery)")
    raw = res._raw
    n = raw.shape[0]
    split_codes = None if splits is None else as_codes("splits", splits, n)[0]
    label_codes = None if labels is None else as_codes("labels", labels, n)[0]
    _check_threshold(threshold)
    seq = np.asarray(res._seq_codes, dtype=np.int64)
    kwargs = dict(distance=res.distance, sequence_ids=seq, device=res._device, batch_size=None)
    return _from_first_pass(raw, seq, res, threshold, label_codes, split_codes, kwargs)


def _check_threshold(threshold: Any) -> None:
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
                or not np.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0 or None; got {threshold!r}")


def _from_first_pass(raw: torch.Tensor, seq: np.ndarray, res: Any, threshold: float | None,
                     label_codes: np.ndarray | None, split_codes: np.ndarray | None, kwargs: dict) -> pd.DataFrame:
    n = raw.shape[0]
    ids, dist = res.retrieved_ids, res.distances
    k = ids.shape[1]
    distance = kwargs["distance"]
    auto = threshold is None
    cut = auto_threshold(dist[:, 0]) if auto else float(threshold)
    pairs = [_pairs_under(res.query_ids, ids, dist, cut)]
    # items whose last neighbour is still under the cut may have more: search them again, wider
    todo = res.query_ids[(ids[:, -1] >= 0) & (dist[:, -1] <= cut)]
    while len(todo) and k < n - 1:
        k = min(2 * k, n - 1)
        mask = np.zeros(n, dtype=bool)
        mask[todo] = True
        more = retrieve(raw, np.zeros(n, dtype=np.int64), mask, top_n=k, progress=False, **kwargs)
        pairs.append(_pairs_under(more.query_ids, more.retrieved_ids, more.distances, cut))
        if sum(len(p[0]) for p in pairs) > _MAX_PAIRS:
            raise ValueError(f"threshold={cut:g} gives more than {_MAX_PAIRS:,} pairs: use a smaller threshold")
        todo = more.query_ids[(more.retrieved_ids[:, -1] >= 0) & (more.distances[:, -1] <= cut)]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    d = np.concatenate([p[2] for p in pairs])
    a, b, d = _exact_copies(raw, seq, a, b, d)
    table = _table(a, b, d, label_codes, split_codes)
    table.attrs.update(threshold=cut, auto_threshold=auto, distance=distance)
    return table


def _pairs_under(query_ids: np.ndarray, ids: np.ndarray, dist: np.ndarray, cut: float):
    keep = (ids >= 0) & ((dist <= cut) | (dist == 0))
    rows, cols = np.nonzero(keep)
    return query_ids[rows], ids[rows, cols], dist[rows, cols].astype(np.float64)


def _exact_copies(raw: torch.Tensor, seq: np.ndarray, a: np.ndarray, b: np.ndarray, d: np.ndarray):
    """Add every pair of identical rows (outside one sequence) at distance 0."""
    rows = raw.numpy()
    view = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, group, counts = np.unique(view, return_inverse=True, return_counts=True)
    dup_groups = np.flatnonzero(counts > 1)
    if len(dup_groups) == 0:
        return a, b, d
    members = np.flatnonzero(np.isin(group, dup_groups))
    order = members[np.argsort(group[members], kind="stable")]
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], len(order)]
    extra_a, extra_b = [], []
    for s, e in zip(starts, ends):
        m = order[s:e]
        i, j = np.triu_indices(len(m), 1)
        pa, pb = m[i], m[j]
        keep = seq[pa] != seq[pb]
        extra_a.append(pa[keep])
        extra_b.append(pb[keep])
    ea, eb = np.concatenate(extra_a), np.concatenate(extra_b)
    return np.r_[a, ea], np.r_[b, eb], np.r_[d, np.zeros(len(ea))]


def _table(a: np.ndarray, b: np.ndarray, d: np.ndarray, label_codes: np.ndarray | None,
           split_codes: np.ndarray | None) -> pd.DataFrame:
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    # one row per pair: the smallest distance seen (the two directions may differ in the last bit)
    order = np.lexsort((d, hi, lo))
    lo, hi, d = lo[order], hi[order], d[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])] if len(lo) else np.zeros(0, bool)
    lo, hi, d = lo[first], hi[first], d[first]
    order = np.lexsort((hi, lo, d))
    lo, hi, d = lo[order], hi[order], d[order]
    same = (pd.array(label_codes[lo] == label_codes[hi], dtype="boolean") if label_codes is not None
            else pd.array([pd.NA] * len(lo), dtype="boolean"))
    cross = (pd.array(split_codes[lo] != split_codes[hi], dtype="boolean") if split_codes is not None
             else pd.array([pd.NA] * len(lo), dtype="boolean"))
    return pd.DataFrame({"id_a": lo, "id_b": hi, "distance": d.astype(np.float32), "same_label": same,
                         "cross_split": cross})
