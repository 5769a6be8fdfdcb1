"""Lightning internals of its logger classes, which oml_viz's backends subclass.

- ``WandbLogger``: ``_experiment`` (the live run, None after finish), ``_id`` and
  ``_wandb_init`` (the kwargs of the next ``wandb.init``), to resume the same run after
  ``finalize``;
- ``MLFlowLogger``: ``_tracking_uri``, which Lightning keeps but does not expose.

Example:
    >>> class FakeWandbLogger:                 # what Lightning's WandbLogger holds
    ...     _experiment, _id, _wandb_init = "run", None, {}
    >>> logger = FakeWandbLogger()
    >>> detach_wandb_run(logger, resume_id="abc1")
    'run'
    >>> logger._experiment, logger._id, logger._wandb_init
    (None, 'abc1', {'id': 'abc1', 'resume': 'allow'})
"""
from __future__ import annotations

from typing import Any


def wandb_run(logger: Any) -> Any:
    """The W&B run a Lightning ``WandbLogger`` holds, or None (not started / finished)."""
    return logger._experiment


def detach_wandb_run(logger: Any, resume_id: str) -> Any:
    """Forget the logger's run and make its next use resume run ``resume_id``; returns the run."""
    run, logger._experiment = logger._experiment, None
    logger._id = resume_id
    logger._wandb_init.update(id=resume_id, resume="allow")
    return run


def mlflow_tracking_uri(logger: Any) -> str:
    """The tracking URI a Lightning ``MLFlowLogger`` was created with."""
    return str(logger._tracking_uri)
