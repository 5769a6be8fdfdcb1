"""Image loading: any PIL mode or array layout -> RGB uint8, with an optional bbox crop.

Example:
    >>> from PIL import Image
    >>> rgb = load_image(Image.new("L", (100, 90)), bbox=(10, 10, 60, 80))   # grey, cropped to the box
    >>> rgb.dtype, rgb.shape
    (dtype('uint8'), (70, 50, 3))
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from oml_viz.errors import InputError

ImageLike = str | os.PathLike | Image.Image | np.ndarray
BBox = tuple[int, int, int, int]

# Transparent pixels become white: black (the usual alpha-dropped colour) hides dark objects.
_BACKGROUND = (255, 255, 255)


class ImageLoadError(InputError, OSError):
    """A file that is missing or cannot be decoded; ``.reason`` is a short label for a tile."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {self.path}" + (f" ({detail})" if detail else ""))


class MissingImageError(ImageLoadError, FileNotFoundError):
    """An image file that does not exist: an :class:`ImageLoadError` and a ``FileNotFoundError``."""


def _high_bit_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16/32-bit integer data to 0..255 by the range of its dtype (not by the image's max)."""
    if arr.dtype.kind == "u" or arr.dtype.kind == "i":
        top = 65535.0 if arr.max(initial=0) > 255 or arr.dtype.itemsize == 2 else 255.0
        return np.clip(arr.astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    raise TypeError(f"unexpected dtype {arr.dtype}")


def pil_to_rgb(im: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to an RGB PIL image (alpha over white, 16-bit scaled)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0:
            gray = arr.astype(np.uint8)  # an 8-bit image stored as int32
        else:
            gray = _high_bit_to_uint8(np.clip(arr, 0, 65535).astype(np.uint16))
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of any numeric dtype -> RGB uint8.

    Floats are taken as 0..1 (values above 1 as 0..255); 16-bit integers are scaled down;
    alpha is composited over white.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image array is empty; got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            rows = np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))[:5].tolist()
            raise ValueError(f"image array holds NaN or inf (rows {rows}); a float image must be finite")
        finite = a.astype(np.float32)
        scale = 255.0 if float(finite.max(initial=0.0)) <= 1.0 else 1.0
        a = np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.dtype.kind not in "ui":
            raise ValueError(f"image array has unsupported dtype {a.dtype}")
        a = _high_bit_to_uint8(np.clip(a, 0, None))
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        rgb = a[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return (rgb + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def crop_box(width: int, height: int, bbox: BBox | None) -> BBox | None:
    """The bbox clipped to the image; raises ValueError when nothing of it is inside."""
    if bbox is None:
        return None
    x1, y1, x2, y2 = (int(v) for v in bbox)
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"bbox {tuple(bbox)} lies outside the {width}x{height} image")
    return cx1, cy1, cx2, cy2


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and decode an image file; raise :class:`ImageLoadError` naming the problem."""
    p = Path(path)
    if not p.is_file():
        raise MissingImageError(p, "missing file")
    try:
        im = Image.open(p)
        im.load()
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError) as e:
        raise ImageLoadError(p, "unreadable image", f"{type(e).__name__}: {e}") from e
    return im


def to_pil_rgb(image: ImageLike) -> Image.Image:
    """Any supported image (path, PIL, array) as an RGB PIL image."""
    if isinstance(image, (str, os.PathLike)):
        return pil_to_rgb(open_image(image))
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return Image.fromarray(array_to_rgb(np.asarray(image)), "RGB")
    raise TypeError(f"image must be a path, a PIL image or an array, got {type(image).__name__}")


def load_image(image: ImageLike, bbox: BBox | None = None) -> np.ndarray:
    """Load any supported image as an RGB uint8 (H, W, 3) array, cropped to ``bbox`` if given.

    ``bbox`` is (x_1, y_1, x_2, y_2) in pixels, right/bottom exclusive, clipped to the image.
    """
    if isinstance(image, np.ndarray):
        rgb = array_to_rgb(image)
        box = crop_box(rgb.shape[1], rgb.shape[0], bbox)
        return rgb if box is None else rgb[box[1]:box[3], box[0]:box[2]]
    im = to_pil_rgb(image)
    box = crop_box(im.width, im.height, bbox)
    if box is not None:
        im = im.crop(box)
    return np.asarray(im, dtype=np.uint8)
