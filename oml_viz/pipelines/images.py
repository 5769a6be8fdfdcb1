"""The rows of an OML dataframe as normalised image tensors, for training and extraction.

Images are decoded once (bbox-cropped, resized to the model's input size, normalised with the
model's own timm data config) and kept in memory: small demo-sized datasets are then read from
disk once per run instead of once per epoch.

Example:
    >>> import timm
    >>> df = pd.DataFrame({"path": [np.zeros((20, 30, 3), np.uint8)] * 3, "label": ["b", "a", "b"]})
    >>> model = timm.create_model("resnet18", num_classes=0, pretrained=False)
    >>> ds = ImageTensors(df, model, (64, 64))
    >>> x, label = ds[2]
    >>> tuple(x.shape), int(label), ds.label_codes.tolist()
    ((3, 64, 64), 0, [0, 1, 0])
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from oml_viz.data.sources import ImageSource
from oml_viz.models.preprocess import images_to_tensor


class ImageTensors(torch.utils.data.Dataset):
    """``(x (3, H, W) float32, label code int64)`` per dataframe row, decoded lazily then cached.

    ``label_codes`` maps the dataframe's labels (any hashable) to 0..L-1 in order of appearance.
    ``hflip=True`` flips each sample horizontally with probability 1/2 (train-time augmentation).
    """

    def __init__(self, df: pd.DataFrame, model: nn.Module, size: tuple[int, int],
                 dataset_root: str | os.PathLike | None = None, hflip: bool = False):
        self.source = ImageSource(df, dataset_root)
        self.model = model
        self.size = (int(size[0]), int(size[1]))
        lookup: dict[Any, int] = {}
        self.label_codes = np.array([lookup.setdefault(v, len(lookup)) for v in df["label"].tolist()],
                                    dtype=np.int64)
        self.hflip = hflip
        self._cache: list[torch.Tensor | None] = [None] * len(df)

    def __len__(self) -> int:
        return len(self._cache)

    def tensor(self, i: int) -> torch.Tensor:
        x = self._cache[i]
        if x is None:
            x = images_to_tensor(self.model, [self.source.image(i)], self.size)[0]
            self._cache[i] = x
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tensor(int(i))
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, torch.tensor(self.label_codes[int(i)])
