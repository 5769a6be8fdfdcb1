"""Image loading (every mode -> RGB uint8), bbox crop, the thumbnail cache and ImageSource."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oml_viz.data import (
    ImageLoadError,
    ImageSource,
    ThumbnailCache,
    array_to_rgb,
    load_image,
)


def _gradient(h=20, w=30):
    return (np.arange(h)[:, None] * 10 + np.arange(w)[None, :]).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_rgb_file_roundtrip(tmp_path, fmt):
    rgb = np.dstack([_gradient(), 255 - _gradient(), np.full((20, 30), 77, np.uint8)])
    Image.fromarray(rgb).save(tmp_path / f"a.{fmt}", quality=100)
    out = load_image(tmp_path / f"a.{fmt}")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    tol = 0 if fmt == "png" else 12
    assert np.abs(out.astype(int) - rgb).max() <= tol


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    Image.fromarray(_gradient(), "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    assert (out[..., 0] == _gradient()).all() and (out[..., 1] == out[..., 0]).all() and (out[..., 2] == out[..., 0]).all()


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr16 = (np.linspace(0, 65535, 30)[None, :].repeat(4, 0)).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (4, 30, 3)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert 120 <= out[0, 15, 0] <= 135  # midway: scaled, not clipped to 255
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[9, 9]) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (8, 8))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[1, 1]) == (10, 20, 30)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (200, 100, 50)


def test_other_pil_modes(tmp_path):
    for mode in ("1", "LA", "CMYK", "I", "F"):
        im = Image.new(mode, (6, 4))
        out = load_image(im)
        assert out.shape == (4, 6, 3) and out.dtype == np.uint8, mode
    f = Image.fromarray(np.full((3, 3), 0.5, np.float32), "F")
    assert load_image(f)[0, 0, 0] in (127, 128)


@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.full((4, 5), 9, np.uint8), (9, 9, 9)),
        (np.full((4, 5, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((4, 5), 1.0, np.float32), (255, 255, 255)),
        (np.full((4, 5, 3), 0.5, np.float64), (128, 128, 128)),
        (np.full((4, 5), 65535, np.uint16), (255, 255, 255)),
        (np.ones((4, 5), bool), (255, 255, 255)),
        (np.dstack([np.full((4, 5, 3), 0, np.uint8), np.zeros((4, 5), np.uint8)]), (255, 255, 255)),
    ],
)
def test_array_layouts(arr, expected):
    out = array_to_rgb(arr)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == expected


@pytest.mark.parametrize("shape", [(4, 5, 2), (4,), (0, 5, 3), (2, 4, 5, 3)])
def test_bad_array_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        array_to_rgb(np.zeros(shape, np.uint8))


def test_bbox_crop_and_clip():
    img = np.zeros((20, 30, 3), np.uint8)
    img[5:10, 8:20] = 255
    out = load_image(img, bbox=(8, 5, 20, 10))
    assert out.shape == (5, 12, 3) and out.min() == 255
    assert load_image(img, bbox=(25, 15, 99, 99)).shape == (5, 5, 3)  # clipped to the image
    with pytest.raises(ValueError, match="outside"):
        load_image(img, bbox=(40, 0, 50, 5))


def test_missing_and_corrupt_file_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="missing file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ImageLoadError, match="unreadable image") as err:
        load_image(tmp_path / "bad.png")
    assert err.value.path.endswith("bad.png")


def test_cache_is_lru_and_bounded_by_bytes():
    item = np.zeros((10, 10, 3), np.uint8)  # 300 bytes
    cache = ThumbnailCache(max_bytes=1000)
    for k in "abc":
        cache.put(k, item.copy())
    assert len(cache) == 3
    cache.get("a")  # a is now the most recent
    cache.put("d", item.copy())
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.nbytes <= 1000
    assert not cache.get("a").flags.writeable
    cache.put("huge", np.zeros(5000, np.uint8))  # bigger than the cache: not stored, nothing evicted
    assert "huge" not in cache and len(cache) == 3


def test_cache_item_limit_and_counters():
    cache = ThumbnailCache(max_bytes=10**6, max_items=2)
    calls = []
    for k in ["x", "y", "x", "z", "y"]:
        cache.get_or_make(k, lambda k=k: calls.append(k) or np.zeros(1))
    assert calls == ["x", "y", "z", "y"] and len(cache) == 2
    assert cache.hits == 1


def test_image_source_from_dataframe_uses_cache_and_notices_edits(tmp_path):
    Image.fromarray(np.full((40, 80, 3), 10, np.uint8)).save(tmp_path / "a.png")
    df = pd.DataFrame({"path": ["a.png", "missing.png"], "x_1": [np.nan] * 2, "y_1": [np.nan] * 2,
                       "x_2": [np.nan] * 2, "y_2": [np.nan] * 2})
    cache = ThumbnailCache()
    src = ImageSource(df, tmp_path, cache=cache)
    th = src.thumbnail(0, 32)
    assert th.array.shape == (16, 32, 3) and th.error is None  # aspect kept
    assert src.thumbnail(0, 32) is th  # from the cache
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(tmp_path / "a.png", compress_level=0)
    assert src.thumbnail(0, 32).array[0, 0, 0] == 200  # the edited file is read again
    bad = src.thumbnail(1, 32)
    assert bad.array is None and "missing file" in bad.error and "missing.png" in bad.error


def test_image_source_corrupt_file_and_bad_array(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    src = ImageSource([tmp_path / "bad.jpg", np.zeros((3, 3, 7), np.uint8)])
    assert "unreadable image" in src.thumbnail(0, 32).error
    assert "bad image" in src.thumbnail(1, 32).error
    with pytest.raises(ImageLoadError):
        src.image(0)


def test_image_source_small_images_are_upscaled_and_bbox_modes(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[5:15, 10:20] = 255
    src = ImageSource([img], bboxes=[(10, 5, 20, 15)])
    crop = src.thumbnail(0, 60, "crop")
    assert crop.array.shape == (60, 60, 3) and crop.array.min() == 255 and crop.bbox is None
    draw = src.thumbnail(0, 60, "draw")
    assert draw.array.shape == (30, 60, 3) and draw.bbox == (15, 7, 30, 22)
    assert src.thumbnail(0, 60, "ignore").bbox is None
    with pytest.raises(ValueError, match="bbox_mode"):
        src.thumbnail(0, 60, "zoom")


def test_image_source_rejects_a_single_image_and_stacks_work():
    with pytest.raises(TypeError, match="single"):
        ImageSource(np.zeros((5, 5), np.uint8))
    assert len(ImageSource(np.zeros((7, 28, 28), np.uint8))) == 7  # (N, H, W): N grey images


def test_jpeg_draft_keeps_bbox_position(tmp_path):
    img = np.zeros((800, 800, 3), np.uint8)
    img[400:800, 400:800] = 255
    Image.fromarray(img).save(tmp_path / "big.jpg", quality=95)
    df = pd.DataFrame({"path": ["big.jpg"], "x_1": [400], "y_1": [400], "x_2": [800], "y_2": [800]})
    th = ImageSource(df, tmp_path, cache=ThumbnailCache()).thumbnail(0, 100, "draw")
    assert th.array.shape == (100, 100, 3)
    assert th.bbox == (50, 50, 100, 100)
    assert th.array[75, 75].min() > 230 and th.array[25, 25].max() < 25
