"""Which labels a model mixes up: counts of (query label, retrieved label) among wrong results.

Every non-relevant result within the first k of a query of label a, whose label is b, counts once
for (a, b). ``queries`` is the number of label-a queries with at least one b in their first k and
``share`` that number over all label-a queries. Queries without ground truth are left out (as in
``metrics()``): every result of theirs is wrong for want of a right one, which says nothing about
what the model confuses. Labels keep their original values and types.

The functions read a ``RetrievalResult`` (``res.confusions()`` and ``res.confused_queries()``
call them) and never change it.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> emb = np.array([[0.0], [0.1], [0.15], [1.0], [1.1]], dtype=np.float32)
    >>> res = ov.retrieve(emb, ["cat", "cat", "dog", "dog", "fox"], top_n=2)
    >>> res.confusions(k=1)[["query_label", "retrieved_label", "count", "queries", "share"]].values.tolist()
    [['cat', 'dog', 1, 1, 0.5], ['dog', 'cat', 1, 1, 0.5], ['dog', 'fox', 1, 1, 0.5]]
    >>> res.confused_queries("cat", "dog", k=1).tolist()
    [1]
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .validation import _length, check_positive_int

__all__ = ["COLUMNS", "confused_queries", "confusion_table", "label_order"]

COLUMNS = ("query_label", "retrieved_label", "count", "queries", "share")


def label_order(values: Sequence[Hashable]) -> np.ndarray:
    """Rank of each value in a stable sort of mixed-type labels (by type name, then value)."""
    values = list(values)
    try:
        order = sorted(range(len(values)), key=lambda i: (type(values[i]).__name__, values[i]))
    except TypeError:  # values of one type that do not compare (e.g. tuples of mixed types)
        order = sorted(range(len(values)), key=lambda i: (type(values[i]).__name__, repr(values[i])))
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank


def _k(res: Any, k: int) -> int:
    k = check_positive_int("k", k)
    res._check_k("confusions k", k)
    return min(k, res.retrieved_ids.shape[1])


def _wrong_results(res: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, rank, query label code, result label code) of every wrong result in the first k of the
    queries with ground truth."""
    ids = res.retrieved_ids[:, :k]
    wrong = (ids >= 0) & ~res.is_relevant[:, :k] & (res.n_gt > 0)[:, None]
    rows, ranks = np.nonzero(wrong)
    codes = res._label_codes
    return rows, ranks, codes[res.query_ids[rows]], codes[ids[rows, ranks]]


def _label_values(res: Any) -> tuple[np.ndarray, np.ndarray]:
    """(first item of each label code, that label's value): the codes' original values."""
    codes = res._label_codes
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write per code is its first item
    return first, res.labels[first]


def confusion_table(res: Any, k: int = 5, categories: Sequence[Hashable] | None = None) -> pd.DataFrame:
    """The confused label pairs of ``res`` within the first ``k`` results (see the module docstring).

    Columns ``query_label, retrieved_label, count, queries, share``, sorted by count (largest
    first), ties by the labels. With ``categories`` (one per item) the counts are per query
    category, in a first column ``category`` (ties by category before the labels).
    """
    k = _k(res, k)
    n_codes = int(res._label_codes.max()) + 1
    rows, _, a, b = _wrong_results(res, k)
    valid = res.n_gt > 0
    query_codes = res._label_codes[res.query_ids]
    if categories is None:
        group_of_row = np.zeros(len(res.query_ids), dtype=np.int64)
        cat_names: list = [None]
    else:
        cats = _length("categories", categories, res.n_items)
        group_of_row, cat_names = res._query_groups(cats)
    n_groups = len(cat_names)
    # one int per (group, a, b) and per (group, a)
    pair = (group_of_row[rows] * n_codes + a) * n_codes + b
    keys, counts = np.unique(pair, return_counts=True)
    # queries: each (query row, pair) once; rows come sorted, so sort the pairs within each row
    order = np.lexsort((pair, rows))
    sorted_rows, sorted_pair = rows[order], pair[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sorted_rows[1:] != sorted_rows[:-1]) | (sorted_pair[1:] != sorted_pair[:-1])
    _, n_queries = np.unique(sorted_pair[new], return_counts=True)
    label_queries = np.bincount(group_of_row[valid] * n_codes + query_codes[valid], minlength=n_groups * n_codes)
    g, rest = np.divmod(keys, n_codes * n_codes)
    qa, qb = np.divmod(rest, n_codes)
    share = n_queries / label_queries[g * n_codes + qa]

    first, values = _label_values(res)
    rank = label_order(values.tolist())
    cat_rank = np.arange(n_groups)
    order = np.lexsort((rank[qb], rank[qa], cat_rank[g], -counts))
    columns: dict[str, Any] = {}
    if categories is not None:
        cat_values = np.empty(len(order), dtype=object)
        cat_values[:] = [cat_names[i] for i in g[order]]
        columns["category"] = cat_values
    columns["query_label"] = res.labels[first[qa[order]]]
    columns["retrieved_label"] = res.labels[first[qb[order]]]
    columns["count"] = counts[order].astype(np.int64)
    columns["queries"] = n_queries[order].astype(np.int64)
    columns["share"] = share[order].astype(np.float64)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(order)))


def _code_of(res: Any, label: Hashable, name: str) -> int:
    _, values = _label_values(res)
    for code, value in enumerate(values.tolist()):
        try:
            if bool(value == label):
                return code
        except (TypeError, ValueError):  # e.g. an array-valued comparison
            continue
    shown = ", ".join(repr(v) for v in values.tolist()[:10])
    raise ValueError(f"{name}: {label!r} is not a label of this result (labels: {shown}"
                     f"{', ...' if len(values) > 10 else ''})")


def confused_queries(res: Any, a: Hashable, b: Hashable, k: int = 5) -> np.ndarray:
    """Item ids of the queries of label ``a`` with a result of label ``b`` in their first ``k``.

    Worst first: most results of label b in the first k, then the earliest rank of one, then
    the query id. Queries without ground truth are left out (as in :func:`confusion_table`).
    """
    k = _k(res, k)
    code_a, code_b = _code_of(res, a, "a"), _code_of(res, b, "b")
    if code_a == code_b:
        raise ValueError(f"a and b are the same label {a!r}: results of the query's own label are relevant, "
                         "not confused")
    rows, ranks, qa, qb = _wrong_results(res, k)
    hit = (qa == code_a) & (qb == code_b)
    rows, ranks = rows[hit], ranks[hit]
    n_rows = len(res.query_ids)
    count = np.bincount(rows, minlength=n_rows)
    first_rank = np.full(n_rows, k, dtype=np.int64)
    np.minimum.at(first_rank, rows, ranks)
    found = np.flatnonzero(count > 0)
    order = np.lexsort((res.query_ids[found], first_rank[found], -count[found]))
    return res.query_ids[found[order]].astype(np.int64)
