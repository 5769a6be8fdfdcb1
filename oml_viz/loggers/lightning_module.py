"""``RetrievalModule``: train an embedding model with a metric-learning loss and log its statistics.

It logs the loss and the loss's ``last_logs`` (e.g. ``pos_dist``, ``neg_dist``, ``active_tri``
of :class:`~oml_viz.losses.TripletLossWithMiner`) per step and per epoch, and its
``validation_step`` follows the protocol :class:`~oml_viz.loggers.MetricValCallback` reads.

Batches are either mappings (OML's keys: ``input_tensors``, ``labels``, and for validation
optionally ``is_query``, ``is_gallery``, ``categories``, ``idx``, ``paths``) or tuples
``(inputs, labels)``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from oml_viz.loggers.batch_protocol import OPTIONAL_FIELDS

__all__ = ["RetrievalModule"]


class RetrievalModule(LightningModule):
    """A model, a loss with ``last_logs``, an Adam optimiser.

    Args:
        model: maps a batch of inputs to (B, D) embeddings.
        criterion: ``criterion(embeddings, labels) -> loss``; default
            ``TripletLossWithMiner(margin=0.1, miner=HardTripletsMiner())``.
        lr, weight_decay: for ``torch.optim.Adam``.
        input_key: the inputs' key in mapping batches.

    Logged names: ``loss`` and ``loss/<stat>``, each as ``..._step`` and ``..._epoch``
    (Lightning's suffixes when both are on).

    Example:
        >>> import tempfile, torch
        >>> from lightning.pytorch import Trainer
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x, y = torch.randn(32, 8), torch.arange(32) % 4        # 4 labels, 8 items each
        >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
        >>> trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, default_root_dir=tempfile.mkdtemp())
        >>> module = RetrievalModule(torch.nn.Linear(8, 4), lr=1e-2)   # any model: inputs -> (B, D)
        >>> trainer.fit(module, loader)
        >>> trainer.global_step, "loss_epoch" in trainer.logged_metrics
        (2, True)
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        input_key: str = "input_tensors",
    ) -> None:
        super().__init__()
        if criterion is None:
            from oml_viz.losses import HardTripletsMiner, TripletLossWithMiner

            criterion = TripletLossWithMiner(margin=0.1, miner=HardTripletsMiner())
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.model = model
        self.criterion = criterion
        self.lr = lr
        self.weight_decay = weight_decay
        self.input_key = input_key

    def _split(self, batch: Any) -> tuple[Tensor, Any]:
        if isinstance(batch, Mapping):
            if self.input_key not in batch or "labels" not in batch:
                raise ValueError(f"batch must have {self.input_key!r} and 'labels' keys, got "
                                 f"{sorted(batch)}")
            return batch[self.input_key], batch["labels"]
        if isinstance(batch, (list, tuple)) and len(batch) >= 2:
            return batch[0], batch[1]
        raise ValueError(f"batch must be a mapping or an (inputs, labels) tuple, got {type(batch).__name__}")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, labels = self._split(batch)
        loss = self.criterion(self(x), torch.as_tensor(labels, device=self.device))
        bs = len(x)
        self.log("loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        for key, value in getattr(self.criterion, "last_logs", {}).items():
            if not math.isnan(value):  # a batch without triplets would poison the epoch mean
                self.log(f"loss/{key}", float(value), on_step=True, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, labels = self._split(batch)
        out: dict[str, Any] = {"embeddings": self(x).detach(), "labels": labels}
        if isinstance(batch, Mapping):
            out.update({k: batch[k] for k in OPTIONAL_FIELDS if k in batch})
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
