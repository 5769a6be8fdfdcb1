"""Tracker loggers, the validation-metrics callback and a small training module.

``create_logger({"name": ..., "args": {...}})`` builds a Lightning logger for ``tensorboard``
(the default), ``mlflow``, ``wandb``, ``neptune`` or ``clearml``; each also has
``log_figure(fig, title, step)`` and ``log_pipeline_info(cfg, dataframe=None, tags=())`` and
keeps a local CSV copy of every metric. Names are imported lazily: ``import oml_viz.loggers``
needs neither Lightning nor any tracker SDK.

Example:
    >>> import tempfile
    >>> from oml_viz.loggers import create_logger
    >>> logger = create_logger({"name": "tensorboard", "args": {"save_dir": tempfile.mkdtemp()}})
    >>> logger.log_metrics({"OVERALL/cmc/1": 0.8}, step=3)
    >>> logger.metrics_csv.read_text().splitlines()[1].split(",")[-3:]   # the local copy
    ['3', 'OVERALL/cmc/1', '0.8']
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from oml_viz.loggers.factory import BACKENDS, create_logger
from oml_viz.loggers.flatten import flat_metrics, flatten_config

_LAZY = {
    "MetricValCallback": "oml_viz.loggers.callback",
    "RetrievalModule": "oml_viz.loggers.lightning_module",
    "PipelineLoggerMixin": "oml_viz.loggers.base",
    "MetricsCSV": "oml_viz.loggers.local_copy",
    **{cls: module for module, cls, _ in BACKENDS.values()},
}

__all__ = [  # noqa: RUF022 -- eager names first, then the lazy ones
    "BACKENDS", "create_logger", "flat_metrics", "flatten_config",
    "ClearMLPipelineLogger", "MLflowPipelineLogger", "MetricValCallback", "MetricsCSV",
    "NeptunePipelineLogger", "PipelineLoggerMixin", "RetrievalModule",
    "TensorBoardPipelineLogger", "WandbPipelineLogger",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oml_viz.loggers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
