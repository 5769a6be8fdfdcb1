"""Weights & Biases backend: Lightning's ``WandbLogger`` plus figures, files and a real finish."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from oml_viz.errors import InputValueError
from oml_viz.compat.lightning import detach_wandb_run, wandb_run
from oml_viz.compat.wandb import netrc_has_key
from oml_viz.loggers.base import PipelineLoggerMixin

__all__ = ["WandbPipelineLogger", "wandb_has_credentials"]


def wandb_has_credentials() -> bool:
    """An API key in ``WANDB_API_KEY``, an identity token file, or a netrc entry for the host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    return netrc_has_key(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))


class WandbPipelineLogger(PipelineLoggerMixin, WandbLogger):
    """W&B run under ``<save_dir>/wandb``; ``offline=True`` (or ``WANDB_MODE=offline``) stays local.

    Online use without credentials fails here, at creation, before any training starts.
    Logging after ``finalize`` resumes the same W&B run (same id).
    ``finalize`` finishes the W&B run; W&B's writer process completes the offline
    ``run-<id>.wandb`` file a moment later (``wandb sync <run dir>`` uploads it).

    Example:
        >>> import tempfile
        >>> logger = WandbPipelineLogger(project="demo", offline=True, save_dir=tempfile.mkdtemp())
        >>> logger.backend, logger.metrics_csv.name      # no run is started until the first use
        ('wandb', 'metrics.csv')
    """

    backend = "wandb"

    @staticmethod
    def sdk_init() -> Any:
        """The SDK call that receives this logger's extra keyword arguments."""
        import wandb

        return wandb.init

    def __init__(
        self,
        project: str = "oml_viz",
        save_dir: str = "logs",
        offline: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        mode = os.environ.get("WANDB_MODE", "").lower()
        local = offline or mode in {"offline", "disabled", "dryrun"}
        if not local and not wandb_has_credentials():
            raise InputValueError(
                "wandb logger: no W&B credentials (set WANDB_API_KEY or run `wandb login`), "
                "or set args.offline: true to log locally"
            )
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        if offline:  # wandb's own switch; Lightning's offline=True sets WANDB_MODE process-wide
            kwargs.setdefault("mode", "offline")
        super().__init__(project=project, save_dir=save_dir, name=name, **kwargs)
        self._init_local(save_dir)

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        import wandb

        from oml_viz.render.figure import figure_to_array

        # pixels keep wandb from needing plotly for matplotlib figures
        self.experiment.log({title: wandb.Image(figure_to_array(fig)), "trainer/global_step": step})

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        run = self.experiment
        if flat_cfg:
            run.config.update(flat_cfg, allow_val_change=True)
        if tags:
            run.tags = tuple(dict.fromkeys([*(run.tags or ()), *tags]))
        for path in files.values():
            run.save(str(path), base_path=str(path.parent), policy="now")

    def finalize(self, status: str = "success") -> None:
        super().finalize(status)  # Lightning's: logs checkpoints on success
        run = wandb_run(self)
        if run is not None:
            # a later use (e.g. trainer.validate after fit) resumes this run, not a new one
            detach_wandb_run(self, resume_id=run.id)
            self._guarded("finish", run.finish, exit_code=0 if status == "success" else 1)

