"""pytorch-grad-cam internals: the hook holder of a CAM object and its ``uses_gradients`` flag.

``BaseCAM.__exit__`` releases the hooks but swallows ``IndexError``; releasing them directly
(``cam.activations_and_grads.release()``) lets errors through. ``uses_gradients`` is False for
perturbation methods (Score-CAM), which need a reference embedding computed beforehand.

Example:
    >>> import torch, pytorch_grad_cam as pgc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())
    >>> cam = pgc.GradCAM(model=net, target_layers=[net[0]])
    >>> uses_gradients(cam), uses_gradients(pgc.ScoreCAM(model=net, target_layers=[net[0]]))
    (True, False)
    >>> release_hooks(cam)
"""
from __future__ import annotations

from typing import Any


def uses_gradients(cam: Any) -> bool:
    """Whether the CAM method back-propagates (False: it scores perturbed inputs instead)."""
    return bool(getattr(cam, "uses_gradients", True))


def release_hooks(cam: Any) -> None:
    """Remove the forward / backward hooks ``cam`` hung on the model."""
    cam.activations_and_grads.release()
