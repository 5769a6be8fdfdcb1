"""The items panels show: full images by item id, short labels for pickers, and which items to offer."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from oml_viz.checks import check_int
from oml_viz.data.sources import ImageSource


class Items:
    """The N images behind a result (paths / PIL / arrays, or an OML dataframe) plus their labels.

    Example:
        >>> df = pd.DataFrame({"path": [np.zeros((64, 64, 3), np.uint8)] * 4, "label": [1, 1, 0, 0]})
        >>> items = Items(df["path"].tolist(), labels=df["label"])
        >>> items.image(3).shape, items.describe(3)
        ((64, 64, 3), 'item 3 · label 0')
    """

    def __init__(self, images: Sequence[Any] | pd.DataFrame, dataset_root: str | os.PathLike | None = None,
                 labels: Sequence[Any] | None = None):
        self.images = images
        self.dataset_root = dataset_root
        self.source = ImageSource(images, dataset_root)
        if labels is None and isinstance(images, pd.DataFrame) and "label" in images.columns:
            labels = images["label"].to_numpy()
        self.labels = None if labels is None else np.asarray(labels, dtype=object)
        if self.labels is not None and len(self.labels) != len(self.source):
            raise ValueError(f"images holds {len(self.source)} items but there are {len(self.labels)} labels "
                             "(one per item of the result)")

    def __len__(self) -> int:
        return len(self.source)

    def check_id(self, item: int, name: str = "item") -> int:
        return check_int(name, item, low=0, high=len(self) - 1, hint=" (not an item id)")

    def image(self, item: int) -> np.ndarray:
        """Full-size RGB uint8 of ``item`` (cropped to its bbox); raises for a missing/broken file."""
        return self.source.image(self.check_id(item))

    def describe(self, item: int) -> str:
        label = "" if self.labels is None else f" · label {self.labels[item]}"
        return f"item {int(item)}{label}"


RESULT_KS = (1, 3, 5, 10)  # with top_n: the k every panel shows a result's metrics at
DEFAULT_FMR_VALS = (0.1,)


def result_metric_args(res: Any, fmr_vals: Sequence[float] = DEFAULT_FMR_VALS,
                       pcf_variance: Sequence[float] = ()) -> dict[str, tuple]:
    """The metrics of this result, for every panel: ``res.metrics`` arguments with cmc, precision
    and map at k in 1, 3, 5, 10 and ``top_n`` (those up to ``top_n``), plus ``fnmr@fmr`` / ``pcf``.

    Example:
        >>> import oml_viz as ov
        >>> res = ov.retrieve([[0.0], [1.0], [5.0], [6.0]], [0, 0, 1, 1], top_n=3, device="cpu")
        >>> result_metric_args(res)["map_top_k"], result_metric_args(res)["fmr_vals"]
        ((1, 3), (0.1,))
    """
    from .base import valid_ks

    top_n = int(res.retrieved_ids.shape[1])
    ks = valid_ks((*RESULT_KS, top_n), top_n)
    return {"cmc_top_k": ks, "precision_top_k": ks, "map_top_k": ks, "fmr_vals": tuple(fmr_vals),
            "pcf_variance": tuple(pcf_variance)}


def result_metric_names(res: Any, fmr_vals: Sequence[float] = DEFAULT_FMR_VALS,
                        pcf_variance: Sequence[float] = (), per_query_only: bool = False) -> list[str]:
    """The columns ``res.metrics(**result_metric_args(res, ...))`` has, in its order; with
    ``per_query_only`` those a query can be ranked by (``cmc``, ``precision``, ``map``).

    Example:
        >>> import oml_viz as ov
        >>> res = ov.retrieve([[0.0], [1.0], [5.0], [6.0]], [0, 0, 1, 1], top_n=1, device="cpu")
        >>> result_metric_names(res)
        ['cmc/1', 'precision/1', 'map/1', 'fnmr@fmr/0.1']
        >>> result_metric_names(res, per_query_only=True)
        ['cmc/1', 'precision/1', 'map/1']
    """
    args = result_metric_args(res, fmr_vals, pcf_variance)
    names = [f"{kind}/{k}" for kind in ("cmc", "precision", "map") for k in args[f"{kind}_top_k"]]
    if not per_query_only:
        names += [f"fnmr@fmr/{float(v)}" for v in args["fmr_vals"]]
        names += [f"pcf/{float(v)}" for v in args["pcf_variance"]]
    return names


def offer(dropdown: Any, items: Items, item: int) -> None:
    """Add ``item`` to a picker's options when it is not there yet (the value is left to the caller)."""
    if item not in [v for _, v in dropdown.options]:
        value = dropdown.value
        dropdown.options = [*dropdown.options, (items.describe(item), item)]
        dropdown.value = value


def default_item_ids(res: Any, n_items: int, metric: str | None = None, n: int = 20) -> list[int]:
    """Items a picker offers first: the ``n`` worst queries by ``metric`` when there is a result,
    else the first ``n`` items."""
    if res is None:
        return list(range(min(n, n_items)))
    metric = metric if metric is not None else f"map/{min(5, int(res.retrieved_ids.shape[1]))}"
    try:
        ids = [int(i) for i in res.worst_queries(metric, n)]
    except ValueError:  # metric k above top_n: fall back to the queries in order
        ids = []
    return ids or [int(i) for i in res.query_ids[:n]]


def check_item_ids(item_ids: Sequence[int] | None, items: Items, res: Any, metric: str | None) -> list[int]:
    ids = default_item_ids(res, len(items), metric) if item_ids is None else [int(i) for i in item_ids]
    if not ids:
        raise ValueError("item_ids: no items to show")
    for i in ids:
        items.check_id(i, "item_ids")
    return list(dict.fromkeys(ids))
