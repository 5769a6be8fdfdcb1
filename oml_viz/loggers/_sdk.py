"""Import a tracker SDK or say which extra installs it."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

from oml_viz.errors import MissingDependencyError

EXTRA_HINT = "pip install 'oml_viz[loggers]'"


def require(module: str, backend: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the backend and the extra.

    Example:
        >>> require("json", "test").dumps([1])
        '[1]'
    """
    try:
        return import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"The {backend!r} logger needs the {module.split('.')[0]!r} package, which is not "
            f"installed: {EXTRA_HINT} (or pip install {module.split('.')[0]})"
        ) from e
