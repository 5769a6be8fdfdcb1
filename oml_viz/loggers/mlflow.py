"""MLflow backend: Lightning's ``MLFlowLogger`` with a SQLite store by default and per-step figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

from oml_viz.loggers.base import PipelineLoggerMixin
from oml_viz.loggers.local_copy import safe_name

__all__ = ["MLflowPipelineLogger"]


class MLflowPipelineLogger(PipelineLoggerMixin, MLFlowLogger):
    """MLflow run; ``tracking_uri=None`` means ``sqlite:///<save_dir>/mlflow.db``.

    MLflow 3's plain ``file:`` store refuses new writes, hence SQLite; artifacts then go to
    ``<save_dir>/mlartifacts``. Figures are stored as ``figures/<title>/step_<step>.png``, one
    file per step (OML's logger reuses one name and overwrites them).

    Example:
        >>> logger = MLflowPipelineLogger(experiment_name="demo")  # doctest: +SKIP
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
        if not tracking_uri:
            save.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{save / 'mlflow.db'}"
            kwargs.setdefault("artifact_location", (save / "mlartifacts").as_uri())
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri,
                         save_dir=str(save), run_name=run_name, **kwargs)
        self._init_local(save_dir)

    @property
    def tracking_uri(self) -> str:
        """Where the runs are stored (``sqlite:///...`` unless one was given)."""
        return self._tracking_uri

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
