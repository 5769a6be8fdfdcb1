"""The model-state guard, re-exported: it lives in :mod:`oml_viz.models.state` (extraction uses it too).

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(2, 2).train()
    >>> with preserved_state(lin):
    ...     _ = lin.eval()
    >>> lin.training
    True
"""
from oml_viz.models.state import ModelState, capture_state, model_lock, preserved_state

__all__ = ["ModelState", "capture_state", "model_lock", "preserved_state"]
