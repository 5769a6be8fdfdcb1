"""``oml-viz train``: train an extractor with a triplet loss, validating every ``valid_period`` epochs.

Training runs on Lightning: :class:`oml_viz.loggers.RetrievalModule` (loss + the loss's
``last_logs``), batches of ``n_labels x n_instances`` from :class:`BalancedBatchSampler`,
:class:`oml_viz.losses.TripletLossWithMiner` (``all`` or ``hard`` triplets), and
:class:`oml_viz.loggers.MetricValCallback` computing the metrics (and the worst-queries figure)
on the validation split. The last epoch is always validated, so the run ends with the
metrics of the model it returns. The learning rate warms up for the first 5% of the steps,
then follows a cosine to zero (ViTs trained from scratch need the warm-up).

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
    >>> cfg.update(epochs=1, sampler={"n_labels": 2, "n_instances": 2}, checkpoint=f"{root}/vit.pt")
    >>> run = train_pipeline(cfg, quiet=True)
    >>> bool(0.0 <= run.metrics.loc["OVERALL", "cmc/1"] <= 1.0), run.checkpoint.name
    (True, 'vit.pt')
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, Trainer

from oml_viz.errors import InputTypeError
from oml_viz.loggers import MetricValCallback, RetrievalModule
from oml_viz.pipelines.config import OptimizerConfig, TrainConfig, config_to_dict
from oml_viz.pipelines.images import ImageTensors
from oml_viz.pipelines.sampler import BalancedBatchSampler
from oml_viz.pipelines.steps import (
    build_extractor,
    input_size,
    metric_kwargs,
    read_data,
    resolve_device,
    seed_everything,
    sequence_codes,
    train_rows,
    validation_rows,
)
from oml_viz.pipelines.validate import as_config, make_logger

__all__ = ["TrainRun", "make_criterion", "make_optimizer", "train_pipeline"]

_WARMUP_SHARE = 0.05


@dataclass
class TrainRun:
    """What a train run produced: final metrics and retrieval, the trained extractor, its logger."""

    metrics: pd.DataFrame
    result: Any
    extractor: Any
    logger: Any
    rows: pd.DataFrame
    config: TrainConfig
    checkpoint: Path | None
    history: list[dict[str, float]]

    @property
    def embeddings(self) -> np.ndarray:
        """Validation embeddings of the trained model (what the final metrics were computed on)."""
        return np.asarray(self.result.embeddings, dtype=np.float32)


def make_criterion(cfg: TrainConfig) -> torch.nn.Module:
    """The triplet loss with the configured miner."""
    from oml_viz.losses import AllTripletsMiner, HardTripletsMiner, TripletLossWithMiner

    miner = HardTripletsMiner() if cfg.loss.miner == "hard" else AllTripletsMiner()
    return TripletLossWithMiner(margin=cfg.loss.margin, miner=miner)


def make_optimizer(params: Any, opt: OptimizerConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """Optimizer and a per-step linear-warm-up + cosine schedule over ``total_steps``."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[opt.name]
    kwargs = {"momentum": 0.9} if opt.name == "sgd" else {}
    optimizer = cls(params, lr=opt.lr, weight_decay=opt.weight_decay, **kwargs)
    warmup = max(1, round(_WARMUP_SHARE * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _ConfiguredModule(RetrievalModule):
    """RetrievalModule with the config's optimizer and a per-step schedule."""

    def __init__(self, model: torch.nn.Module, criterion: torch.nn.Module, opt: OptimizerConfig, total_steps: int):
        super().__init__(model, criterion, lr=opt.lr, weight_decay=opt.weight_decay)
        self.opt_cfg, self.total_steps = opt, total_steps

    def configure_optimizers(self) -> Any:
        optimizer, schedule = make_optimizer(self.parameters(), self.opt_cfg, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _ValidationBatches(torch.utils.data.Dataset):
    """Validation rows as mapping batches in the protocol :class:`MetricValCallback` reads."""

    def __init__(self, images: ImageTensors, rows: pd.DataFrame):
        self.images = images
        self.is_query = rows["is_query"].to_numpy(bool)
        self.is_gallery = rows["is_gallery"].to_numpy(bool)
        self.categories = rows["category"].astype(str).tolist() if "category" in rows.columns else None
        self.sequence = sequence_codes(rows)  # the same exclusions as oml-viz validate

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, label = self.images[i]
        item = {"input_tensors": x, "labels": label, "is_query": bool(self.is_query[i]),
                "is_gallery": bool(self.is_gallery[i]), "idx": i}
        if self.categories is not None:
            item["categories"] = self.categories[i]
        if self.sequence is not None:
            item["sequence"] = int(self.sequence[i])
        return item


def _accelerator(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    return {"accelerator": "cpu", "devices": 1}


def train_pipeline(cfg: TrainConfig | dict | str | os.PathLike, logger: Any = None,
                   extractor: Any = None, quiet: bool = False) -> TrainRun:
    """Run the train pipeline (see the module docstring); returns a :class:`TrainRun`.

    ``logger`` overrides the config's ``logger:`` block; ``extractor`` (an ``oml_viz.models``
    extractor) replaces the one ``model:`` describes; ``quiet`` hides Lightning's info lines.
    """
    cfg = as_config(cfg, "train")
    if not isinstance(cfg, TrainConfig):
        raise InputTypeError(f"cfg: train_pipeline needs a train config, got a {type(cfg).__name__}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    df = read_data(cfg.dataset)
    train, rows = train_rows(df), validation_rows(df)
    ext = build_extractor(cfg.model) if extractor is None else extractor
    size = input_size(ext, cfg.image_size)
    root = df.attrs.get("dataset_root")

    train_images = ImageTensors(train, ext.model, size, root, hflip=cfg.hflip)
    sampler = BalancedBatchSampler(train_images.label_codes, cfg.sampler.n_labels, cfg.sampler.n_instances,
                                   seed=cfg.seed)
    train_loader = torch.utils.data.DataLoader(train_images, batch_sampler=sampler, num_workers=cfg.num_workers)
    val_loader = torch.utils.data.DataLoader(_ValidationBatches(ImageTensors(rows, ext.model, size, root), rows),
                                             batch_size=cfg.batch_size_inference, num_workers=cfg.num_workers)

    ma = cfg.metric_args
    callback = MetricValCallback(
        metric_kwargs(ma),
        top_n=max(ma.top_n, 5), distance=cfg.distance, log_images=cfg.log_images, images=rows,
        worst_metric=ma.worst_metric, n_queries=cfg.n_worst_queries,
        return_only_overall_category=ma.return_only_overall_category, device=str(device),
    )
    history = _History()
    module = _ConfiguredModule(ext, make_criterion(cfg), cfg.optimizer, total_steps=cfg.epochs * len(sampler))
    logger = make_logger(cfg) if logger is None else logger
    logger.log_pipeline_info(config_to_dict(cfg), dataframe=df, tags=list(cfg.tags) + ["train"])
    was_training = ext.training
    try:
        with warnings.catch_warnings(), _lightning_info(quiet):
            # a small CPU run: Lightning's advice on dataloader workers and batch counts is noise here
            warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|log_every_n_steps"
                                    "|LeafSpec).*")
            trainer = Trainer(
                max_epochs=cfg.epochs, check_val_every_n_epoch=cfg.valid_period, logger=logger,
                callbacks=[callback, history], enable_checkpointing=False, num_sanity_val_steps=0,
                enable_progress_bar=cfg.progress, enable_model_summary=False, log_every_n_steps=1,
                **_accelerator(device),
            )
            trainer.fit(module, train_loader, val_loader)
            if cfg.epochs % cfg.valid_period:
                trainer.validate(module, val_loader, verbose=False)
    except BaseException:
        logger.finalize("failed")
        raise
    finally:
        ext.train(was_training)
        ext.to("cpu")

    checkpoint = None
    if cfg.checkpoint is not None:
        checkpoint = ext.save(cfg.checkpoint)
    return TrainRun(callback.last_metrics, callback.last_result, ext, logger, rows, cfg, checkpoint, history.rows)


@contextmanager
def _lightning_info(quiet: bool) -> Iterator[None]:
    """Hide Lightning's info lines (accelerator, tips, 'fit stopped') while ``quiet``."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


class _History(Callback):
    """Epoch means of what the module logged (``loss_epoch``...) and the last validation metrics."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.endswith("_epoch") or ("/" in key and not key.startswith("loss/")):
                row[key] = float(value)
        self.rows.append(row)
