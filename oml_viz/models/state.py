"""Leave the user's model exactly as it was: mode, flags, hooks, gradients, device.

Explainers must switch a model to eval mode, turn off timm's fused attention and hang hooks on
it; grad-cam also calls ``model.eval()`` and ``model.zero_grad()``; embedding extraction moves
the model and switches it to eval mode. :func:`preserved_state` records what matters before
and puts it back afterwards, also when the body raises.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    >>> before = capture_state(model)
    >>> with preserved_state(model):
    ...     _ = model.eval()
    ...     _ = model[0].register_forward_hook(lambda *a: None)
    >>> capture_state(model) == before, model.training
    (True, True)
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from oml_viz.compat.torch import hook_tables


@dataclass(frozen=True)
class ModelState:
    """A comparable record of what explainers could change on a model."""

    training: tuple[tuple[str, bool], ...]
    fused_attn: tuple[tuple[str, bool], ...]
    hooks: tuple[tuple[str, str, tuple[int, ...]], ...]
    requires_grad: tuple[tuple[str, bool], ...]
    devices: tuple[tuple[str, str], ...]
    grad_ids: tuple[tuple[str, int | None], ...]


def capture_state(model: nn.Module) -> ModelState:
    """Record modes, ``fused_attn`` flags, hook ids, parameter flags, devices and grad identities."""
    modules = list(model.named_modules())
    params = list(model.named_parameters())
    return ModelState(
        training=tuple((n, m.training) for n, m in modules),
        fused_attn=tuple((n, bool(m.fused_attn)) for n, m in modules if hasattr(m, "fused_attn")),
        hooks=tuple((n, t, tuple(table)) for n, m in modules for t, table in hook_tables(m)),
        requires_grad=tuple((n, p.requires_grad) for n, p in params),
        devices=tuple((n, str(p.device)) for n, p in params),
        grad_ids=tuple((n, None if p.grad is None else id(p.grad)) for n, p in params),
    )


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model: explainers flip flags and add hooks on the model itself,
    so two threads (a panel's worker and a notebook cell) must not explain it at once."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore train/eval mode of every module, ``fused_attn`` flags, hook tables (hooks added
    inside are removed) and parameter ``.grad`` / ``requires_grad`` on exit, even on error.

    Holds the model's :func:`model_lock` throughout, so calls from several threads take turns.
    """
    with model_lock(model), _restored(model):
        yield


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    modules = list(model.modules())
    training = [(m, m.training) for m in modules]
    fused = [(m, m.fused_attn) for m in modules if hasattr(m, "fused_attn")]
    hooks = [(table, set(table)) for m in modules for _, table in hook_tables(m)]
    params = list(model.parameters())
    grads = [(p, p.grad, p.requires_grad) for p in params]
    try:
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for m, flag in fused:
            m.fused_attn = flag
        for table, keys in hooks:
            for k in [k for k in table if k not in keys]:
                del table[k]
        with torch.no_grad():
            for p, g, rg in grads:
                p.grad = g
                p.requires_grad_(rg)
