"""``oml-viz validate``: metrics of a model on the validation split, logged to a tracker.

Steps: read and check the dataframe, build the extractor, embed the validation rows, retrieve,
compute the metrics table, then log the pipeline info, the metrics and (``log_images``) the
worst-queries figure through :func:`oml_viz.loggers.create_logger`.

Example:
    >>> run = validate_pipeline("configs/validate.yaml")       # doctest: +SKIP
    >>> run.metrics.loc["OVERALL", "cmc/1"]                   # doctest: +SKIP
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
        status = "success"
    finally:
        logger.finalize(status)
    return ValidationRun(table, res, emb, rows, extractor, logger, cfg)
