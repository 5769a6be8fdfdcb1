"""``create_logger``: a tracker logger from the ``logger:`` block of a pipeline config."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from oml_viz.errors import InputValueError
from oml_viz.loggers._sdk import require

__all__ = ["BACKENDS", "create_logger"]

# name -> (module, class, the SDK module that backend needs)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "tensorboard": ("oml_viz.loggers.tensorboard", "TensorBoardPipelineLogger", "tensorboard"),
    "mlflow": ("oml_viz.loggers.mlflow", "MLflowPipelineLogger", "mlflow"),
    "wandb": ("oml_viz.loggers.wandb", "WandbPipelineLogger", "wandb"),
    "neptune": ("oml_viz.loggers.neptune", "NeptunePipelineLogger", "neptune"),
    "clearml": ("oml_viz.loggers.clearml", "ClearMLPipelineLogger", "clearml"),
}
DEFAULT = "tensorboard"


def create_logger(config: Mapping[str, Any] | None = None) -> Any:
    """Build a logger from ``{"name": ..., "args": {...}}`` (``None`` or ``{}``: TensorBoard).

    Args go to the backend as in OML's configs: ``save_dir`` (all), ``experiment_name`` and
    ``tracking_uri`` (mlflow), ``project`` (wandb, neptune), ``project_name`` and ``task_name``
    (clearml), plus the offline switches ``offline: true`` (wandb), ``mode: offline`` (neptune),
    ``offline_mode: true`` (clearml). Other keys a backend class accepts pass through.

    Raises:
        ValueError: unknown name, unknown arg, or an online backend without credentials.
        ImportError: the backend's SDK (or Lightning) is missing; names the extra to install.

    Example:
        >>> import tempfile
        >>> logger = create_logger({"name": "tensorboard", "args": {"save_dir": tempfile.mkdtemp()}})
        >>> logger.log_metrics({"OVERALL/cmc/1": 0.8}, step=3)
        >>> type(logger).__name__
        'TensorBoardPipelineLogger'
        >>> create_logger({"name": "mlflow", "args": {"experiment": "demo"}})   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        oml_viz.errors.InputValueError: logger.args has unknown key(s) ['experiment'] for 'mlflow'...
    """
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise InputValueError(f"logger config must be a mapping with 'name' and 'args', got {config!r}")
    unknown = set(config) - {"name", "args"}
    if unknown:
        raise InputValueError(f"logger config has unknown key(s) {sorted(unknown)}; "
                         "expected 'name' and 'args'")
    name = str(config.get("name") or DEFAULT).lower()
    if name not in BACKENDS:
        raise InputValueError(f"logger.name {name!r} is not one of {sorted(BACKENDS)}")
    args = config.get("args") or {}
    if not isinstance(args, Mapping):
        raise InputValueError(f"logger.args must be a mapping, got {args!r}")

    module, cls_name, sdk = BACKENDS[name]
    require("lightning.pytorch", name)
    require(sdk, name)
    cls = getattr(import_module(module), cls_name)
    _check_args(cls, name, args)
    return cls(**dict(args))


def _check_args(cls: type, name: str, args: Mapping[str, Any]) -> None:
    """Name an unknown arg now, not as a TypeError from the SDK in the middle of training.

    Accepted: the named parameters of every ``__init__`` in the class's MRO, plus those of the
    SDK call that receives the backend's extra keyword arguments (``cls.sdk_init()``).
    """
    accepted: set[str] = set()
    callables = [k.__dict__["__init__"] for k in cls.__mro__
                 if "__init__" in k.__dict__ and not k.__name__.startswith("_")]
    callables.append(cls.sdk_init())
    for fn in callables:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        accepted |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    accepted.discard("self")
    bad = sorted(set(args) - accepted)
    if bad:
        raise InputValueError(f"logger.args has unknown key(s) {bad} for {name!r}; "
                         f"accepted: {sorted(accepted)}")
