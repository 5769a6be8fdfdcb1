"""``RetrievalResult``: the one object every display, panel and logger reads."""
from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.checks import check_int

from . import confusions as C
from . import metrics as M
from .fnmr import fnmr_at_fmr
from .search import exact_distances
from .validation import _length

OVERALL = "OVERALL"


@dataclass(eq=False)
class RetrievalResult:
    """Top-k retrieval of every query, plus what is needed to compute metrics from it.

    Arrays (Q = number of queries, k = min(top_n, gallery size)):

    - ``query_ids`` (Q,) int64, ascending item indices;
    - ``retrieved_ids`` (Q, k) int64 and ``distances`` (Q, k) float32, nearest first, ties by the
      smaller item id, padded with -1 / inf;
    - ``is_relevant`` (Q, k) bool and ``n_gt`` (Q,) int64 (relevant gallery items after exclusions).

    Build it with :func:`oml_viz.retrieve`.
    """

    query_ids: np.ndarray
    retrieved_ids: np.ndarray
    distances: np.ndarray
    is_relevant: np.ndarray
    n_gt: np.ndarray
    top_n: int
    distance: str
    labels: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    categories: np.ndarray | None = None
    # private: what the lazy metrics need
    _vectors: torch.Tensor = field(default=None, repr=False)  # unit rows for cosine
    _raw: torch.Tensor = field(default=None, repr=False)  # embeddings as given (float32)
    _label_codes: np.ndarray = field(default=None, repr=False)
    _seq_codes: np.ndarray = field(default=None, repr=False)
    _device: torch.device = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- basic facts
    @property
    def n_items(self) -> int:
        return len(self.labels)

    @property
    def gallery_ids(self) -> np.ndarray:
        return np.flatnonzero(self.is_gallery)

    @property
    def embeddings(self) -> np.ndarray:
        """The embeddings retrieval ran on (float32 copy, read-only)."""
        array = self._raw.numpy()
        array.flags.writeable = False
        return array

    def _row_of(self, query_id: int) -> int:
        row = int(np.searchsorted(self.query_ids, query_id))
        if row >= len(self.query_ids) or self.query_ids[row] != query_id:
            raise ValueError(f"query_id {query_id} is not a query (is_query is False for it)")
        return row

    # ---------------------------------------------------------------- per query
    def per_query(self, metric: str) -> np.ndarray:
        """(Q,) values of ``"cmc/K"``, ``"precision/K"`` or ``"map/K"``; NaN for queries without GT."""
        kind, k = M.parse_metric(metric)
        self._check_k(f"metric {metric!r}", k)
        key = f"{kind}/{k}"
        if key not in self._cache:
            self._cache[key] = M.per_query(key, self.is_relevant, self.n_gt)
        return self._cache[key].copy()

    def worst_queries(
        self,
        metric: str = "map/5",
        n: int = 10,
        category: Hashable | None = None,
        *,
        categories: Sequence[Hashable] | None = None,
    ) -> np.ndarray:
        """Item ids of the n queries with the lowest ``metric``, worst first, ties by id.

        Queries without ground truth are never among them. ``category`` keeps the queries of one
        category (``categories`` per item, else those given to ``retrieve``).
        """
        n = check_int("n", n, low=0)
        values = self.per_query(metric)
        keep = ~np.isnan(values)
        if category is not None:
            cats = self._categories(categories, required_for="worst_queries(category=...)")
            query_cats = cats[self.query_ids]
            if not (query_cats == category).any():
                known = sorted(pd.unique(query_cats).tolist(), key=str)
                raise ValueError(f"category {category!r} has no queries; categories are {known}")
            keep &= query_cats == category
        rows = np.flatnonzero(keep)
        order = np.lexsort((self.query_ids[rows], values[rows]))
        return self.query_ids[rows[order[: max(int(n), 0)]]]

    def gt_ids(self, query_id: int, return_distances: bool = False) -> Any:
        """Relevant gallery ids of one query, nearest first (ties by id).

        With ``return_distances`` also their distances: ``(ids, distances)``.
        """
        row = self._row_of(int(query_id))
        codes = self._label_codes
        candidates = np.flatnonzero(
            self.is_gallery
            & (codes == codes[query_id])
            & (self._seq_codes != self._seq_codes[query_id])
        )
        if len(candidates) != self.n_gt[row]:  # an invariant of retrieve(), not an input check
            raise RuntimeError(f"gt_ids: {len(candidates)} relevant items for query {query_id}, but n_gt says "
                               f"{self.n_gt[row]}; the result was changed after retrieve()")
        query = self._vectors[int(query_id)].unsqueeze(0)
        dist = exact_distances(query, self._vectors[torch.as_tensor(candidates)].unsqueeze(0), self.distance)
        dist = dist[0].numpy().astype(np.float32)
        order = np.lexsort((candidates, dist))
        ids = candidates[order].astype(np.int64)
        return (ids, dist[order]) if return_distances else ids

    # ---------------------------------------------------------------- aggregated
    def metrics(
        self,
        cmc_top_k: Sequence[int] = (1, 5),
        precision_top_k: Sequence[int] = (5,),
        map_top_k: Sequence[int] = (5,),
        fmr_vals: Sequence[float] = (),
        pcf_variance: Sequence[float] = (),
        categories: Sequence[Hashable] | None = None,
    ) -> pd.DataFrame:
        """Metrics table: index ``OVERALL`` then each category (sorted); flat log key ``index/column``.

        ``categories`` (one per item) are used for this table only (default: those given to
        ``retrieve``); the result is never changed. Queries without
        ground truth are left out of every mean, with one warning giving their count.
        """
        for name, ks in (("cmc_top_k", cmc_top_k), ("precision_top_k", precision_top_k), ("map_top_k", map_top_k),
                         ("fmr_vals", fmr_vals), ("pcf_variance", pcf_variance)):
            if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
                raise TypeError(f"{name} must be a sequence, e.g. {name}=(1, 5); got {type(ks).__name__} {ks!r}")
        for name, ks in (("cmc_top_k", cmc_top_k), ("precision_top_k", precision_top_k), ("map_top_k", map_top_k)):
            for k in ks:
                self._check_k(f"{name}={tuple(ks)}", check_int(f"every {name} value", k, low=1))
        for name, vals, upper_ok in (("fmr_vals", fmr_vals, False), ("pcf_variance", pcf_variance, True)):
            for v in vals:
                if not isinstance(v, (int, float, np.floating, np.integer)) or not (0 < v < 1 or (upper_ok and v == 1)):
                    bound = "(0, 1]" if upper_ok else "(0, 1)"
                    raise ValueError(f"{name} values must lie in {bound}; got {v!r}")
        # a value: categories given here are used for this table only, never stored on the result
        cats = self.categories if categories is None else _length("categories", categories, self.n_items)
        groups, names = self._query_groups(cats)

        missing = int((self.n_gt == 0).sum())
        if missing:
            warnings.warn(
                f"{missing} of {len(self.n_gt)} queries have no ground truth in the gallery; "
                "they are left out of the metric means (NaN in per_query)",
                stacklevel=2,
            )

        columns: dict[str, np.ndarray] = {}
        for kind, ks in (("cmc", cmc_top_k), ("precision", precision_top_k), ("map", map_top_k)):
            for k in ks:
                columns[f"{kind}/{int(k)}"] = _group_means(self.per_query(f"{kind}/{int(k)}"), groups, len(names))
        if len(fmr_vals):
            table = fnmr_at_fmr(
                self._vectors, self.query_ids, self.gallery_ids, self._label_codes, self._seq_codes,
                groups, max(len(names), 1), [float(v) for v in fmr_vals], self.distance, self._device,
            )[: 1 + len(names)]
            for i, v in enumerate(fmr_vals):
                columns[f"fnmr@fmr/{float(v)}"] = table[:, i]
        if len(pcf_variance):
            per_group = [M.pcf(self._raw, pcf_variance)]
            for name in names:
                per_group.append(M.pcf(self._raw[torch.as_tensor(cats == name)], pcf_variance))
            for i, v in enumerate(pcf_variance):
                columns[f"pcf/{float(v)}"] = np.array([row[i] for row in per_group])
        return pd.DataFrame(columns, index=pd.Index([OVERALL, *names], dtype=object))

    # ---------------------------------------------------------------- confusions
    def confusions(self, k: int = 5, categories: Sequence[Hashable] | None = None) -> pd.DataFrame:
        """Confused label pairs within the first k results: ``query_label, retrieved_label, count,
        queries, share``, count desc, ties by labels (see :mod:`oml_viz.engine.confusions`)."""
        return C.confusion_table(self, k, categories)

    def confused_queries(self, a: Hashable, b: Hashable, k: int = 5) -> np.ndarray:
        """Item ids of the label-``a`` queries with a label-``b`` result in their first k, worst first."""
        return C.confused_queries(self, a, b, k)

    # ---------------------------------------------------------------- helpers
    def _check_k(self, what: str, k: int) -> None:
        if k > self.top_n:
            raise ValueError(f"{what} asks for k={k} above top_n={self.top_n}: call retrieve(..., top_n={k})")

    def _categories(self, categories: Sequence[Hashable] | None, required_for: str) -> np.ndarray:
        if categories is not None:
            return _length("categories", categories, self.n_items)
        if self.categories is None:
            raise ValueError(f"{required_for} needs categories: pass categories= (one per item)")
        return self.categories

    def _query_groups(self, cats: np.ndarray | None) -> tuple[np.ndarray, list]:
        """Each query's category index (into the sorted category names)."""
        if cats is None:
            return np.zeros(len(self.query_ids), dtype=np.int64), []
        query_cats = pd.Series(cats[self.query_ids], dtype=object)
        if query_cats.isna().any():
            rows = self.query_ids[query_cats.isna().to_numpy()][:5].tolist()
            raise ValueError(f"categories has missing values for query rows {rows}")
        names = sorted(pd.unique(query_cats).tolist(), key=lambda v: (str(type(v)), v))
        lookup = {name: i for i, name in enumerate(names)}
        return np.array(query_cats.map(lookup), dtype=np.int64), names

    def __repr__(self) -> str:
        return (
            f"RetrievalResult(queries={len(self.query_ids)}, gallery={int(self.is_gallery.sum())}, "
            f"k={self.retrieved_ids.shape[1]}, distance={self.distance!r})"
        )


def _group_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """[mean over all queries, mean per group], ignoring NaN (queries without GT)."""
    ok = ~np.isnan(values)
    overall = values[ok].mean() if ok.any() else np.nan
    if n_groups == 0:
        return np.array([overall])
    sums = np.bincount(groups[ok], weights=values[ok], minlength=n_groups)
    counts = np.bincount(groups[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = sums / counts
    return np.concatenate([[overall], per_group])
