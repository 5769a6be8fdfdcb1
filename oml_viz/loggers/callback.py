"""``MetricValCallback``: retrieval metrics (and worst-query figures) at each validation epoch end.

The LightningModule's ``validation_step`` follows the small protocol of
:mod:`oml_viz.loggers.batch_protocol` (return ``{"embeddings": ..., "labels": ...}``, plus
optional ``is_query``, ``is_gallery``, ``categories``, ``sequence``, ``idx``, ``paths``). At the end
of each validation epoch the callback runs :func:`oml_viz.engine.evaluate` (what ``oml-viz
validate`` runs) once on everything gathered, logs
the metric table as flat keys (``OVERALL/cmc/1``, ``<category>/map/5``) with ``pl_module.log``
(so ``ModelCheckpoint(monitor="OVERALL/map/5")`` works) and, with ``log_images=True``, hands
a worst-queries figure to every logger that has ``log_figure``.

Under DDP (several processes) each process sees its shard: the callback all-gathers what every
process saw, keeps one row per ``idx`` (``DistributedSampler`` repeats items to even out shards,
so ``idx`` is required then), computes the metrics once on rank 0 and hands every process the
same table; the loggers write once (from rank 0) and the figure is drawn on rank 0 only.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer

from oml_viz.engine.distributed import broadcast_object, is_distributed
from oml_viz.engine.evaluate import METRIC_ARGS
from oml_viz.loggers.batch_protocol import collect_fields
from oml_viz.loggers.flatten import flat_metrics
from oml_viz.loggers.gather import gather_validation

__all__ = ["MetricValCallback"]

_METRIC_ARGS = METRIC_ARGS  # RetrievalResult.metrics' keyword arguments


def _metric_k(metric: str) -> int:
    kind, _, k = metric.partition("/")
    if kind not in ("cmc", "precision", "map") or not k.isdigit():
        raise ValueError(f"worst_metric must look like 'map/5', 'cmc/1' or 'precision/5', got {metric!r}")
    return int(k)


class MetricValCallback(Callback):
    """Compute retrieval metrics over the whole validation set and log them.

    Args:
        metric_args: keyword arguments of ``RetrievalResult.metrics`` (``cmc_top_k``,
            ``precision_top_k``, ``map_top_k``, ``fmr_vals``, ``pcf_variance``); default
            CMC@1, CMC@5, Precision@5, MAP@5.
        top_n: retrieval depth; default the largest k the metrics and figure need.
        distance: ``"euclidean"`` or ``"cosine"``.
        log_images: also log a worst-queries figure (``worst_queries/<metric>``) per epoch.
        images: what the figure shows for each item: a sequence indexed by the batches' ``idx``
            (or in gathering order without ``idx``), or an OML dataframe; default the batches'
            ``paths``.
        worst_metric, n_queries, n_instances, n_gt: the figure's query ranking and size.
        return_only_overall_category: log only the ``OVERALL`` row.
        device: engine device (``None``: CUDA when available).
        dataloader_idx: which validation dataloader feeds the metrics (others are ignored).

    After each epoch ``last_metrics`` holds the table (on every process) and ``last_result`` the
    ``RetrievalResult`` (under DDP on rank 0 only; None elsewhere).

    Example:
        >>> import tempfile, torch
        >>> from lightning.pytorch import Trainer
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x, y = torch.randn(32, 8), torch.arange(32) % 4        # 4 labels, 8 items each
        >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
        >>> trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, default_root_dir=tempfile.mkdtemp())
        >>> from oml_viz.loggers import RetrievalModule
        >>> cb = MetricValCallback({"cmc_top_k": (1,), "precision_top_k": (), "map_top_k": (5,)}, log_images=False)
        >>> trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, default_root_dir=tempfile.mkdtemp(), callbacks=[cb])
        >>> trainer.validate(RetrievalModule(torch.nn.Linear(8, 4)), loader, verbose=False)   # doctest: +ELLIPSIS
        [...]
        >>> cb.last_metrics.columns.tolist(), cb.last_result.retrieved_ids.shape
        (['cmc/1', 'map/5'], (32, 5))
    """

    def __init__(
        self,
        metric_args: Mapping[str, Any] | None = None,
        *,
        top_n: int | None = None,
        distance: str = "euclidean",
        log_images: bool = False,
        images: Sequence[Any] | Any | None = None,
        worst_metric: str = "map/5",
        n_queries: int = 5,
        n_instances: int = 5,
        n_gt: int = 2,
        return_only_overall_category: bool = False,
        device: str | None = None,
        dataloader_idx: int = 0,
    ) -> None:
        super().__init__()
        metric_args = dict(metric_args or {})
        unknown = set(metric_args) - set(_METRIC_ARGS)
        if unknown:
            raise ValueError(f"metric_args has unknown key(s) {sorted(unknown)}; "
                             f"accepted: {list(_METRIC_ARGS)}")
        self.metric_args = metric_args
        ks = [int(k) for key in ("cmc_top_k", "precision_top_k", "map_top_k")
              for k in metric_args.get(key, (1, 5) if key == "cmc_top_k" else (5,))]
        if log_images:
            ks += [_metric_k(worst_metric), n_instances]
        self.top_n = int(top_n) if top_n is not None else max(ks + [1])
        self.distance = distance
        self.log_images = log_images
        self.images = images
        self.worst_metric = worst_metric
        self.figure_args = {"n_queries": n_queries, "n_instances": n_instances, "n_gt": n_gt}
        self.return_only_overall_category = return_only_overall_category
        self.device = device
        self.dataloader_idx = dataloader_idx
        self.last_metrics: Any = None
        self.last_result: Any = None
        self._batches: list[dict[str, np.ndarray]] = []
        self._warned_no_figure_logger = False

    # -- gathering ----------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx != self.dataloader_idx:
            return
        fields = collect_fields(outputs, batch)
        if self.log_images and self.images is None and "paths" not in fields:
            raise ValueError("MetricValCallback(log_images=True) needs images=... or 'paths' in "
                             "the validation outputs or batches")
        self._batches.append(fields)

    # -- the epoch's metrics ------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batches, self._batches = self._batches, []
        if trainer.sanity_checking:
            return  # the sanity check only proves the protocol; its few batches mean nothing
        distributed = trainer.world_size > 1 and is_distributed()
        if distributed:  # a local problem becomes the same error on every process, not a hang
            data, error = None, None
            try:
                data = self._concat(batches) if batches else None
            except ValueError as exc:
                error = str(exc)
            data = gather_validation(data, error=error)  # every process: the whole set, once per idx
        else:
            data = self._concat(batches) if batches else None
        if data is None:
            return
        if distributed:
            res, table = self._evaluate_on_rank_zero(trainer, data)
        else:
            res, table = self._evaluate(data)
        self.last_metrics, self.last_result = table, res
        flat = flat_metrics(table)
        if flat:
            # identical on every process: "max" keeps them exact and spares Lightning's DDP warning
            pl_module.log_dict(flat, on_step=False, on_epoch=True, logger=True, sync_dist=distributed,
                               reduce_fx="max" if distributed else "mean")
        if self.log_images and res is not None:
            self._log_figure(trainer, res, data)

    def _evaluate(self, data: dict[str, Any]) -> tuple[Any, Any]:
        from oml_viz.engine import evaluate

        return evaluate(
            data["embeddings"], data["labels"], data.get("is_query"), data.get("is_gallery"),
            categories=data.get("categories"), sequence=data.get("sequence"), metric_args=self.metric_args,
            top_n=self.top_n, distance=self.distance, device=self.device, progress=False,
            only_overall=self.return_only_overall_category,
        )

    def _evaluate_on_rank_zero(self, trainer: Trainer, data: dict[str, Any]) -> tuple[Any, Any]:
        """Rank 0 computes; every process gets its table (or the same error). Result on rank 0 only."""
        res, outcome, error = None, None, None
        if trainer.global_rank == 0:
            try:
                res, table = self._evaluate(data)
                outcome = ("ok", table)
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every process
                error, outcome = exc, ("error", type(exc).__name__, str(exc))
        outcome = broadcast_object(outcome, src=0)
        if outcome[0] == "error":
            if error is not None:
                raise error
            cls = {"ValueError": ValueError, "TypeError": TypeError}.get(outcome[1], RuntimeError)
            raise cls(f"MetricValCallback (computed on rank 0): {outcome[2]}")
        return res, outcome[1]

    def _concat(self, batches: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        keys = set(batches[0])
        for b in batches[1:]:
            if set(b) != keys:
                raise ValueError(f"validation batches disagree on their keys: {sorted(keys)} vs "
                                 f"{sorted(b)}")
        data = {k: np.concatenate([b[k] for b in batches]) for k in keys}
        if "idx" in data:
            order = np.argsort(data["idx"].astype(np.int64), kind="stable")
            data = {k: v[order] for k, v in data.items()}
        for key in ("is_query", "is_gallery"):
            if key in data:
                data[key] = data[key].astype(bool)
        return data

    def _figure_images(self, data: dict[str, Any]) -> Any:
        if self.images is None:
            return list(data["paths"])
        if "idx" not in data:
            return self.images
        idx = data["idx"].astype(np.int64)
        if hasattr(self.images, "iloc"):  # an OML dataframe: keep its dataset_root etc.
            return self.images.iloc[idx].reset_index(drop=True)
        return [self.images[int(i)] for i in idx]

    def _log_figure(self, trainer: Trainer, res: Any, data: dict[str, Any]) -> None:
        import matplotlib.pyplot as plt

        # render is imported here: plain metrics need no matplotlib
        from oml_viz.render import plot_worst_queries

        loggers = [lg for lg in trainer.loggers if hasattr(lg, "log_figure")]
        if not loggers:
            if not self._warned_no_figure_logger:
                self._warned_no_figure_logger = True
                warnings.warn("MetricValCallback(log_images=True): no logger of this trainer has "
                              "log_figure; use oml_viz.loggers.create_logger", RuntimeWarning)
            return
        fig = plot_worst_queries(res, self._figure_images(data), metric=self.worst_metric,
                                 **self.figure_args)
        try:
            for lg in loggers:
                lg.log_figure(fig, f"worst_queries/{self.worst_metric}", step=trainer.global_step)
        finally:
            plt.close(fig)
