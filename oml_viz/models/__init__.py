"""oml_viz.models: timm-backed extractors, checkpoints and batched embedding extraction.

Example:
    >>> from oml_viz.models import ViTExtractor
    >>> vit = ViTExtractor("vit_tiny_patch16_224", img_size=64, patch_size=8, depth=4)  # doctest: +SKIP
    >>> emb = vit.extract(images)          # float32 (N, 192)                           # doctest: +SKIP
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
