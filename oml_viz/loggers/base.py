"""What every oml_viz logger adds on top of a plain Lightning logger.

:class:`PipelineLoggerMixin` goes first in a backend class's bases, before a Lightning
``Logger`` (Lightning's own backend class where that works, or a small core class of ours):

- ``log_metrics`` first appends every value to ``<save_dir>/metrics.csv`` (see
  :class:`~oml_viz.loggers.local_copy.MetricsCSV`), then hands it to the tracker;
- a tracker call that raises is reported once with a ``RuntimeWarning`` and the tracker is switched
  off for the rest of the run (no repeated network timeouts); the CSV keeps every number and
  figures are saved as PNG files under ``<save_dir>/figures/`` instead;
- ``log_figure(fig, title, step)`` keeps one image per (title, step): nothing is overwritten;
- ``log_pipeline_info(cfg, dataframe=None, tags=())`` logs the flattened config, a zip of the
  ``oml_viz`` package's source, the dataframe as CSV and the tags. The files are written to
  :attr:`artifact_dir` first, so a local copy stays even when the tracker only references them.

Backends implement ``_log_figure`` and ``_log_pipeline_info``; metrics and ``finalize`` come from
the Lightning class below the mixin.
"""
from __future__ import annotations

import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.utilities import rank_zero_only

from oml_viz.loggers.flatten import flatten_config
from oml_viz.loggers.local_copy import MetricsCSV, safe_name

__all__ = ["PipelineLoggerMixin", "package_source_zip"]


def package_source_zip(path: str | Path) -> Path:
    """Zip the ``oml_viz`` package's ``.py`` and ``.yaml`` files to ``path`` (for reproducibility)."""
    import oml_viz

    root = Path(oml_viz.__file__).resolve().parent
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(root.rglob("*")):
            if file.suffix in {".py", ".yaml", ".yml"} and "__pycache__" not in file.parts:
                zf.write(file, file.relative_to(root.parent).as_posix())
    return path


def _to_float(key: str, value: Any) -> float:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metric {key!r} must be a number, got {value!r}") from e


def _as_tags(tags: str | Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    out = [str(t) for t in tags]
    if any(not t for t in out):
        raise ValueError(f"tags must be non-empty strings, got {list(tags)!r}")
    return out


class PipelineLoggerMixin:
    """Local CSV copy, failure isolation, figures and pipeline info (see the module docstring)."""

    backend: str = "?"

    def _init_local(self, save_dir: str | Path) -> None:
        self.local_dir = Path(save_dir)
        self.run_label = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._csv = MetricsCSV(self.local_dir / "metrics.csv", run=self.run_label)
        self.backend_failed = False

    @property
    def metrics_csv(self) -> Path:
        """The local CSV copy of every logged metric (columns ``time,run,step,key,value``)."""
        return self._csv.path

    @property
    def artifact_dir(self) -> Path:
        """Where :meth:`log_pipeline_info` writes its files before handing them to the tracker."""
        return self.local_dir / "artifacts" / self.run_label

    # -- failure isolation --------------------------------------------------------------------
    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run a tracker call; on the first error warn, switch the tracker off and return False."""
        if self.backend_failed:
            return False
        try:
            fn(*args, **kwargs)
            return True
        except Exception as e:  # noqa: BLE001 -- any SDK or network error: the run itself must go on
            if self.backend_failed:  # a nested guarded call has already warned
                return False
            self.backend_failed = True
            warnings.warn(
                f"{self.backend} logger failed in {what} ({type(e).__name__}: {e}); it is switched "
                f"off for the rest of this run. Metrics go on to {self.metrics_csv} and figures "
                f"to {self.local_dir / 'figures'}.",
                RuntimeWarning,
                stacklevel=3,
            )
            return False

    # -- metrics ------------------------------------------------------------------------------
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log scalars (CSV copy first, then the tracker). Values may be 0-d tensors."""
        floats = {str(k): _to_float(k, v) for k, v in metrics.items()}
        self._csv.write(floats, step)
        tracked = {self.tracker_key(k): v for k, v in floats.items()}
        self._guarded("log_metrics", super().log_metrics, tracked, step)  # type: ignore[misc]

    @staticmethod
    def tracker_key(key: str) -> str:
        """The name a metric gets in the tracker (the CSV copy keeps ``key`` as it is)."""
        return key

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guarded("log_hyperparams", super().log_hyperparams, params, *args, **kwargs)  # type: ignore[misc]

    @rank_zero_only
    def save(self) -> None:
        self._guarded("save", super().save)  # type: ignore[misc]

    # -- figures ------------------------------------------------------------------------------
    @rank_zero_only
    def log_figure(self, fig: Any, title: str, step: int | None = None) -> None:
        """Log a matplotlib figure as an image for ``step``; one image per (title, step).

        Example:
            >>> import tempfile
            >>> from matplotlib.figure import Figure
            >>> from oml_viz.loggers import create_logger
            >>> logger = create_logger({"name": "tensorboard", "args": {"save_dir": tempfile.mkdtemp()}})
            >>> fig = Figure(figsize=(1, 1))
            >>> logger.log_figure(fig, "worst_queries/map/5", step=3)
            >>> logger.save_figure_locally(fig, "worst_queries/map/5", 3).name   # the fallback's file name
            'worst_queries_map_5_step000003.png'
        """
        if not hasattr(fig, "savefig"):
            raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
        if not isinstance(title, str) or not title:
            raise ValueError(f"title must be a non-empty string, got {title!r}")
        step = 0 if step is None else int(step)
        if not self._guarded("log_figure", self._log_figure, fig, title, step):
            self.save_figure_locally(fig, title, step)

    def save_figure_locally(self, fig: Any, title: str, step: int) -> Path:
        path = self.local_dir / "figures" / f"{safe_name(title)}_step{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        return path

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        raise NotImplementedError

    # -- pipeline info ------------------------------------------------------------------------
    @rank_zero_only
    def log_pipeline_info(
        self,
        cfg: Mapping[str, Any] | None,
        dataframe: Any = None,
        tags: str | Iterable[str] | None = (),
    ) -> None:
        """Log the config (flattened), the package source (zip), the dataframe (CSV) and tags.

        Args:
            cfg: the pipeline config (nested mapping), or None.
            dataframe: a pandas DataFrame (e.g. the OML dataframe the run used), or None.
            tags: a tag or an iterable of tags.
        """
        flat = flatten_config(cfg)
        tag_list = _as_tags(tags)
        if dataframe is not None and not hasattr(dataframe, "to_csv"):
            raise ValueError(f"dataframe must be a pandas DataFrame, got {type(dataframe).__name__}")
        out = self.artifact_dir
        out.mkdir(parents=True, exist_ok=True)
        files = {"source_code": package_source_zip(out / "source_code.zip")}
        files["config"] = out / "config.yaml"
        files["config"].write_text(_config_yaml(cfg, flat))
        if dataframe is not None:
            files["dataframe"] = out / "dataframe.csv"
            dataframe.to_csv(files["dataframe"], index=False)
        self._guarded("log_pipeline_info", self._log_pipeline_info, flat, files, tag_list)

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        raise NotImplementedError

    # -- end of run ---------------------------------------------------------------------------
    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Close the run (flushes offline files). ``status``: ``success``, ``failed``, ...

        Lightning calls this at the end of every ``fit``/``validate``. Logging afterwards goes on
        in the same run for TensorBoard, MLflow and W&B (resumed by id); Neptune and ClearML
        start a new run and warn. The local CSV keeps one ``run`` label for the logger's life.
        """
        self._guarded("finalize", super().finalize, status)  # type: ignore[misc]


def _config_yaml(cfg: Mapping[str, Any] | None, flat: dict[str, Any]) -> str:
    """The config as YAML; the flat string version when it holds objects YAML cannot write."""
    try:
        return yaml.safe_dump(dict(cfg or {}), sort_keys=False)
    except yaml.YAMLError:
        return yaml.safe_dump(flat, sort_keys=False)
