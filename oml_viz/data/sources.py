"""One way to reach the N images behind a RetrievalResult, whatever the user handed in.

``images`` may be a sequence of paths / PIL images / arrays, or an OML dataframe (its ``path``
column relative to ``dataset_root``, its bbox columns). :class:`ImageSource` gives, per item,
a thumbnail that fits a square box, cached for files; a missing or broken file gives a
:class:`Thumbnail` whose ``error`` names the problem instead of raising, so one bad file never
kills a figure.

Example:
    >>> src = ImageSource([np.zeros((300, 200, 3), np.uint8), "no/such/file.png"])
    >>> th = src.thumbnail(0, 128)
    >>> th.array.shape, th.error
    ((128, 85, 3), None)
    >>> bad = src.thumbnail(1, 128)
    >>> bad.array is None, "no/such/file.png" in bad.error
    (True, True)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from .cache import ThumbnailCache, default_cache
from .dataframe import BBOX_COLUMNS, resolve_path
from .images import BBox, ImageLoadError, array_to_rgb, crop_box, open_image, pil_to_rgb

# What PIL raises for broken files (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError)

BBoxMode = Literal["crop", "draw", "ignore"]
BBOX_MODES = ("crop", "draw", "ignore")


@dataclass(frozen=True)
class Thumbnail:
    """An RGB uint8 image no larger than the requested box, or the reason there is none.

    ``bbox`` is the item's box in thumbnail pixels when ``bbox_mode="draw"`` (else None).
    """

    array: np.ndarray | None
    bbox: tuple[int, int, int, int] | None = None
    error: str | None = None
    source: str = ""


def _fit(im: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(im.width, im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    if size == im.size:
        return im
    if scale > 1:  # small images (e.g. 28 px) stay crisp rather than blurred
        return im.resize(size, Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR)
    return im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def make_thumbnail(im: Image.Image, max_side: int, bbox: BBox | None, bbox_mode: BBoxMode) -> Thumbnail:
    """Thumbnail of an already opened image (any mode) with the bbox handled per ``bbox_mode``."""
    full_size = im.size
    if bbox is not None and bbox_mode == "crop":
        im = im.crop(crop_box(im.width, im.height, bbox))
    im = _fit(pil_to_rgb(im), max_side)
    th_bbox = None
    if bbox is not None and bbox_mode == "draw":
        box = crop_box(full_size[0], full_size[1], bbox)
        sx, sy = im.width / full_size[0], im.height / full_size[1]
        th_bbox = (int(box[0] * sx), int(box[1] * sy),
                   max(int(box[0] * sx) + 1, round(box[2] * sx)),
                   max(int(box[1] * sy) + 1, round(box[3] * sy)))
    return Thumbnail(np.asarray(im, dtype=np.uint8), th_bbox)


def _thumb_from_file(path: Path, max_side: int, bbox: BBox | None, bbox_mode: BBoxMode) -> Thumbnail:
    try:
        im = Image.open(path)
        if im.format == "JPEG" and (bbox is None or bbox_mode != "crop"):
            orig_width = im.size[0]
            im.draft("RGB", (max_side, max_side))  # decode at reduced scale: much faster for big JPEGs
            if bbox is not None:
                f = im.size[0] / orig_width  # draft() shrinks by a power of two; bring the box along
                bbox = tuple(round(v * f) for v in bbox)  # type: ignore[assignment]
        im.load()
    except FileNotFoundError:
        return Thumbnail(None, error=f"missing file\n{os.path.abspath(path)}", source=str(path))
    except _PIL_ERRORS as e:
        return Thumbnail(None, error=f"unreadable image\n{path.name}\n{type(e).__name__}", source=str(path))
    try:
        th = make_thumbnail(im, max_side, bbox, bbox_mode)
    except ValueError as e:
        return Thumbnail(None, error=f"bad bbox\n{path.name}\n{e}", source=str(path))
    return Thumbnail(th.array, th.bbox, None, str(path))


class ImageSource:
    """The N images of a dataset, reachable by item id, from a list or an OML dataframe.

    Args:
        images: a sequence of paths / PIL images / arrays, or an OML dataframe.
        dataset_root: the root for relative paths (default: ``df.attrs["dataset_root"]``).
        bboxes: optional per-item (x_1, y_1, x_2, y_2) or None; taken from the dataframe's
            bbox columns when ``images`` is one.
        cache: the thumbnail cache (default: the process-wide one). Files are keyed by path,
            modification time and size, so an edited file is read again.
    """

    warned_unrooted = False  # set once a figure has warned about relative paths without a root

    def __init__(
        self,
        images: Sequence[Any] | pd.DataFrame,
        dataset_root: str | os.PathLike | None = None,
        *,
        bboxes: Sequence[BBox | None] | None = None,
        cache: ThumbnailCache | None = None,
    ):
        self.cache = cache if cache is not None else default_cache()
        # Paths are resolved and bboxes parsed per item, on demand: a figure shows ~50 of maybe 100k.
        self._bbox_table: np.ndarray | None = None
        self._bbox_list: list[BBox | None] | None = None
        if isinstance(images, pd.DataFrame):
            if "path" not in images.columns:
                raise ValueError("images: the dataframe has no 'path' column")
            self._root = dataset_root if dataset_root is not None else images.attrs.get("dataset_root")
            self._items: list[Any] = images["path"].tolist()
            if bboxes is None and all(c in images.columns for c in BBOX_COLUMNS):
                table = images[list(BBOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
                self._bbox_table = table.to_numpy(dtype=np.float64)
        elif isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim < 3
        ):
            # a (N, H, W) or (N, H, W, C) array is N images; anything smaller is one image
            raise TypeError("images must hold N images (a sequence, an (N, H, W[, C]) array or a dataframe), "
                            f"got a single {type(images).__name__}")
        else:
            self._root = dataset_root
            self._items = list(images)
        if bboxes is not None:
            self._bbox_list = list(bboxes)
            if len(self._bbox_list) != len(self._items):
                raise ValueError(f"bboxes has {len(self._bbox_list)} entries for {len(self._items)} images")

    def __len__(self) -> int:
        return len(self._items)

    def item(self, i: int) -> Any:
        """Item ``i``: a resolved Path, or the PIL image / array as given."""
        raw = self._items[i]
        return resolve_path(raw, self._root) if isinstance(raw, (str, os.PathLike)) else raw

    @property
    def items(self) -> list[Any]:
        """All items (paths resolved)."""
        return [self.item(i) for i in range(len(self))]

    def bbox(self, i: int) -> BBox | None:
        """Item ``i``'s (x_1, y_1, x_2, y_2), or None for the whole image; ValueError if partly empty."""
        if self._bbox_list is not None:
            return self._bbox_list[i]
        if self._bbox_table is None:
            return None
        row = self._bbox_table[i]
        if np.isnan(row).all():
            return None
        if np.isnan(row).any():
            raise ValueError(f"bbox {row.tolist()} of item {i} is partly empty or not numeric")
        return tuple(round(v) for v in row)  # type: ignore[return-value]

    def unrooted_folder(self, i: int) -> Path | None:
        """The folder item ``i``'s relative path was looked up in for want of a ``dataset_root``
        (the working directory), or None when the item has a root, is absolute or is no path."""
        raw = self._items[i]
        if self._root is not None or not isinstance(raw, (str, os.PathLike)):
            return None
        return None if Path(raw).expanduser().is_absolute() else Path.cwd()

    def describe(self, i: int) -> str:
        item = self.item(i)
        return str(item) if isinstance(item, Path) else f"{type(item).__name__} #{i}"

    def thumbnail(self, i: int, max_side: int, bbox_mode: BBoxMode = "crop") -> Thumbnail:
        """Item ``i`` fitted into a ``max_side`` square; never raises for a bad file."""
        if bbox_mode not in BBOX_MODES:
            raise ValueError(f"bbox_mode must be one of {BBOX_MODES}, got {bbox_mode!r}")
        if not 0 <= i < len(self._items):
            raise IndexError(f"item id {i} is out of range for {len(self._items)} images")
        item = self.item(i)
        try:
            bbox = None if bbox_mode == "ignore" else self.bbox(i)
        except ValueError as e:
            return Thumbnail(None, error=f"bad bbox\n{e}"[:120], source=self.describe(i))
        if isinstance(item, Path):
            try:
                st = os.stat(item)
            except OSError:  # the message names the resolved path: where the file was looked for
                return Thumbnail(None, error=f"missing file\n{os.path.abspath(item)}", source=str(item))
            key = ("file", str(item), st.st_mtime_ns, st.st_size, bbox, max_side, bbox_mode)
            return self.cache.get_or_make(key, lambda: _thumb_from_file(item, max_side, bbox, bbox_mode))
        try:
            im = Image.fromarray(array_to_rgb(np.asarray(item)), "RGB") if not isinstance(item, Image.Image) else item
            return make_thumbnail(im, max_side, bbox, bbox_mode)
        except (ValueError, TypeError) as e:
            return Thumbnail(None, error=f"bad image #{i}\n{e}"[:120], source=self.describe(i))

    def image(self, i: int, bbox_mode: BBoxMode = "crop") -> np.ndarray:
        """Item ``i`` at full resolution as RGB uint8 (cropped when ``bbox_mode="crop"``); raises on a bad file."""
        item, bbox = self.item(i), self.bbox(i)
        if isinstance(item, Path):
            im = pil_to_rgb(open_image(item))
        elif isinstance(item, Image.Image):
            im = pil_to_rgb(item)
        else:
            im = Image.fromarray(array_to_rgb(np.asarray(item)), "RGB")
        if bbox is not None and bbox_mode == "crop":
            im = im.crop(crop_box(im.width, im.height, bbox))
        return np.asarray(im, dtype=np.uint8)


__all__ = ["BBOX_MODES", "ImageLoadError", "ImageSource", "Thumbnail", "make_thumbnail"]
