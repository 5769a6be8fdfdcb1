"""The ``baseline:`` block of ``oml-viz validate``: the current model against a baseline.

The baseline's embeddings of the validation rows come from a second model (``baseline.model``,
with its weights) or from a saved file (``baseline.embeddings``: ``.npy`` or ``.pt``, one row per
validation row or per dataframe row). Both go through the same retrieval as the current model,
then :func:`oml_viz.compare` gives the table that is logged as ``compare/<group>/<metric>/<column>``
(``compare/OVERALL/map/5/delta``, ``.../ci_low``, ``.../p_value``, ...) and the figure of the
queries that regressed most (``compare/regressed/<metric>``).

In a validate config: ``baseline: {embeddings: old_embeddings.npy, name: v1}``; then
``validate_pipeline(cfg).comparison_table.loc["OVERALL", "map/5/delta"]``.

Example:
    >>> from oml_viz.pipelines.config import BaselineConfig, DatasetConfig, ValidateConfig
    >>> cfg = ValidateConfig(dataset=DatasetConfig("df.csv"), baseline=BaselineConfig(embeddings="old.npy"))
    >>> compare_metrics(cfg)  # the metric_args' per-query metrics, by default
    ['cmc/1', 'cmc/5', 'precision/5', 'map/5']
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.errors import InputValueError
from oml_viz.pipelines.config import BaselineConfig, ValidateConfig

__all__ = ["CURRENT", "baseline_embeddings", "compare_metrics", "log_comparison", "run_comparison"]

CURRENT = "current"  # what the comparison calls the model under validation


def _load_array(path: str) -> np.ndarray:
    if Path(path).suffix.lower() == ".npy":
        try:
            data: Any = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputValueError(f"baseline.embeddings: {path} is not a plain numeric .npy array: {e}") from None
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(data, dict):
            if "embeddings" not in data:
                raise InputValueError(f"baseline.embeddings: {path} holds a dict without an 'embeddings' key "
                                      f"(keys: {sorted(map(str, data))[:8]})")
            data = data["embeddings"]
        if isinstance(data, torch.Tensor):
            data = data.detach().float().numpy()
    array = np.asarray(data)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise InputValueError(f"baseline.embeddings: {path} must hold a numeric (N, D) array; got "
                              f"{array.dtype} {array.shape}")
    return array.astype(np.float32, copy=False)


def baseline_embeddings(bl: BaselineConfig, rows: pd.DataFrame, df: pd.DataFrame, cfg: ValidateConfig,
                        device: torch.device | None = None) -> np.ndarray:
    """(len(rows), D) float32: the baseline model's embeddings of the validation rows, or the file's."""
    if bl.embeddings is not None:
        array = _load_array(bl.embeddings)
        if len(array) == len(rows):
            return array
        if len(array) == len(df):
            return array[(df["split"] == "validation").to_numpy()]
        raise InputValueError(f"baseline.embeddings: {bl.embeddings} has {len(array)} rows; expected one per "
                              f"validation row ({len(rows)}) or per dataframe row ({len(df)})")
    from oml_viz.pipelines.steps import build_extractor, embed, input_size

    extractor = build_extractor(bl.model)  # type: ignore[arg-type]
    input_size(extractor, cfg.image_size)
    return embed(extractor, rows, cfg, device)


def compare_metrics(cfg: ValidateConfig) -> list[str]:
    """``baseline.metrics``, else the per-query metrics of ``metric_args`` (cmc, precision, map)."""
    bl = cfg.baseline
    if bl is not None and bl.metrics:
        return list(bl.metrics)
    ma = cfg.metric_args
    out = [f"cmc/{k}" for k in ma.cmc_top_k] + [f"precision/{k}" for k in ma.precision_top_k] + \
        [f"map/{k}" for k in ma.map_top_k]
    return list(dict.fromkeys(out)) or ["cmc/1"]


def run_comparison(res: Any, rows: pd.DataFrame, df: pd.DataFrame, cfg: ValidateConfig,
                   device: torch.device | None = None) -> tuple[Any, pd.DataFrame]:
    """(comparison, table): the baseline's retrieval against ``res`` (the current model's)."""
    from oml_viz.analysis import compare
    from oml_viz.pipelines.steps import evaluate

    bl = cfg.baseline
    if bl is None:
        raise InputValueError("baseline: run_comparison needs a config with a baseline: block")
    emb = baseline_embeddings(bl, rows, df, cfg, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-ground-truth note was given for the current model
        base_res, _ = evaluate(emb, rows, cfg.metric_args, cfg.distance, device, progress=cfg.progress)
        cmp = compare(base_res, res, names=(bl.name, CURRENT))
        table = cmp.table(metrics=compare_metrics(cfg), n_boot=bl.n_boot, seed=cfg.seed)
    return cmp, table


def log_comparison(logger: Any, cmp: Any, table: pd.DataFrame, rows: pd.DataFrame, cfg: ValidateConfig,
                   step: int = 0) -> None:
    """The table as ``compare/<group>/<metric>/<column>`` metrics and, with ``log_images``, the
    queries of ``baseline.kind`` (default regressed) by the worst-queries metric."""
    from oml_viz.pipelines.steps import flat_table

    logger.log_metrics({f"compare/{k}": v for k, v in flat_table(table).items()}, step=step)
    if cfg.log_images:
        from oml_viz.render import plot_compared_queries

        bl = cfg.baseline
        if bl is None:
            raise InputValueError("baseline: log_comparison needs a config with a baseline: block")
        metric = cfg.metric_args.worst_metric
        fig = plot_compared_queries(cmp, rows, kind=bl.kind, metric=metric, n_queries=cfg.n_worst_queries)
        try:
            logger.log_figure(fig, f"compare/{bl.kind}/{metric}", step=step)
        finally:
            fig.clear()
