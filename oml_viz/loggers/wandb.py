"""Weights & Biases backend: Lightning's ``WandbLogger`` plus figures, files and a real finish."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from oml_viz.loggers.base import PipelineLoggerMixin

__all__ = ["WandbPipelineLogger", "wandb_has_credentials"]


def wandb_has_credentials() -> bool:
    """An API key in ``WANDB_API_KEY``, an identity token file, or a netrc entry for the host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        return bool(read_netrc_auth(host=host))
    except Exception:  # noqa: BLE001 -- older/newer SDK layout: fall back to the standard netrc file
        import netrc
        from urllib.parse import urlparse

        try:
            return netrc.netrc().authenticators(urlparse(host).hostname or host) is not None
        except (OSError, netrc.NetrcParseError):
            return False


class WandbPipelineLogger(PipelineLoggerMixin, WandbLogger):
    """W&B run under ``<save_dir>/wandb``; ``offline=True`` (or ``WANDB_MODE=offline``) stays local.

    Online use without credentials fails here, at creation, before any training starts.
    Logging after ``finalize`` resumes the same W&B run (same id).
    ``finalize`` finishes the W&B run; W&B's writer process completes the offline
    ``run-<id>.wandb`` file a moment later (``wandb sync <run dir>`` uploads it).

    Example:
        >>> logger = WandbPipelineLogger(project="demo", offline=True)  # doctest: +SKIP
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
            raise ValueError(
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

        # a PIL image keeps wandb from needing plotly for matplotlib figures
        self.experiment.log({title: wandb.Image(_figure_to_pil(fig)), "trainer/global_step": step})

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
        if self._experiment is not None:
            run, self._experiment = self._experiment, None
            # a later use (e.g. trainer.validate after fit) resumes this run, not a new one
            self._id = run.id
            self._wandb_init.update(id=run.id, resume="allow")
            self._guarded("finish", run.finish, exit_code=0 if status == "success" else 1)


def _figure_to_pil(fig: Any) -> Any:
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")
