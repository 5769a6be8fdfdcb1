"""``oml-viz validate``: metrics of a model on the validation split, logged to a tracker.

Steps: read and check the dataframe, build the extractor, embed the validation rows, retrieve,
compute the metrics table, then log the pipeline info, the metrics and (``log_images``) the
worst-queries figure through :func:`oml_viz.loggers.create_logger`. With a ``baseline:`` block,
the same for the baseline, then the comparison (:mod:`oml_viz.pipelines.baseline`).

Example:
    >>> import tempfile
    >>> from oml_viz.datasets import make_demo_dataset
    >>> root = tempfile.mkdtemp()
    >>> _ = make_demo_dataset(f"{root}/data", n_classes=16, images_per_class=3, size=32, progress=False)
    >>> tiny_vit = {"kind": "vit", "arch": "vit_tiny_patch16_224",
    ...             "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}
    >>> cfg = {"dataset": {"dataframe": f"{root}/data/df.csv"}, "model": tiny_vit, "progress": False,
    ...        "logger": {"args": {"save_dir": f"{root}/logs"}},
    ...        "metric_args": {"cmc_top_k": [1], "precision_top_k": [2], "map_top_k": [2]}}
    >>> run = validate_pipeline(cfg)            # a dict, a ValidateConfig or a YAML file's path
    >>> bool(0.0 <= run.metrics.loc["OVERALL", "cmc/1"] <= 1.0), run.embeddings.shape
    (True, (24, 32))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from oml_viz.pipelines.config import (
    ValidateConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from oml_viz.pipelines.steps import (
    build_extractor,
    embed,
    evaluate,
    input_size,
    log_evaluation,
    read_data,
    resolve_device,
    seed_everything,
    validation_rows,
)

__all__ = ["ValidationRun", "as_config", "validate_pipeline"]


@dataclass
class ValidationRun:
    """What a validate run produced: the table, the retrieval, embeddings, rows, model and logger."""

    metrics: pd.DataFrame
    result: Any
    embeddings: np.ndarray
    rows: pd.DataFrame
    extractor: Any
    logger: Any
    config: ValidateConfig
    comparison: Any = None  # with a baseline: ov.compare(baseline, current)
    comparison_table: pd.DataFrame | None = None


def as_config(cfg: ValidateConfig | dict | str | os.PathLike, kind: str) -> ValidateConfig:
    """A checked config from a config object, a dict (paths relative to the cwd) or a YAML path."""
    if isinstance(cfg, ValidateConfig):
        return cfg
    if isinstance(cfg, dict):
        return config_from_dict(cfg, kind)
    return load_config(cfg, kind)


def make_logger(cfg: ValidateConfig) -> Any:
    from oml_viz.loggers import create_logger

    return create_logger({"name": cfg.logger.name, "args": dict(cfg.logger.args)})


def validate_pipeline(cfg: ValidateConfig | dict | str | os.PathLike, logger: Any = None) -> ValidationRun:
    """Run the validate pipeline (see the module docstring) and return its :class:`ValidationRun`.

    ``logger`` overrides the config's ``logger:`` block (any object with ``log_metrics``,
    ``log_figure``, ``log_pipeline_info``, ``finalize``); it is finalised at the end.
    """
    cfg = as_config(cfg, "validate")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    df = read_data(cfg.dataset)
    rows = validation_rows(df)
    extractor = build_extractor(cfg.model)
    input_size(extractor, cfg.image_size)  # a size the model cannot take fails before anything is logged
    logger = make_logger(cfg) if logger is None else logger
    status = "failed"
    try:
        logger.log_pipeline_info(config_to_dict(cfg), dataframe=df, tags=list(cfg.tags) + ["validate"])
        emb = embed(extractor, rows, cfg, device)
        res, table = evaluate(emb, rows, cfg.metric_args, cfg.distance, device, progress=cfg.progress)
        log_evaluation(logger, res, table, rows, cfg, step=0)
        cmp = cmp_table = None
        if cfg.baseline is not None:
            from oml_viz.pipelines.baseline import log_comparison, run_comparison

            cmp, cmp_table = run_comparison(res, rows, df, cfg, device)
            log_comparison(logger, cmp, cmp_table, rows, cfg, step=0)
        status = "success"
    finally:
        logger.finalize(status)
    return ValidationRun(table, res, emb, rows, extractor, logger, cfg, cmp, cmp_table)
