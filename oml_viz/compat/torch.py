"""torch internals: the per-module hook tables of ``torch.nn.Module``.

torch has no public way to list or remove the hooks a module holds; :func:`hook_tables` reads
the private ``OrderedDict`` s (``_forward_hooks``, ...) so that explainers can put a model's hooks
back exactly as they found them.

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(2, 2)
    >>> h = lin.register_forward_hook(lambda *a: None)
    >>> [name for name, table in hook_tables(lin) if table]
    ['_forward_hooks']
    >>> h.remove()
"""
from __future__ import annotations

from torch import nn

# Every per-module hook table of torch.nn.Module (the set differs a little across torch versions).
HOOK_TABLES: tuple[str, ...] = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)


def hook_tables(module: nn.Module) -> list[tuple[str, dict]]:
    """``(name, table)`` for each hook table ``module`` has; a table maps hook id -> hook."""
    out = []
    for name in HOOK_TABLES:
        table = getattr(module, name, None)
        if isinstance(table, dict):
            out.append((name, table))
    return out
