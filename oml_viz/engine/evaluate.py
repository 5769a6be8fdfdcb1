"""``evaluate()``: the one evaluation every caller shares (pipelines, the Lightning callback).

Given what a validation pass produced (embeddings, labels, the query/gallery masks, categories,
sequence ids) it runs :func:`~oml_viz.engine.retrieve` and builds the metrics table, so that
``oml-viz validate``, ``oml-viz train`` and :class:`~oml_viz.loggers.MetricValCallback` report
the same numbers for the same weights.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from .result import OVERALL, RetrievalResult
from .retrieval import retrieve

__all__ = ["METRIC_ARGS", "evaluate", "needed_top_n"]

METRIC_ARGS = ("cmc_top_k", "precision_top_k", "map_top_k", "fmr_vals", "pcf_variance")
_DEFAULT_KS = {"cmc_top_k": (1, 5), "precision_top_k": (5,), "map_top_k": (5,)}


def needed_top_n(metric_args: Mapping[str, Any] | None) -> int:
    """The retrieval depth the ranked metrics of ``metric_args`` need (defaults included)."""
    args = dict(metric_args or {})
    ks = [int(k) for key, default in _DEFAULT_KS.items() for k in args.get(key, default)]
    return max(ks + [1])


def evaluate(
    embeddings: Any,
    labels: Sequence[Hashable],
    is_query: Sequence[bool] | None = None,
    is_gallery: Sequence[bool] | None = None,
    *,
    categories: Sequence[Hashable] | None = None,
    sequence: Sequence[Hashable] | None = None,
    metric_args: Mapping[str, Any] | None = None,
    top_n: int | None = None,
    distance: str = "euclidean",
    device: str | torch.device | None = None,
    progress: bool | None = None,
    only_overall: bool = False,
) -> tuple[RetrievalResult, pd.DataFrame]:
    """Retrieval and its metrics table (``OVERALL`` + categories) for one validation set.

    ``metric_args`` are ``RetrievalResult.metrics``' keyword arguments (``cmc_top_k``,
    ``precision_top_k``, ``map_top_k``, ``fmr_vals``, ``pcf_variance``); ``top_n`` defaults to the
    largest k they need; ``sequence`` are sequence ids (items of one sequence never match each
    other); ``only_overall`` keeps the ``OVERALL`` row.

    Example:
        >>> import numpy as np
        >>> emb = np.array([[0.0], [0.1], [1.0], [1.2]], dtype=np.float32)
        >>> res, table = evaluate(emb, [0, 0, 1, 1], metric_args={"cmc_top_k": (1,), "map_top_k": (2,),
        ...                                                         "precision_top_k": ()})
        >>> table.to_dict("index")
        {'OVERALL': {'cmc/1': 1.0, 'map/2': 1.0}}
    """
    args = dict(metric_args or {})
    unknown = set(args) - set(METRIC_ARGS)
    if unknown:
        raise ValueError(f"metric_args has unknown key(s) {sorted(unknown)}; accepted: {list(METRIC_ARGS)}")
    args = {key: tuple(value) for key, value in args.items()}
    res = retrieve(
        embeddings, labels, is_query, is_gallery,
        top_n=needed_top_n(args) if top_n is None else top_n, distance=distance, sequence_ids=sequence,
        categories=categories, device=device, progress=progress,
    )
    table = res.metrics(**args)
    if only_overall:
        table = table.loc[[OVERALL]]
    return res, table
