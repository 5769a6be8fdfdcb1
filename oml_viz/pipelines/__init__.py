"""oml_viz.pipelines: YAML-driven validate / train pipelines, the demo and the ``oml-viz`` command.

Names are imported lazily: reading a config needs neither torch nor Lightning.

Example:
    >>> import yaml
    >>> from oml_viz.pipelines import load_config, validate_pipeline
    >>> import tempfile
    >>> from oml_viz.datasets import make_demo_dataset
    >>> root = tempfile.mkdtemp()
    >>> _ = make_demo_dataset(f"{root}/data", n_classes=16, images_per_class=3, size=32, progress=False)
    >>> tiny_vit = {"kind": "vit", "arch": "vit_tiny_patch16_224",
    ...             "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}
    >>> cfg = {"dataset": {"dataframe": f"{root}/data/df.csv"}, "model": tiny_vit, "progress": False,
    ...        "logger": {"args": {"save_dir": f"{root}/logs"}},
    ...        "metric_args": {"cmc_top_k": [1], "precision_top_k": [2], "map_top_k": [2]}}
    >>> with open(f"{root}/validate.yaml", "w") as f:
    ...     yaml.safe_dump(cfg, f)
    >>> run = validate_pipeline(load_config(f"{root}/validate.yaml", "validate"))
    >>> run.metrics.columns.tolist(), run.metrics.index[0]
    (['cmc/1', 'precision/2', 'map/2'], 'OVERALL')
"""
from __future__ import annotations

from oml_viz.lazy import lazy_names

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

__getattr__, __dir__, __all__ = lazy_names(__name__, _LAZY, globals())
