"""Suspected label errors from the engine's exact nearest neighbours.

The score of item ``i`` (higher = more likely mislabelled) mixes two views of its ``k`` nearest
neighbours (from :func:`oml_viz.retrieve`: exact, the item itself and items of its sequence left
out):

1. **Class-calibrated neighbour margin** (weight 0.7). Each neighbour votes for its label with a
   Gaussian weight ``exp(-(d / d_k)^2)`` (``d_k``: the item's k-th neighbour distance, so the
   weights adapt to the local density and near neighbours count most). The votes, normalised,
   give ``p_i(c)``. Classes that overlap others have a low typical self-agreement, so each
   class's votes are divided by that class's mean self-agreement ``t_c = mean_{y_j = c} p_j(c)``
   (floored at ``1/k``; the per-class threshold of confident learning) and renormalised to
   ``q_i(c)``. The part is ``(1 - q_i(y_i) + max_{c != y_i} q_i(c)) / 2``: 0 when every neighbour
   agrees with the given label, 1 when every neighbour agrees on one *other* label (the
   "normalised margin" in [0, 1], where a plain vote only counts the disagreeing neighbours).
2. **Distance margin** (weight 0.3): ``d_same / (d_same + d_other)``, the distance to the
   nearest neighbour with the same label against the nearest with another label (either one,
   when not among the ``k``, is taken at ``1.05 d_k``). It orders items whose votes tie (an item
   inside another class's cluster has its nearest other-label item much closer than any item of
   its own label).

Both parts are in [0, 1], hence the score. ``suggested_label`` is the label of highest ``q_i``
(the given one when no other label beats it). On 3% flipped labels (``benchmarks/bench_data_issues.py``)
this ranks the flipped items better than a plain k-NN vote and than cleanlab's Datalab with the
same ``k``, whose score is the unweighted vote share of the given label.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> emb = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(3, 0.1, (20, 2))])
    >>> labels = np.array([0] * 20 + [1] * 20)
    >>> labels[5] = 1                                 # a wrong label inside cluster 0
    >>> issues = find_label_issues(emb, labels, k=5)
    >>> int(issues.index[0]), int(issues["suggested_label"].iloc[0])
    (5, 0)
    >>> bool(issues["score"].iloc[0] > 0.9 > issues["score"].iloc[1])
    True
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.engine import RetrievalResult, retrieve
from oml_viz.engine.validation import as_codes, as_embeddings, check_positive_int

__all__ = ["VOTE_WEIGHT", "find_label_issues", "label_issue_scores", "knn_vote_scores"]

VOTE_WEIGHT = 0.7  # the calibrated neighbour margin; 1 - VOTE_WEIGHT goes to the distance margin
_BEYOND = 1.05  # a same- or other-label item not among the k neighbours is at least this x d_k away


def find_label_issues(
    embeddings: Any,
    labels: Sequence[Hashable],
    *,
    k: int = 10,
    sequence_ids: Sequence[Hashable] | None = None,
    distance: str = "euclidean",
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Items whose nearest neighbours suggest another label, most suspicious first.

    Args:
        embeddings: (N, D) numpy array or torch tensor.
        labels: (N,) hashable labels.
        k: neighbours per item (at most N - 1).
        sequence_ids: (N,) optional; items sharing an item's sequence are not its neighbours.
        distance: ``"euclidean"`` or ``"cosine"``.
        device, batch_size, progress: passed to :func:`oml_viz.retrieve`.

    Returns:
        A DataFrame indexed by item id (``item``) with ``score`` in [0, 1] (higher = more likely
        mislabelled; see the module docstring), ``given_label`` and ``suggested_label``, sorted by
        score descending, ties by id. ``attrs`` holds ``k`` and ``distance``.
    """
    raw = as_embeddings(embeddings)
    n = raw.shape[0]
    codes, uniques = as_codes("labels", labels, n)
    k = check_positive_int("k", k)
    if k > n - 1:
        raise ValueError(f"k={k} is above N - 1 = {n - 1}: an item has at most N - 1 neighbours")
    res = retrieve(raw, codes, top_n=k, distance=distance, sequence_ids=sequence_ids, device=device,
                   batch_size=batch_size, progress=progress)
    given = np.asarray(labels.to_numpy() if isinstance(labels, (pd.Series, pd.Index)) else
                       _as_object(labels, n), dtype=object)
    return label_issue_scores(res, given_labels=given)


def _as_object(values: Any, n: int) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    out = np.empty(n, dtype=object)
    out[:] = list(values)
    return out


def label_issue_scores(res: RetrievalResult, given_labels: Sequence[Hashable] | None = None) -> pd.DataFrame:
    """The label-issue table from a leave-one-out result (every item a query and a gallery item).

    ``res`` must come from ``retrieve(embeddings, labels, top_n=k, ...)`` with no query/gallery
    masks; :func:`find_label_issues` makes it. ``given_labels`` (default: ``res.labels``) are the
    values reported.
    """
    if not (res.is_query.all() and res.is_gallery.all()):
        raise ValueError("res: label issues need every item as a query and a gallery item "
                         "(call retrieve without is_query / is_gallery)")
    labels = np.asarray(res.labels if given_labels is None else given_labels, dtype=object)
    codes = np.asarray(res._label_codes, dtype=np.int64)
    score, suggested = _scores(res.retrieved_ids, res.distances, codes)
    n = len(codes)
    by_code = np.empty(int(codes.max()) + 1, dtype=object)
    by_code[codes] = labels
    order = np.lexsort((np.arange(n), -score))
    table = pd.DataFrame(
        {"score": score[order], "given_label": labels[order], "suggested_label": by_code[suggested[order]]},
        index=pd.Index(order, name="item"),
    )
    table.attrs.update(k=int(res.retrieved_ids.shape[1]), distance=res.distance)
    return table


def _scores(nb: np.ndarray, dist: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score (N,), suggested label code (N,)) from neighbour ids / distances (N, k), -1 / inf padded."""
    n, k = nb.shape
    valid = nb >= 0
    nb_label = np.where(valid, y[np.where(valid, nb, 0)], -1)
    d = np.where(valid, dist, 0.0).astype(np.float64)
    d_k = d.max(axis=1, initial=0.0)
    scale = np.where(d_k > 0, d_k, 1.0)
    w = np.where(valid, np.exp(-(d / scale[:, None]) ** 2), 0.0)

    # p_i(c): weighted votes summed per (row, label) over the labels present in the row (sparse)
    n_codes = int(y.max()) + 1
    rows = np.repeat(np.arange(n, dtype=np.int64), k)[valid.ravel()]
    key = rows * n_codes + nb_label.ravel()[valid.ravel()]
    ukey, inverse = np.unique(key, return_inverse=True)
    votes = np.bincount(inverse, weights=w.ravel()[valid.ravel()], minlength=len(ukey))
    u_row, u_label = ukey // n_codes, ukey % n_codes
    row_total = np.bincount(u_row, weights=votes, minlength=n)
    p = votes / np.where(row_total[u_row] > 0, row_total[u_row], 1.0)
    own = u_label == y[u_row]
    p_own = np.zeros(n)
    p_own[u_row[own]] = p[own]

    # class calibration: each class's votes relative to its mean self-agreement
    counts = np.bincount(y, minlength=n_codes)
    t = np.bincount(y, weights=p_own, minlength=n_codes) / np.maximum(counts, 1)
    t = np.maximum(t, 1.0 / k)
    q = p / t[u_label]
    q_total = np.bincount(u_row, weights=q, minlength=n)
    q = q / np.where(q_total[u_row] > 0, q_total[u_row], 1.0)
    q_own = np.zeros(n)
    q_own[u_row[own]] = q[own]
    q_other = np.zeros(n)
    np.maximum.at(q_other, u_row[~own], q[~own])

    # suggested: the label of highest q (ties: the smaller code), the given one when nothing else
    best = np.lexsort((u_label, -q, u_row))  # by row, then q desc, then label
    first = np.ones(len(best), dtype=bool)
    first[1:] = u_row[best][1:] != u_row[best][:-1]
    top = np.full(n, -1, dtype=np.int64)
    top[u_row[best][first]] = u_label[best][first]
    suggested = np.where((q_own >= q_other) | (top < 0), y, top)

    vote_part = (1.0 - q_own + q_other) / 2.0
    same = valid & (nb_label == y[:, None])
    other = valid & ~same
    far = _BEYOND * d_k
    d_same = np.where(same.any(1), np.where(same, d, np.inf).min(1), far)
    d_other = np.where(other.any(1), np.where(other, d, np.inf).min(1), far)
    total = d_same + d_other
    margin = np.where(total > 0, d_same / np.where(total > 0, total, 1.0), 0.5)
    score = VOTE_WEIGHT * vote_part + (1.0 - VOTE_WEIGHT) * margin
    score = np.where(valid.any(1), score, 0.0)  # no neighbour at all: nothing to say
    return np.clip(score, 0.0, 1.0).astype(np.float64), suggested


def knn_vote_scores(res: RetrievalResult) -> np.ndarray:
    """Baseline: the share of an item's k neighbours whose label differs from its own (N,)."""
    codes = np.asarray(res._label_codes)
    nb = res.retrieved_ids
    valid = nb >= 0
    differ = valid & (codes[np.where(valid, nb, 0)] != codes[:, None])
    return differ.sum(1) / np.maximum(valid.sum(1), 1)
