"""ClearML backend: a small Lightning logger over ``clearml.Task``.

``offline_mode=True`` keeps the session local: ClearML writes it under
``$CLEARML_CACHE_DIR/offline/<task id>`` (default ``~/.clearml/cache/offline``) and zips it on
``finalize``; ``Task.import_offline_session(zip)`` uploads it later. The task is created without
framework hooks, resource monitoring, stream capture or repository detection: with ClearML's
defaults, closing an offline task waits up to 300 s for the repository analysis.
"""
from __future__ import annotations

import os
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from oml_viz.errors import InputValueError
from oml_viz.loggers._sdk import require
from oml_viz.loggers.base import PipelineLoggerMixin

__all__ = ["ClearMLPipelineLogger", "clearml_has_credentials"]

# every hook Task.init knows; a key missing from the dict would default to True
_NO_HOOKS = {key: False for key in (
    "matplotlib", "tensorflow", "tensorboard", "pytorch", "xgboost", "scikit", "fastai",
    "lightgbm", "hydra", "detect_repository", "tfdefines", "joblib", "megengine", "catboost",
    "gradio", "jsonargparse",
)}


def clearml_has_credentials() -> bool:
    """Access/secret keys or an auth token, from the environment or ``clearml.conf``."""
    if os.environ.get("CLEARML_AUTH_TOKEN") or (
        os.environ.get("CLEARML_API_ACCESS_KEY") and os.environ.get("CLEARML_API_SECRET_KEY")
    ):
        return True
    from clearml.config import config

    return bool(config.get("api.credentials.access_key", None)
                and config.get("api.credentials.secret_key", None))


def _split(key: str) -> tuple[str, str]:
    """ClearML plots are (title, series): ``OVERALL/cmc/1`` -> (``OVERALL``, ``cmc/1``)."""
    title, _, series = key.partition("/")
    return title, series or title


class _ClearMLCore(Logger):
    """The Lightning-logger part: lazy task, scalars, parameters, close on finalize."""

    def __init__(self, project_name: str, task_name: str, offline_mode: bool,
                 init_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self._clearml = require("clearml", "clearml")
        self._project_name = project_name
        self._task_name = task_name
        self._offline = offline_mode
        self._init_kwargs = init_kwargs
        self._task: Any = None
        self._closed_id: str | None = None

    @property
    def experiment(self) -> Any:
        """The ``clearml.Task`` (created on first use)."""
        if self._task is None:
            if self._closed_id is not None:
                warnings.warn(f"clearml logger: task {self._closed_id} was finalized; logging "
                              "again starts a new task", RuntimeWarning, stacklevel=2)
            Task = self._clearml.Task
            if self._offline:
                Task.set_offline(True)
            kwargs: dict[str, Any] = {
                "reuse_last_task_id": False, "auto_connect_frameworks": dict(_NO_HOOKS),
                "auto_resource_monitoring": False, "auto_connect_streams": False,
                "auto_connect_arg_parser": False,
            }
            kwargs.update(self._init_kwargs)
            self._task = Task.init(project_name=self._project_name, task_name=self._task_name,
                                   **kwargs)
        return self._task

    @property
    def name(self) -> str:
        return self._project_name

    @property
    def version(self) -> str:
        return str(self.experiment.id)

    @property
    def save_dir(self) -> str | None:
        local = getattr(self, "local_dir", None)
        return None if local is None else str(local)

    @property
    def offline_folder(self) -> Path | None:
        """The offline session folder (its zip appears next to it after ``finalize``)."""
        return self.experiment.get_offline_mode_folder() if self._offline else None

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        self.experiment.connect(params, name="config")

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        report = self.experiment.get_logger().report_scalar
        for key, value in metrics.items():
            title, series = _split(key)
            report(title=title, series=series, value=value, iteration=step or 0)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        self._closed_id = str(task.id)
        task.flush(wait_for_uploads=True)
        if status in ("success", "finished"):
            task.mark_completed()
        else:
            task.mark_failed(status_reason=status)
        task.close()


class ClearMLPipelineLogger(PipelineLoggerMixin, _ClearMLCore):
    """ClearML task; ``offline_mode=True`` keeps everything local.

    Args:
        project_name, task_name: as in ``Task.init`` (OML config names).
        offline_mode: no server at all; otherwise credentials must be configured, checked here.
        save_dir: where the local metrics CSV, fallback figures and pipeline files go.

    Scalars ``a/b/c`` become title ``a``, series ``b/c``; figures are debug images, one per
    iteration; pipeline files are artifacts; the config goes to the ``config`` parameter section.

    Example:
        >>> import tempfile
        >>> logger = ClearMLPipelineLogger("demo", "run1", offline_mode=True, save_dir=tempfile.mkdtemp())
        >>> logger.name, logger.backend                  # the task starts on first use
        ('demo', 'clearml')
    """

    backend = "clearml"

    @staticmethod
    def sdk_init() -> Any:
        """The SDK call that receives this logger's extra keyword arguments."""
        from clearml import Task

        return Task.init

    def __init__(
        self,
        project_name: str = "oml_viz",
        task_name: str = "train",
        offline_mode: bool = False,
        save_dir: str = "logs",
        **kwargs: Any,
    ) -> None:
        offline_mode = offline_mode or os.environ.get("CLEARML_OFFLINE_MODE", "").lower() in {
            "1", "true", "yes", "on"}
        require("clearml", "clearml")
        if not offline_mode and not clearml_has_credentials():
            raise InputValueError("clearml logger: no ClearML credentials (run `clearml-init` or set "
                             "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY), or set "
                             "args.offline_mode: true to log locally")
        super().__init__(project_name, task_name, offline_mode, kwargs)
        self._init_local(save_dir)

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        from oml_viz.render.figure import figure_to_array

        t, series = _split(title)
        rgb = figure_to_array(fig)
        # a negative history keeps every step's image (ClearML's default recycles file names)
        self.experiment.get_logger().report_image(
            title=t, series=series, iteration=step, image=rgb, max_image_history=-1)

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        if flat_cfg:
            self.log_hyperparams(flat_cfg)
        if tags:
            self.experiment.add_tags(tags)
        for key, path in files.items():
            self.experiment.upload_artifact(key, artifact_object=path, wait_on_upload=True)
