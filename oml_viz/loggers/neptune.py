"""Neptune backend: a small Lightning logger over the ``neptune`` 1.x client.

Lightning's ``NeptuneLogger`` now always raises (the service was sunset for its version), so
this class talks to ``neptune.init_run`` directly. ``mode="offline"`` writes to
``./.neptune/offline/run__<id>...`` (Neptune's fixed place, relative to the working directory;
``neptune sync`` uploads it later).
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
from oml_viz.compat.neptune import local_run_id
from oml_viz.loggers._sdk import require
from oml_viz.loggers.base import PipelineLoggerMixin

__all__ = ["NeptunePipelineLogger"]

_LOCAL_MODES = {"offline", "debug", "read-only"}


class _NeptuneCore(Logger):
    """The Lightning-logger part: lazy run, metrics as float series, params under ``parameters``."""

    def __init__(self, project: str | None, api_token: str | None, mode: str | None,
                 name: str | None, init_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self._neptune = require("neptune", "neptune")
        self._project = project
        self._api_token = api_token
        self._mode = mode
        self._name = name
        self._init_kwargs = init_kwargs
        self._run: Any = None
        self._stopped_id: str | None = None

    @property
    def experiment(self) -> Any:
        """The ``neptune.Run`` (created on first use)."""
        if self._run is None:
            if self._stopped_id is not None:
                warnings.warn(f"neptune logger: run {self._stopped_id} was finalized; logging "
                              "again starts a new run", RuntimeWarning, stacklevel=2)
            # source code is logged explicitly by log_pipeline_info
            kwargs: dict[str, Any] = {
                "capture_hardware_metrics": False, "capture_stdout": False,
                "capture_stderr": False, "capture_traceback": False, "git_ref": False,
                "source_files": [],
            }
            kwargs.update(self._init_kwargs)
            self._run = self._neptune.init_run(
                project=self._project, api_token=self._api_token, mode=self._mode,
                name=self._name, **kwargs,
            )
        return self._run

    @property
    def name(self) -> str:
        return self._name or "oml_viz"

    @property
    def version(self) -> str:
        if self._mode in _LOCAL_MODES:
            return local_run_id(self.experiment)  # offline runs get their server id only at sync
        return str(self.experiment["sys/id"].fetch())

    @property
    def save_dir(self) -> str | None:
        local = getattr(self, "local_dir", None)
        return None if local is None else str(local)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        from neptune.utils import stringify_unsupported

        params = vars(params) if isinstance(params, Namespace) else dict(params)
        for key, value in params.items():
            self.experiment[f"parameters/{key}"] = stringify_unsupported(value)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.experiment[key].append(value, step=step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is not None:
            if status not in ("success", "finished"):
                self._run["sys/failed"] = True
            self._stopped_id = local_run_id(self._run)
            self._run.stop()
            self._run = None


class NeptunePipelineLogger(PipelineLoggerMixin, _NeptuneCore):
    """Neptune run; ``mode="offline"`` keeps everything local.

    Args:
        project: ``"workspace/project"`` (or ``NEPTUNE_PROJECT``); required unless offline.
        api_token: or ``NEPTUNE_API_TOKEN``; required unless offline.
        mode: ``"async"`` (Neptune's default), ``"sync"``, ``"offline"``, ``"debug"``.
        save_dir: where the local metrics CSV, fallback figures and pipeline files go.
        name: the run's name.

    Figures are a ``FileSeries`` (one image per step); pipeline files are uploaded under
    ``pipeline/``; the config under ``parameters/``; tags to ``sys/tags``.

    Example:
        >>> import tempfile
        >>> logger = NeptunePipelineLogger(project="ws/demo", mode="offline", save_dir=tempfile.mkdtemp())
        >>> logger.name, logger.backend                  # the run starts on first use
        ('oml_viz', 'neptune')
        >>> NeptunePipelineLogger(project="ws/demo", mode="async")   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        oml_viz.errors.InputValueError: neptune logger: no API token (set NEPTUNE_API_TOKEN or ...
    """

    backend = "neptune"

    @staticmethod
    def sdk_init() -> Any:
        """The SDK call that receives this logger's extra keyword arguments."""
        import neptune

        return neptune.init_run

    def __init__(
        self,
        project: str | None = None,
        api_token: str | None = None,
        mode: str | None = None,
        save_dir: str = "logs",
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        mode = mode or os.environ.get("NEPTUNE_MODE") or "async"
        if mode not in _LOCAL_MODES:
            if not (api_token or os.environ.get("NEPTUNE_API_TOKEN")):
                raise InputValueError("neptune logger: no API token (set NEPTUNE_API_TOKEN or "
                                 "args.api_token), or set args.mode: offline to log locally")
            if not (project or os.environ.get("NEPTUNE_PROJECT")):
                raise InputValueError("neptune logger: args.project ('workspace/project') is required "
                                 "unless args.mode is offline")
        super().__init__(project, api_token, mode, name, kwargs)
        self._init_local(save_dir)

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        from neptune.types import File

        self.experiment[title].append(File.as_image(fig), step=step)

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        if flat_cfg:
            self.log_hyperparams(flat_cfg)
        if tags:
            self.experiment["sys/tags"].add(tags)
        for key, path in files.items():
            self.experiment[f"pipeline/{key}"].upload(str(path), wait=False)
