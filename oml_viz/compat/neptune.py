"""neptune 1.x internals: the local id of a run.

An offline or debug run has no server id (``sys/id``) until it is synced; the client names its
local folder after the private ``Run._id``, which is what a logger's ``version`` can report.

Example:
    >>> class FakeRun:                        # the attribute the neptune client sets
    ...     _id = "3f2c"
    >>> local_run_id(FakeRun())
    '3f2c'
"""
from __future__ import annotations

from typing import Any


def local_run_id(run: Any) -> str:
    """The client-side id of a ``neptune.Run`` (offline runs get a server id only at sync)."""
    return str(run._id)
