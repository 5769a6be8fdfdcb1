"""oml_viz.models: timm-backed extractors, checkpoints and batched embedding extraction.

Example:
    >>> import numpy as np
    >>> from oml_viz.models import ViTExtractor
    >>> vit = ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    >>> images = [np.zeros((40, 30, 3), np.uint8), np.full((20, 20, 3), 255, np.uint8)]
    >>> emb = vit.extract(images, progress=False)
    >>> emb.shape, emb.dtype
    ((2, 32), dtype('float32'))
"""
from oml_viz.models.checkpoint import (
    load_extractor,
    load_weights,
    read_checkpoint,
    save_extractor,
)
from oml_viz.models.embed import extract_embeddings
from oml_viz.models.extractor import (
    EXTRACTOR_KINDS,
    ResnetExtractor,
    TimmExtractor,
    ViTExtractor,
)
from oml_viz.models.pretrained import efficientnet_lite0

__all__ = [
    "EXTRACTOR_KINDS",
    "ResnetExtractor",
    "TimmExtractor",
    "ViTExtractor",
    "efficientnet_lite0",
    "extract_embeddings",
    "load_extractor",
    "load_weights",
    "read_checkpoint",
    "save_extractor",
]
