"""``EmbeddingMetrics``: OML 4.0's validation-loop class, computed by the shared engine.

Same constructor arguments, methods and return shapes as ``oml.metrics.EmbeddingMetrics``:
``setup`` / ``update(embeddings, indices)`` per batch / ``compute_metrics()`` returning OML's
nested dict ``{"OVERALL": {"cmc": {1: tensor(...)}, ...}, <category>: {...}}``, the worst-query
helpers and ``visualize()``. Retrieval and every number come from :func:`oml_viz.retrieve` and
:meth:`RetrievalResult.metrics`; ``.result`` is that ``RetrievalResult``, so every panel takes it.

Differences from OML 4.0, on purpose:

- a query without ground truth is left out of the means (OML counts it as cmc 0 / map 0 and
  makes precision NaN for the whole set); the engine warns with their count;
- ties in distance are broken by the smaller item id (OML leaves their order undefined);
- ``get_worst_queries_ids`` of a category's metric returns positions among all queries (OML
  returns positions inside that category, which its own plotting then reads as positions
  among all queries);
- ``postprocessor`` (OML's re-rankers work on OML's own result class) is not supported.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pprint import pprint
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.errors import InputTypeError, InputValueError

from oml_viz.engine.result import OVERALL

__all__ = ["EmbeddingMetrics"]

N_ROWS = 5  # OML's LOG_TOPK_ROWS_PER_METRIC
N_INSTANCES = 5  # OML's LOG_TOPK_IMAGES_PER_ROW
N_GT = 2  # OML's N_GT_SHOW_EMBEDDING_METRICS
_PER_QUERY = ("cmc", "precision", "map")
_EMBEDDINGS_KEY = "embeddings"  # OML's EMBEDDINGS_KEY, read by update_data


class EmbeddingMetrics:
    """Accumulate per-batch embeddings, then compute OML's metrics with the shared engine.

    Args:
        dataset: the validation items: an OML dataframe (``label``, ``is_query``,
            ``is_gallery``; optional ``category``, ``sequence``, ``path`` and bbox columns for
            figures) or an OML dataset (``get_labels()``, ``get_query_ids()``,
            ``get_gallery_ids()``, ``extra_data``; its ``.df`` for figures).
        cmc_top_k, precision_top_k, map_top_k, fmr_vals, pcf_variance: as in OML.
        postprocessor: must be ``None`` (see the module notes).
        metrics_to_exclude_from_visualization: metric names ``visualize`` skips (``fnmr@fmr`` and
            ``pcf`` always are).
        return_only_overall_category: ``compute_metrics`` returns only ``"OVERALL"``.
        visualize_only_overall_category: ``visualize`` draws only ``"OVERALL"`` metrics.
        verbose: print the metrics (as OML) and show progress.
        distance: ``"euclidean"`` (OML's) or ``"cosine"``.
        device: the engine's device (``None``: CUDA when available).
        dataset_root: root of relative ``path`` values for figures (default: the dataframe's
            ``attrs["dataset_root"]``).

    Example:
        >>> import numpy as np, pandas as pd
        >>> df = pd.DataFrame({"label": [0, 0, 1, 1], "is_query": [True] * 4, "is_gallery": [True] * 4})
        >>> calc = EmbeddingMetrics(df, cmc_top_k=(1,), precision_top_k=(), map_top_k=(1,),
        ...                         pcf_variance=(), verbose=False)
        >>> calc.setup()
        >>> calc.update(np.array([[1.2], [0.0]], "float32"), [3, 0])   # any order, any sizes
        >>> calc.update(np.array([[0.1], [1.0]], "float32"), [1, 2])
        >>> metrics = calc.compute_metrics()
        >>> {k: float(v) for k, v in metrics["OVERALL"]["cmc"].items()}
        {1: 1.0}
        >>> calc.get_worst_queries_ids("OVERALL/map/1", n_queries=2)
        [0, 1]
    """

    metric_name = ""

    def __init__(
        self,
        dataset: Any,
        cmc_top_k: tuple[int, ...] = (5,),
        precision_top_k: tuple[int, ...] = (5,),
        map_top_k: tuple[int, ...] = (5,),
        fmr_vals: tuple[float, ...] = tuple(),
        pcf_variance: tuple[float, ...] = (0.5,),
        postprocessor: Any = None,
        metrics_to_exclude_from_visualization: Iterable[str] = (),
        return_only_overall_category: bool = False,
        visualize_only_overall_category: bool = True,
        verbose: bool = True,
        *,
        distance: str = "euclidean",
        device: str | torch.device | None = None,
        dataset_root: str | None = None,
    ) -> None:
        if postprocessor is not None:
            raise InputValueError("postprocessor: OML's re-rankers work on OML's own RetrievalResults and are "
                             "not supported here; pass postprocessor=None")
        self.dataset = dataset
        self._items = _items_of(dataset)
        self.cmc_top_k = tuple(cmc_top_k)
        self.precision_top_k = tuple(precision_top_k)
        self.map_top_k = tuple(map_top_k)
        self.fmr_vals = tuple(fmr_vals)
        self.pcf_variance = tuple(pcf_variance)
        self.postprocessor = None
        self.metrics_to_exclude_from_visualization = ["fnmr@fmr", "pcf", *metrics_to_exclude_from_visualization]
        self.return_only_overall_category = bool(return_only_overall_category)
        self.visualize_only_overall_category = bool(visualize_only_overall_category)
        self.verbose = bool(verbose)
        self.distance = distance
        self.device = device
        self.dataset_root = dataset_root
        self.metrics: dict[Any, Any] | None = None
        self.metrics_unreduced: dict[Any, Any] | None = None
        self._result: Any = None
        self._storage: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self._num_samples: int | None = None

    # ------------------------------------------------------------------ accumulation
    def setup(self, num_samples: int | None = None) -> None:
        """Start a new epoch: forget the stored embeddings, results and metrics."""
        n = len(self._items["labels"]) if num_samples is None else int(num_samples)
        if n != len(self._items["labels"]):
            raise InputValueError(f"num_samples={n} but the dataset has {len(self._items['labels'])} items")
        self._num_samples = n
        self._storage = None
        self._counts = np.zeros(n, dtype=np.int64)
        self.metrics = self.metrics_unreduced = None
        self._result = None

    def update(self, embeddings: Any, indices: Any) -> None:
        """Store one batch: ``embeddings`` (B, D) of the items at dataset positions ``indices`` (B,)."""
        if self._counts is None:
            raise RuntimeError("call setup() before update()")
        emb = embeddings.detach().cpu().float().numpy() if torch.is_tensor(embeddings) else \
            np.asarray(embeddings, dtype=np.float32)
        idx = indices.detach().cpu().numpy() if torch.is_tensor(indices) else np.asarray(indices)
        idx = idx.reshape(-1)
        if emb.ndim != 2:
            raise InputValueError(f"embeddings must be 2-D (batch, dim), got shape {emb.shape}")
        if len(idx) != len(emb):
            raise InputValueError(f"indices has {len(idx)} entries but embeddings has {len(emb)} rows")
        if not len(idx):
            return  # an empty batch
        if not np.issubdtype(idx.dtype, np.integer):
            raise InputTypeError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        n = self._num_samples
        bad = idx[(idx < 0) | (idx >= n)]
        if len(bad):
            raise InputValueError(f"indices must lie in [0, {n - 1}] (dataset positions); got {bad[:5].tolist()}")
        if self._storage is None:
            self._storage = np.zeros((n, emb.shape[1]), dtype=np.float32)
        elif emb.shape[1] != self._storage.shape[1]:
            raise InputValueError(f"embeddings have dimension {emb.shape[1]}, earlier batches had "
                             f"{self._storage.shape[1]}")
        self._storage[idx] = emb
        np.add.at(self._counts, idx, 1)

    def update_data(self, data: dict[str, Any], indices: Any) -> None:
        """OML's dict form: ``data["embeddings"]``."""
        self.update(embeddings=data[_EMBEDDINGS_KEY], indices=indices)

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self) -> dict[Any, Any]:
        """OML's nested metrics dict (0-d float tensors), after checking every item came once."""
        self._check_complete()
        import oml_viz as ov

        items = self._items
        ks = [*self.cmc_top_k, *self.precision_top_k, *self.map_top_k]
        # at least what visualize() shows, so its figures need no second retrieval
        top_n = max([N_INSTANCES, *[int(k) for k in ks if isinstance(k, (int, np.integer))]])
        self._result = ov.retrieve(
            self._storage, items["labels"], items["is_query"], items["is_gallery"],
            top_n=top_n, distance=self.distance, sequence_ids=items["sequence"],
            device=self.device, categories=items["categories"], progress=self.verbose or None,
        )
        table = self._result.metrics(
            cmc_top_k=self.cmc_top_k, precision_top_k=self.precision_top_k, map_top_k=self.map_top_k,
            fmr_vals=self.fmr_vals, pcf_variance=self.pcf_variance,
        )
        self.metrics, self.metrics_unreduced = self._nest(table)
        out = {OVERALL: self.metrics[OVERALL]} if self.return_only_overall_category else self.metrics
        out = _copy(out)
        if self.verbose:
            print("\nMetrics:")
            pprint(out)
        return out

    @property
    def result(self) -> Any:
        """The engine's :class:`~oml_viz.RetrievalResult` behind the last ``compute_metrics``."""
        if self._result is None:
            raise RuntimeError("no result yet: call compute_metrics() first")
        return self._result

    def _check_complete(self) -> None:
        if self._counts is None:
            raise RuntimeError("call setup() and update() before compute_metrics()")
        dup = np.flatnonzero(self._counts > 1)
        missing = np.flatnonzero(self._counts == 0)
        problems = []
        if len(dup):
            problems.append(f"{len(dup)} indices came more than once (first: {dup[:5].tolist()})")
        if len(missing):
            problems.append(f"{len(missing)} of {len(self._counts)} indices never came (first: "
                            f"{missing[:5].tolist()})")
        if problems:
            raise InputValueError("compute_metrics needs every dataset item exactly once: "
                             + "; ".join(problems) + ". Call setup() at the start of each epoch.")

    def _nest(self, table: pd.DataFrame) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """Table -> OML's reduced dict and the per-query (unreduced) dict."""
        res = self._result
        groups = {OVERALL: np.ones(len(res.query_ids), dtype=bool)}
        if res.categories is not None:
            query_cats = res.categories[res.query_ids]
            for name in table.index[1:]:
                groups[name] = query_cats == name
        reduced: dict[Any, Any] = {}
        unreduced: dict[Any, Any] = {}
        for name, mask in groups.items():
            red: dict[str, dict] = {}
            unr: dict[str, dict] = {}
            for kind, ks in (("cmc", self.cmc_top_k), ("precision", self.precision_top_k),
                             ("map", self.map_top_k)):
                if ks:
                    red[kind] = {k: _scalar(table.loc[name, f"{kind}/{int(k)}"]) for k in ks}
                    unr[kind] = {k: torch.from_numpy(res.per_query(f"{kind}/{int(k)}")[mask]).float()
                                 for k in ks}
            extra = [("pcf", self.pcf_variance)] + ([("fnmr@fmr", self.fmr_vals)] if name == OVERALL else [])
            for kind, vals in extra:
                if vals:
                    red[kind] = {v: _scalar(table.loc[name, f"{kind}/{float(v)}"]) for v in vals}
                    unr[kind] = dict(red[kind])
            key = name.item() if isinstance(name, np.generic) else name
            reduced[key], unreduced[key] = red, unr
        return reduced, unreduced

    # ------------------------------------------------------------------ worst queries, figures
    def get_worst_queries_ids(self, metric_name: str, n_queries: int) -> list[int]:
        """Positions (0 .. n_query - 1, among all queries) of the ``n_queries`` worst by a
        per-query metric such as ``"OVERALL/map/5"`` or ``"<category>/cmc/1"``; worst first,
        ties by position; queries without ground truth never appear."""
        if self.metrics is None:
            raise RuntimeError("no metrics yet: call compute_metrics() first")
        group, _, metric = str(metric_name).partition("/")
        kind, _, k = metric.partition("/")
        known = _flat_names(self.metrics)
        if metric_name not in known:
            raise InputValueError(f"metric_name {metric_name!r} is not one of the computed metrics: {known}")
        if kind not in _PER_QUERY:
            raise InputValueError(f"metric_name {metric_name!r} has no per-query values; use one of "
                             f"{[m for m in known if m.split('/')[1] in _PER_QUERY]}")
        category = None
        if group != OVERALL:
            category = next(c for c in self.metrics if c != OVERALL and str(c) == group)
        ids = self.result.worst_queries(f"{kind}/{k}", n=int(n_queries), category=category)
        return np.searchsorted(self.result.query_ids, ids).tolist()

    def get_plot_for_worst_queries(self, metric_name: str, n_queries: int, n_instances: int,
                                   verbose: bool = False) -> Any:
        """The figure of the worst queries by ``metric_name`` (see :meth:`get_worst_queries_ids`)."""
        query_ids = self.get_worst_queries_ids(metric_name=metric_name, n_queries=n_queries)
        return self.get_plot_for_queries(query_ids=query_ids, n_instances=n_instances, verbose=verbose)

    def get_plot_for_queries(self, query_ids: Sequence[int], n_instances: int, verbose: bool = True) -> Any:
        """A figure of queries given by position among the queries: query | results | 2 ground truths."""
        import oml_viz as ov

        images = self._images()
        positions = np.asarray(list(query_ids), dtype=np.int64)
        n_q = len(self.result.query_ids)
        if len(positions) and (positions.min() < 0 or positions.max() >= n_q):
            raise InputValueError(f"query_ids are positions among the {n_q} queries; got {positions.tolist()[:5]}")
        if verbose:
            print(f"Visualizing {n_instances} for the following query ids: {positions.tolist()}.")
        n_instances = min(int(n_instances), self.result.retrieved_ids.shape[1])  # OML shows what it has
        return ov.plot_queries(self.result, images, self.result.query_ids[positions],
                               n_instances=n_instances, n_gt=N_GT, dataset_root=self.dataset_root)

    def ready_to_visualize(self) -> bool:
        """Whether the dataset gives image paths (a ``path`` column)."""
        return self._items["frame"] is not None and "path" in self._items["frame"].columns

    def visualize(self) -> tuple[list[Any], list[str]]:
        """Worst-query figures for every metric not excluded, with OML's titles."""
        if self.metrics is None:
            raise RuntimeError("no metrics yet: call compute_metrics() first")
        figures, titles = [], []
        for name in _flat_names(self.metrics, self.metrics_to_exclude_from_visualization):
            if self.visualize_only_overall_category and not name.startswith(OVERALL):
                continue
            figures.append(self.get_plot_for_worst_queries(name, N_ROWS, N_INSTANCES))
            titles.append(f"top {N_ROWS} worst by {name}".replace("/", "_"))
        return figures, titles

    def _images(self) -> pd.DataFrame:
        if not self.ready_to_visualize():
            raise InputValueError("figures need image paths: pass a dataframe (or an OML dataset whose .df) "
                             "has a 'path' column")
        return self._items["frame"]


# ---------------------------------------------------------------------- helpers
def _items_of(dataset: Any) -> dict[str, Any]:
    """labels, is_query, is_gallery, categories, sequence and the frame (for figures)."""
    if isinstance(dataset, pd.DataFrame):
        df = dataset
        missing = [c for c in ("label", "is_query", "is_gallery") if c not in df.columns]
        if missing:
            raise InputValueError(f"dataset: the dataframe lacks column(s) {missing} (OML format: label, "
                             "is_query, is_gallery; optional category, sequence, path)")
        if "split" in df.columns and df["split"].nunique() > 1:
            raise InputValueError(f"dataset: the dataframe holds splits {sorted(df['split'].unique().tolist())}; "
                             "pass the validation rows only: df[df.split == 'validation'].reset_index(drop=True)")
        flags = {}
        for col in ("is_query", "is_gallery"):
            values = df[col]
            bad = values[~values.isin([True, False, 0, 1])]
            if len(bad):
                raise InputValueError(f"dataset: column {col!r} must hold booleans; rows {bad.index[:5].tolist()} "
                                 f"hold {bad.iloc[:5].tolist()}")
            flags[col] = values.astype(bool).to_numpy()
        return {
            "labels": df["label"].to_numpy(), "is_query": flags["is_query"],
            "is_gallery": flags["is_gallery"],
            "categories": df["category"].to_numpy() if "category" in df.columns else None,
            "sequence": df["sequence"].to_numpy() if "sequence" in df.columns else None,
            "frame": df.reset_index(drop=True),
        }
    needed = ("get_labels", "get_query_ids", "get_gallery_ids")
    if not all(hasattr(dataset, name) for name in needed):
        raise InputTypeError(f"dataset must be an OML dataframe or an OML query/gallery labeled dataset "
                        f"(with {', '.join(needed)}), got {type(dataset).__name__}")
    labels = np.asarray(dataset.get_labels())
    n = len(labels)
    is_query = np.zeros(n, dtype=bool)
    is_gallery = np.zeros(n, dtype=bool)
    is_query[np.asarray(dataset.get_query_ids()).reshape(-1)] = True
    is_gallery[np.asarray(dataset.get_gallery_ids()).reshape(-1)] = True
    extra = getattr(dataset, "extra_data", None) or {}
    frame = getattr(dataset, "df", None)
    return {
        "labels": labels, "is_query": is_query, "is_gallery": is_gallery,
        "categories": np.asarray(extra["category"]) if "category" in extra else None,
        "sequence": np.asarray(extra["sequence"]) if "sequence" in extra else None,
        "frame": frame.reset_index(drop=True) if isinstance(frame, pd.DataFrame) else None,
    }


def _scalar(value: Any) -> torch.Tensor:
    return torch.tensor(float(value))


def _copy(metrics: dict[Any, Any]) -> dict[Any, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v.clone() for k, v in metrics.items()}


def _flat_names(metrics: dict[Any, Any], ignored: Iterable[Hashable] = (), parent: str = "") -> list[str]:
    """OML's ``flatten_dict`` keys: ``"OVERALL/cmc/1"``; a key in ``ignored`` at any level is skipped."""
    ignored = list(ignored)
    names: list[str] = []
    for key, value in metrics.items():
        if key in ignored:
            continue
        name = f"{parent}/{key}" if parent else str(key)
        names.extend(_flat_names(value, ignored, name) if isinstance(value, dict) else [name])
    return names
