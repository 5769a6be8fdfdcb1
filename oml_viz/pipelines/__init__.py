"""oml_viz.pipelines: YAML-driven validate / train pipelines, the demo and the ``oml-viz`` command.

Names are imported lazily: reading a config needs neither torch nor Lightning.

Example:
    >>> from oml_viz.pipelines import load_config, validate_pipeline
    >>> run = validate_pipeline(load_config("validate.yaml", "validate"))   # doctest: +SKIP
    >>> print(run.metrics)                                                  # doctest: +SKIP
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ConfigError": "oml_viz.pipelines.schema",
    "load_config": "oml_viz.pipelines.config",
    "config_from_dict": "oml_viz.pipelines.config",
    "ValidateConfig": "oml_viz.pipelines.config",
    "TrainConfig": "oml_viz.pipelines.config",
    "BalancedBatchSampler": "oml_viz.pipelines.sampler",
    "validate_pipeline": "oml_viz.pipelines.validate",
    "ValidationRun": "oml_viz.pipelines.validate",
    "train_pipeline": "oml_viz.pipelines.train",
    "TrainRun": "oml_viz.pipelines.train",
    "demo_assets": "oml_viz.pipelines.demo",
    "DemoAssets": "oml_viz.pipelines.demo",
    "run_demo": "oml_viz.pipelines.run_demo",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oml_viz.pipelines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
