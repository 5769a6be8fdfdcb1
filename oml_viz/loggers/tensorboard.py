"""TensorBoard backend: Lightning's ``TensorBoardLogger`` plus figures and pipeline info."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger

from oml_viz.loggers.base import PipelineLoggerMixin

__all__ = ["TensorBoardPipelineLogger"]


class TensorBoardPipelineLogger(PipelineLoggerMixin, TensorBoardLogger):
    """Event files under ``<save_dir>/<name>/version_N``; figures with ``add_figure`` per step.

    Pipeline files (source zip, config, dataframe) are copied into ``<log_dir>/artifacts`` and
    the tags and config are logged as text; the flattened config also goes to ``hparams``.

    Example:
        >>> import tempfile
        >>> logger = TensorBoardPipelineLogger(save_dir=tempfile.mkdtemp())
        >>> logger.log_metrics({"OVERALL/map/5": 0.5}, step=1)
        >>> Path(logger.log_dir).name, logger.artifact_dir.name
        ('version_0', 'artifacts')
    """

    backend = "tensorboard"

    @staticmethod
    def sdk_init() -> Any:
        """The SDK call that receives this logger's extra keyword arguments."""
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter.__init__

    def __init__(self, save_dir: str = "logs", name: str = "oml_viz", **kwargs: Any) -> None:
        kwargs.setdefault("default_hp_metric", False)  # no placeholder -1 metric
        super().__init__(save_dir=save_dir, name=name, **kwargs)
        self._init_local(save_dir)

    @property
    def artifact_dir(self) -> Path:
        return Path(self.log_dir) / "artifacts"

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        self.experiment.add_figure(title, fig, global_step=step, close=False)

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        if flat_cfg:
            self.log_hyperparams(flat_cfg)
        self.experiment.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flat_cfg.items()))
        if tags:
            self.experiment.add_text("tags", ", ".join(tags))
        for path in files.values():  # already inside log_dir unless artifact_dir was changed
            dest = self.artifact_dir / path.name
            if path.resolve() != dest.resolve():
                shutil.copy2(path, dest)
        self.experiment.flush()
