"""MLflow backend: Lightning's ``MLFlowLogger`` with a SQLite store by default and per-step figures."""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import MLFlowLogger

from oml_viz.compat.lightning import mlflow_tracking_uri
from oml_viz.loggers.base import PipelineLoggerMixin
from oml_viz.loggers.local_copy import safe_name

__all__ = ["MLflowPipelineLogger", "allow_file_store"]

_FILE_STORE_NOTED: set[str] = set()


@contextmanager
def allow_file_store(tracking_uri: str | None) -> Iterator[None]:
    """Let MLflow open a ``file:`` store inside this block only (MLflow 3 refuses it otherwise).

    ``MLFLOW_ALLOW_FILE_STORE`` is set for the block and restored after; MLflow keeps the store
    it opened (cached per URI), so later calls on it need nothing. Other URIs: no change.

    Example:
        >>> before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
        >>> with allow_file_store("file:./ml-runs"):
        ...     os.environ["MLFLOW_ALLOW_FILE_STORE"]
        'true'
        >>> os.environ.get("MLFLOW_ALLOW_FILE_STORE") == before
        True
    """
    if not _is_file_uri(tracking_uri):
        yield
        return
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def _is_file_uri(uri: str | None) -> bool:
    """``file:...`` or a bare path (which MLflow also opens as a file store)."""
    if not uri:
        return False
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive


class MLflowPipelineLogger(PipelineLoggerMixin, MLFlowLogger):
    """MLflow run; ``tracking_uri=None`` means ``MLFLOW_TRACKING_URI`` if set, else
    ``sqlite:///<save_dir>/mlflow.db``.

    A ``file:`` URI (OML's documented ``file:./ml-runs``) logs to that folder: MLflow 3 refuses
    that store unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so it is allowed for this logger's
    store only (:func:`allow_file_store`), with one warning that SQLite is MLflow's
    recommended store.

    MLflow 3's plain ``file:`` store refuses new writes, hence SQLite; artifacts then go to
    ``<save_dir>/mlartifacts``. Figures are stored as ``figures/<title>/step_<step>.png``, one
    file per step (OML's logger reuses one name and overwrites them).

    Example:
        >>> import tempfile
        >>> logger = MLflowPipelineLogger(experiment_name="demo", save_dir=tempfile.mkdtemp())
        >>> logger.tracker_key("OVERALL/fnmr@fmr/0.1")
        'OVERALL/fnmr_at_fmr/0.1'
    """

    backend = "mlflow"

    @staticmethod
    def tracker_key(key: str) -> str:
        """MLflow forbids ``@`` in metric names and Lightning would silently drop it
        (``fnmr@fmr/0.1`` -> ``fnmrfmr/0.1``): spell it ``fnmr_at_fmr/0.1`` instead."""
        return key.replace("@", "_at_")

    @staticmethod
    def sdk_init() -> Any:
        """The SDK call that receives this logger's extra keyword arguments."""
        return MLFlowLogger.__init__

    def __init__(
        self,
        experiment_name: str = "oml_viz",
        tracking_uri: str | None = None,
        save_dir: str = "logs",
        run_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        save = Path(save_dir).resolve()
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if not tracking_uri:
            save.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{save / 'mlflow.db'}"
            kwargs.setdefault("artifact_location", (save / "mlartifacts").as_uri())
        if _is_file_uri(tracking_uri):
            _note_file_store(tracking_uri)
        with allow_file_store(tracking_uri):
            super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri,
                             save_dir=str(save), run_name=run_name, **kwargs)
            if _is_file_uri(tracking_uri):  # open (and cache) the store while it is allowed
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri).search_experiments(max_results=1)
        self._init_local(save_dir)

    @property
    def experiment(self) -> Any:
        """The ``MlflowClient`` (Lightning's; creates the experiment and run on first use)."""
        with allow_file_store(self.tracking_uri):
            return super().experiment

    @property
    def tracking_uri(self) -> str:
        """Where the runs are stored (``sqlite:///...`` unless one was given)."""
        return mlflow_tracking_uri(self)

    def finalize(self, status: str = "success") -> None:
        with allow_file_store(self.tracking_uri):
            super().finalize(status)

    def _log_figure(self, fig: Any, title: str, step: int) -> None:
        name = f"figures/{safe_name(title)}/step_{step:06d}.png"
        self.experiment.log_figure(self.run_id, fig, artifact_file=name)

    def _log_pipeline_info(self, flat_cfg: dict[str, Any], files: dict[str, Path],
                           tags: list[str]) -> None:
        if flat_cfg:
            self.log_hyperparams(flat_cfg)
        for tag in tags:
            self.experiment.set_tag(self.run_id, tag, "true")
        for path in files.values():
            self.experiment.log_artifact(self.run_id, str(path), artifact_path="pipeline")


def _note_file_store(tracking_uri: str) -> None:
    """One warning per URI and process: MLflow recommends a database store."""
    if tracking_uri in _FILE_STORE_NOTED:
        return
    _FILE_STORE_NOTED.add(tracking_uri)
    warnings.warn(
        f"mlflow logger: logging to the file store {tracking_uri!r} as configured; MLflow keeps "
        "it in maintenance mode and recommends SQLite (tracking_uri: 'sqlite:///mlflow.db', or "
        "leave tracking_uri out for <save_dir>/mlflow.db)",
        UserWarning, stacklevel=3,
    )
