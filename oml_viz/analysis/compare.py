"""Model A against model B, query by query: ``compare`` and the :class:`Comparison` it returns.

Both results must describe the same items (same N, labels, queries, gallery and sequence ids);
their ``top_n`` and ``distance`` may differ. A per-query difference is b's value minus a's, so
a positive delta is an improvement of b over a for every metric (higher is better for all).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> labels = [0, 0, 0, 1, 1, 1]
    >>> a = ov.retrieve(np.array([[0.], [3.], [6.], [1.], [4.], [7.]]), labels, top_n=2)
    >>> b = ov.retrieve(np.array([[0.], [.1], [.2], [5.], [5.1], [5.2]]), labels, top_n=2)
    >>> cmp = compare(a, b, names=("old", "new"))
    >>> cmp.per_query("cmc/1").tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> t = cmp.table(metrics=("cmc/1",), n_boot=200)
    >>> t.loc["OVERALL", ["cmc/1/old", "cmc/1/new", "cmc/1/delta"]].tolist()
    [0.0, 1.0, 1.0]
    >>> cmp.changed("cmc/1", kind="improved", n=3).tolist()
    [0, 1, 2]
"""
from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from oml_viz.checks import check_int
from oml_viz.engine import OVERALL, RetrievalResult
from oml_viz.engine.metrics import parse_metric

from .paired import paired_bootstrap, sign_flip_pvalue

__all__ = ["KINDS", "Comparison", "compare"]

KINDS = ("regressed", "improved", "changed")
STAT_COLUMNS = ("delta", "ci_low", "ci_high", "p_value")
_SHOWN = 5


def _first_rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return f"rows {rows[:_SHOWN].tolist()}{more}"


def _differs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise x != y for any values (numbers, text, tuples), as a bool array."""
    if x.dtype != object and y.dtype != object:
        try:
            out = np.asarray(x != y)
            if out.shape == x.shape:
                return out
        except (TypeError, ValueError):
            pass
    return np.array([not (u == v or (u != u and v != v)) for u, v in zip(x.tolist(), y.tolist())], dtype=bool)


def _check_same_items(a: RetrievalResult, b: RetrievalResult, names: tuple[str, str]) -> None:
    what = f"results {names[0]!r} and {names[1]!r}"
    if a.n_items != b.n_items:
        raise ValueError(f"{what} are over different items: {a.n_items} vs {b.n_items} items")
    for field in ("labels", "is_query", "is_gallery"):
        bad = _differs(np.asarray(getattr(a, field)), np.asarray(getattr(b, field)))
        if bad.any():
            raise ValueError(f"{what} are over different items: {field} differs in {_first_rows(bad)}")
    # sequence ids: the same grouping of items (codes are factorised in order of first appearance)
    bad = np.asarray(a._seq_codes) != np.asarray(b._seq_codes)
    if bad.any():
        raise ValueError(f"{what} are over different items: sequence_ids group the items differently "
                         f"(first at {_first_rows(bad)})")


class Comparison:
    """Result ``a`` (e.g. the baseline) against result ``b`` over the same items. Make it with
    :func:`compare`; it reads both results and never changes them.

    Attributes: ``a``, ``b``, ``names`` (two distinct strings), ``query_ids`` (Q,) and
    ``categories`` (one per item, or None).
    """

    def __init__(self, a: RetrievalResult, b: RetrievalResult, names: tuple[str, str],
                 categories: np.ndarray | None):
        self.a, self.b, self.names, self.categories = a, b, names, categories
        self._values: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def query_ids(self) -> np.ndarray:
        return self.a.query_ids.copy()

    # ---------------------------------------------------------------- per query
    def _check_metric(self, metric: str) -> str:
        if not isinstance(metric, str):
            raise ValueError(f"metric must be a name like 'map/5'; got {metric!r}")
        kind, k = parse_metric(metric)
        for name, res in zip(self.names, (self.a, self.b)):
            if k > res.top_n:
                raise ValueError(f"metric {metric!r} asks for k={k} above the top_n={res.top_n} of result "
                                 f"{name!r}: retrieve it again with top_n >= {k}")
        return f"{kind}/{k}"

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(a's, b's) per-query values of ``metric``, each (Q,), NaN for queries without ground truth."""
        key = self._check_metric(metric)
        if key not in self._values:
            self._values[key] = (self.a.per_query(key), self.b.per_query(key))
        va, vb = self._values[key]
        return va.copy(), vb.copy()

    def per_query(self, metric: str) -> np.ndarray:
        """(Q,) b's value minus a's for ``metric`` (``"cmc/K"``, ``"precision/K"``, ``"map/K"``);
        NaN for queries without ground truth."""
        va, vb = self.values(metric)
        return vb - va

    def _category_mask(self, category: Hashable | None, categories: Sequence[Hashable] | None) -> np.ndarray:
        keep = np.ones(len(self.a.query_ids), dtype=bool)
        if category is None:
            return keep
        cats = self._item_categories(categories)
        if cats is None:
            raise ValueError("category: this comparison has no categories; pass categories= (one per item)")
        query_cats = cats[self.a.query_ids]
        inside = np.array([c == category for c in query_cats.tolist()], dtype=bool)
        if not inside.any():
            known = sorted({str(c) for c in query_cats})
            raise ValueError(f"category {category!r} has no queries; categories are {known}")
        return inside

    def changed(
        self,
        metric: str = "map/5",
        kind: Literal["regressed", "improved", "changed"] = "regressed",
        n: int | None = 10,
        category: Hashable | None = None,
        *,
        categories: Sequence[Hashable] | None = None,
    ) -> np.ndarray:
        """Item ids of up to ``n`` queries (all when None) whose ``metric`` changed, largest change
        first, ties by id.

        ``kind``: ``"regressed"`` (b below a), ``"improved"`` (b above a) or ``"changed"`` (either,
        by absolute change). Queries without ground truth never appear. ``category`` keeps one
        category's queries.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}; got {kind!r}")
        if n is not None:
            n = check_int("n", n, low=0, hint=" (or None for all)")
        delta = self.per_query(metric)
        keep = self._category_mask(category, categories) & ~np.isnan(delta)
        size = {"regressed": -delta, "improved": delta, "changed": np.abs(delta)}[kind]
        keep &= np.nan_to_num(size) > 0
        rows = np.flatnonzero(keep)
        order = np.lexsort((self.a.query_ids[rows], -size[rows]))
        ids = self.a.query_ids[rows[order]]
        return ids if n is None else ids[: int(n)]

    # ---------------------------------------------------------------- aggregated
    def _item_categories(self, categories: Sequence[Hashable] | None) -> np.ndarray | None:
        if categories is None:
            return self.categories
        cats = np.empty(self.a.n_items, dtype=object)
        values = list(categories)
        if len(values) != self.a.n_items:
            raise ValueError(f"categories has {len(values)} values but the results have {self.a.n_items} items")
        cats[:] = values
        return cats

    def table(
        self,
        metrics: str | Sequence[str] = ("cmc/1", "map/5"),
        categories: Sequence[Hashable] | None = None,
        n_boot: int = 1000,
        seed: int = 0,
        *,
        n_perm: int | None = None,
        level: float = 0.95,
    ) -> pd.DataFrame:
        """Both models' means, their difference, its ``level`` interval and p-value per group.

        Index ``"OVERALL"`` then each category (sorted; from ``categories=``, one per item, else the
        comparison's). For each metric m the columns ``f"{m}/{name_a}"``, ``f"{m}/{name_b}"``,
        ``f"{m}/delta"`` (b minus a), ``f"{m}/ci_low"``, ``f"{m}/ci_high"`` (paired bootstrap over
        the group's queries, ``n_boot`` >= 100 resamples) and ``f"{m}/p_value"`` (paired sign-flip
        test, ``n_perm`` patterns, default ``n_boot``). Queries without ground truth are left out,
        as in ``metrics()``; a group with no valid query is NaN. Deterministic for a ``seed``.
        """
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if not metrics:
            raise ValueError("metrics: give at least one metric, e.g. ('cmc/1', 'map/5')")
        keys = [self._check_metric(m) for m in metrics]
        for name, value, low in (("n_boot", n_boot, 100), ("n_perm", n_perm, 100)):
            if value is None:
                continue
            check_int(name, value, low=low, hint=" (resamples for a stable 95% interval)")
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1); got {level!r}")
        cats = self._item_categories(categories)
        groups, names = _query_groups(self.a, cats)

        va = np.stack([self.values(k)[0] for k in keys], axis=1)
        vb = np.stack([self.values(k)[1] for k in keys], axis=1)
        valid = ~np.isnan(va).any(axis=1)  # no ground truth: NaN in every metric, for both models
        missing = int((~valid).sum())
        if missing:
            warnings.warn(f"{missing} of {len(valid)} queries have no ground truth in the gallery; they are "
                          "left out of the comparison", stacklevel=2)
        members = [np.flatnonzero(valid)] + [np.flatnonzero(valid & (groups == g)) for g in range(len(names))]
        diff = vb - va
        boot_seed, perm_seed = np.random.SeedSequence(seed).spawn(2)
        low, high = paired_bootstrap(diff, members, n_boot, boot_seed, level)
        pval = sign_flip_pvalue(diff, members, n_perm if n_perm is not None else n_boot, perm_seed)

        columns: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty group: NaN
            for j, (metric, key) in enumerate(zip(metrics, keys)):
                columns[f"{metric}/{self.names[0]}"] = np.array([va[r, j].mean() for r in members])
                columns[f"{metric}/{self.names[1]}"] = np.array([vb[r, j].mean() for r in members])
                columns[f"{metric}/delta"] = np.array([diff[r, j].mean() for r in members])
                columns[f"{metric}/ci_low"] = low[:, j]
                columns[f"{metric}/ci_high"] = high[:, j]
                columns[f"{metric}/p_value"] = pval[:, j]
        return pd.DataFrame(columns, index=pd.Index([OVERALL, *names], dtype=object))

    def __repr__(self) -> str:
        return (f"Comparison({self.names[0]!r}: {self.a!r}, {self.names[1]!r}: {self.b!r}, "
                f"categories={'yes' if self.categories is not None else 'no'})")


def _query_groups(res: RetrievalResult, cats: np.ndarray | None) -> tuple[np.ndarray, list]:
    """Each query's category index into the sorted category names (the engine's own grouping)."""
    return res._query_groups(cats)


def compare(
    res_a: RetrievalResult,
    res_b: RetrievalResult,
    names: tuple[str, str] = ("a", "b"),
    *,
    categories: Sequence[Hashable] | None = None,
) -> Comparison:
    """Compare two retrieval results over the same items (``res_a`` the reference, e.g. a baseline).

    ``names`` label the two models in tables and figures. ``categories`` (one per item) default to
    the results' own (``retrieve(..., categories=)``); when both have different ones, pass them.

    Raises:
        ValueError: the results are over different items (says what differs, first rows), or the
            names are not two distinct non-empty strings.
    """
    for name, res in (("res_a", res_a), ("res_b", res_b)):
        if not isinstance(res, RetrievalResult):
            raise TypeError(f"{name} must be a RetrievalResult (from ov.retrieve); got {type(res).__name__}")
    names = tuple(names)
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names) or names[0] == names[1]:
        raise ValueError(f"names must be two distinct non-empty strings; got {names!r}")
    if any(n in STAT_COLUMNS for n in names):
        raise ValueError(f"names must not be one of {list(STAT_COLUMNS)} (they name table columns); got {names!r}")
    _check_same_items(res_a, res_b, names)  # type: ignore[arg-type]
    if categories is not None:
        cats = np.empty(res_a.n_items, dtype=object)
        values = list(categories)
        if len(values) != res_a.n_items:
            raise ValueError(f"categories has {len(values)} values but the results have {res_a.n_items} items")
        cats[:] = values
    else:
        ca, cb = res_a.categories, res_b.categories
        if ca is not None and cb is not None:
            bad = _differs(np.asarray(ca, dtype=object), np.asarray(cb, dtype=object))
            if bad.any():
                raise ValueError(f"the results have different categories ({_first_rows(bad)}): pass categories=")
        cats = ca if ca is not None else cb
        if cats is not None:
            cats = np.asarray(cats, dtype=object)
    return Comparison(res_a, res_b, names, cats)  # type: ignore[arg-type]
