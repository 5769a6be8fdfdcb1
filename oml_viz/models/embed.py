"""Embeddings of many images with any model: batches, a progress bar, float32 (N, D) out.

Images are read with ``oml_viz.data`` (paths, PIL images, arrays, or an OML dataframe with
``path``, optional bbox columns ``x_1, y_1, x_2, y_2`` and ``dataset_root``), resized to the
model's input size and normalised with its own timm data config.

Example:
    >>> import pandas as pd, tempfile, timm
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for name in ("a.png", "b.png", "c.png"):
    ...     Image.new("RGB", (24, 16), "red").save(f"{root}/{name}")
    >>> df = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [0, 0, 1]})
    >>> model = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> emb = extract_embeddings(model, df, batch_size=2, dataset_root=root, input_size=(32, 32), progress=False)
    >>> emb.shape, emb.dtype
    ((3, 512), dtype('float32'))
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from oml_viz.errors import InputValueError
from oml_viz.data.sources import ImageSource
from oml_viz.run_args import check_input_size, resolve_device
from oml_viz.models.preprocess import (
    base_input_size,
    data_config,
    images_to_tensor,
    model_device,
)
from oml_viz.models.state import preserved_state


class _Images(torch.utils.data.Dataset):
    """Decoded, resized, normalised images; holds plain settings (not the model) for workers."""

    def __init__(self, source: ImageSource, cfg: dict, size: tuple[int, int]):
        self.source, self.cfg, self.size = source, cfg, size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> torch.Tensor:
        return images_to_tensor(None, [self.source.image(i)], self.size, self.cfg)[0]


def extract_embeddings(
    model: nn.Module,
    images: Sequence[Any] | Any,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    *,
    dataset_root: str | os.PathLike | None = None,
    input_size: tuple[int, int] | None = None,
    preprocess_model: nn.Module | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Run ``model`` over ``images`` in batches; returns float32 (N, D).

    Args:
        model: any module mapping a (B, 3, H, W) batch to (B, D) embeddings.
        images: paths / PIL images / arrays, or an OML dataframe (``path`` + optional bboxes).
        batch_size: images per forward pass.
        device: where to run; None = where the model is. The model is moved back afterwards,
            and its train/eval mode restored.
        dataset_root: root for relative paths (default: the dataframe's ``attrs``).
        input_size: (H, W) every image is resized to; default the model's own input size.
        preprocess_model: the timm model whose data config normalises inputs (default ``model``).
        num_workers: DataLoader workers for decoding (0 = in this process).
        progress: show a ``tqdm.auto`` bar.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg_model = preprocess_model if preprocess_model is not None else model
    source = ImageSource(images, dataset_root)
    if len(source) == 0:
        raise ValueError("images is empty: there is nothing to embed")
    size = check_input_size(input_size) if input_size is not None else base_input_size(cfg_model)
    home = model_device(model)
    target = resolve_device(device) if device is not None else home  # no CUDA: our error, not torch's
    loader = torch.utils.data.DataLoader(_Images(source, data_config(cfg_model), size), batch_size=batch_size,  # type: ignore[arg-type]
                                         shuffle=False, num_workers=num_workers)
    chunks: list[np.ndarray] = []
    with preserved_state(model):
        model.eval()
        model.to(target)
        try:
            with torch.no_grad(), tqdm(total=len(source), desc="embeddings", unit="img", disable=not progress) as bar:
                for x in loader:
                    out = model(x.to(target))
                    chunks.append(out.detach().float().cpu().numpy().reshape(len(x), -1))
                    bar.update(len(x))
        finally:
            model.to(home)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
