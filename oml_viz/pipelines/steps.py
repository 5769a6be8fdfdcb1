"""The steps validate and train share: data, model, embeddings, metrics, logging.

Each step takes the parsed config section it needs, so the pipelines read as a list of steps
and notebooks can call one step on its own.

Example:
    >>> import tempfile
    >>> from oml_viz.datasets import make_demo_dataset
    >>> root = tempfile.mkdtemp()
    >>> _ = make_demo_dataset(f"{root}/data", n_classes=16, images_per_class=3, size=32, progress=False)
    >>> tiny_vit = {"kind": "vit", "arch": "vit_tiny_patch16_224",
    ...             "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}
    >>> raw = {"dataset": {"dataframe": f"{root}/data/df.csv"}, "model": tiny_vit, "progress": False,
    ...        "logger": {"args": {"save_dir": f"{root}/logs"}},
    ...        "metric_args": {"cmc_top_k": [1], "precision_top_k": [2], "map_top_k": [2]}}
    >>> from oml_viz.pipelines.config import config_from_dict
    >>> cfg = config_from_dict(raw, "validate")
    >>> df = read_data(cfg.dataset)
    >>> ext = build_extractor(cfg.model)
    >>> val = validation_rows(df)
    >>> emb = embed(ext, val, cfg)
    >>> res, table = evaluate(emb, val, cfg.metric_args)
    >>> len(val), emb.shape, sorted(flat_table(table))[:2]
    (24, (24, 32), ['OVERALL/cmc/1', 'OVERALL/map/2'])
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import torch

from oml_viz.errors import InputValueError
from oml_viz.pipelines.config import (
    DatasetConfig,
    MetricArgs,
    ModelConfig,
    ValidateConfig,
)

__all__ = [
    "build_extractor",
    "embed",
    "evaluate",
    "flat_table",
    "format_table",
    "input_size",
    "log_evaluation",
    "metric_kwargs",
    "read_data",
    "resolve_device",
    "seed_everything",
    "sequence_codes",
    "train_rows",
    "validation_rows",
]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for a repeatable run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; an unavailable CUDA is an error naming the key."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputValueError(f"device: {device!r} asked for, but CUDA is not available (use auto or cpu)")
    return torch.device(device)


def read_data(ds: DatasetConfig) -> pd.DataFrame:
    """The whole OML dataframe, validated (row-level errors), with ``attrs["dataset_root"]`` set."""
    from oml_viz.data import read_dataframe

    return read_dataframe(ds.dataframe, ds.dataset_root)


def _rows(df: pd.DataFrame, split: str) -> pd.DataFrame:
    out = df[df["split"] == split].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def validation_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The validation split (positions 0..n-1), keeping ``attrs``; an error when it is empty."""
    out = _rows(df, "validation")
    if out.empty:
        raise InputValueError("dataset.dataframe: no rows with split == 'validation': nothing to validate on")
    return out


def train_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The train split (positions 0..n-1), keeping ``attrs``; an error when it is empty."""
    out = _rows(df, "train")
    if out.empty:
        raise InputValueError("dataset.dataframe: no rows with split == 'train': nothing to train on")
    return out


def build_extractor(model: ModelConfig) -> Any:
    """The ``oml_viz.models`` extractor the ``model:`` section describes."""
    from oml_viz.models import EXTRACTOR_KINDS

    cls = EXTRACTOR_KINDS[model.kind]
    return cls(model.arch, weights=model.weights, normalise_features=model.normalise_features, **model.kwargs)


def input_size(extractor: Any, image_size: int | None) -> tuple[int, int]:
    """(H, W) images are resized to: ``image_size`` when given, else the model's own size."""
    own = tuple(extractor.input_size)
    if image_size is None:
        return own  # type: ignore[return-value]
    size = (int(image_size), int(image_size))
    model = extractor.model
    if hasattr(model, "patch_embed") and not getattr(model, "dynamic_img_size", False) and size != own:
        raise InputValueError(f"image_size: {image_size} does not fit the ViT, built for {own[0]}x{own[1]}; set "
                         "model.kwargs.img_size to it (or model.kwargs.dynamic_img_size: true)")
    return size


def embed(extractor: Any, rows: pd.DataFrame, cfg: ValidateConfig, device: torch.device | None = None) -> np.ndarray:
    """Embeddings of ``rows`` (float32 (N, D)), with a progress bar when ``cfg.progress``."""
    from oml_viz.models import extract_embeddings

    return extract_embeddings(
        extractor, rows, cfg.batch_size_inference, device if device is not None else resolve_device(cfg.device),
        input_size=input_size(extractor, cfg.image_size), preprocess_model=extractor.model,
        num_workers=cfg.num_workers, progress=cfg.progress,
    )


def metric_kwargs(metric_args: MetricArgs) -> dict[str, tuple]:
    """The config's ``metric_args`` as ``RetrievalResult.metrics`` keyword arguments."""
    return {"cmc_top_k": tuple(metric_args.cmc_top_k), "precision_top_k": tuple(metric_args.precision_top_k),
            "map_top_k": tuple(metric_args.map_top_k), "fmr_vals": tuple(metric_args.fmr_vals),
            "pcf_variance": tuple(metric_args.pcf_variance)}


def sequence_codes(rows: pd.DataFrame) -> np.ndarray | None:
    """The ``sequence`` column as int codes (a missing value shares its sequence with nobody), or None.

    Ints batch into tensors whatever the column held, and give the same exclusions as the values.
    """
    if "sequence" not in rows.columns:
        return None
    from oml_viz.engine.validation import as_codes

    return as_codes("sequence", rows["sequence"].to_numpy(object), len(rows), missing_unique=True)[0]


def evaluate(embeddings: np.ndarray, rows: pd.DataFrame, metric_args: MetricArgs, distance: str = "euclidean",
             device: torch.device | str | None = None, progress: bool | None = None) -> tuple[Any, pd.DataFrame]:
    """Retrieval on the validation rows and the metrics table (``OVERALL`` + categories).

    The same :func:`oml_viz.engine.evaluate` that train's :class:`~oml_viz.loggers.MetricValCallback` runs.
    """
    from oml_viz.engine import evaluate as engine_evaluate

    return engine_evaluate(
        embeddings, rows["label"].tolist(), rows["is_query"].to_numpy(bool), rows["is_gallery"].to_numpy(bool),
        categories=rows["category"].tolist() if "category" in rows.columns else None,
        sequence=sequence_codes(rows), metric_args=metric_kwargs(metric_args), top_n=max(metric_args.top_n, 5),
        distance=distance, device=device, progress=progress, only_overall=metric_args.return_only_overall_category,
    )


def flat_table(table: pd.DataFrame) -> dict[str, float]:
    """``{"OVERALL/cmc/1": 0.8, "circle/map/5": ...}``; NaN cells (no queries) are left out."""
    from oml_viz.loggers.flatten import flat_metrics

    return flat_metrics(table)


def log_evaluation(logger: Any, res: Any, table: pd.DataFrame, rows: pd.DataFrame, cfg: ValidateConfig,
                   step: int = 0) -> None:
    """Metrics (flat keys) and, with ``cfg.log_images``, the worst-queries figure for ``step``."""
    logger.log_metrics(flat_table(table), step=step)
    if cfg.log_images:
        from oml_viz.render import plot_worst_queries

        metric = cfg.metric_args.worst_metric
        groups: list[Any] = [None]  # None: all queries; then each category, when OML's config asks
        if not cfg.metric_args.visualize_only_overall_category and "category" in rows.columns:
            groups += sorted(pd.unique(rows.loc[rows["is_query"].astype(bool), "category"]).tolist(), key=str)
        for category in groups:
            fig = plot_worst_queries(res, rows, metric=metric, n_queries=cfg.n_worst_queries, category=category)
            try:
                title = f"worst_queries/{metric}" if category is None else f"worst_queries/{category}/{metric}"
                logger.log_figure(fig, title, step=step)
            finally:
                fig.clear()


def format_table(table: pd.DataFrame) -> str:
    """The metrics table as aligned text (3 decimals) for the terminal."""
    return table.to_string(float_format=lambda v: f"{v:.3f}")
