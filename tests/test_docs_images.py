"""The README's pictures: every one it embeds exists under docs/images/, is a real picture (not a
blank canvas), is stored small, and ``tools/screenshots.py`` (``make screenshots``) makes them."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
EMBEDDED = re.findall(r"!\[[^\]]*\]\((docs/images/[^)\s]+)\)", (REPO / "README.md").read_text())


def _tool():
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "tools" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_embeds_the_dashboard_tabs_grid_attention_and_gradcam():
    names = " ".join(EMBEDDED)
    for what in ("dashboard_", "worst_queries_grid", "attention", "gradcam"):
        assert what in names, f"the README shows no {what} picture"
    assert sum("dashboard_" in n for n in EMBEDDED) >= 4, "one picture per main dashboard tab"


def test_every_embedded_picture_is_real_and_small():
    total = 0
    for rel in EMBEDDED:
        path = REPO / rel
        assert path.is_file(), f"README embeds {rel}, which does not exist"
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width <= 1000
            gray = np.asarray(im.convert("L"), dtype=np.float32)
        assert gray.std() > 10 and im.height > 100, f"{rel} looks blank"
        total += path.stat().st_size
    stored = sum(p.stat().st_size for p in IMAGES.glob("*"))
    assert total <= stored < 1.5e6, f"docs/images holds {stored / 1e6:.2f} MB"
    assert not [p.name for p in IMAGES.glob("*") if f"docs/images/{p.name}" not in EMBEDDED], "unused pictures"


def test_optimise_scales_down_and_keeps_the_picture(tmp_path):
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)  # a UI picture: flat areas of a few colours
    arr = np.repeat(np.repeat(palette[rng.integers(0, 40, (60, 200))], 8, 0), 8, 1)  # 1600 x 480
    src = tmp_path / "big.png"
    Image.fromarray(arr).save(src)
    out = _tool().optimise(src, tmp_path / "small.png", width=800)
    with Image.open(out) as im:
        assert im.size == (800, 240) and im.mode == "P"
        small = np.asarray(im.convert("RGB"), dtype=np.float32)
    ref = np.asarray(Image.fromarray(arr).resize((800, 240), Image.Resampling.LANCZOS), dtype=np.float32)
    assert np.abs(small - ref).mean() < 12  # the same picture, in fewer colours
    Image.fromarray(ref.round().astype(np.uint8)).save(tmp_path / "rgb.png", optimize=True)
    assert out.stat().st_size < (tmp_path / "rgb.png").stat().st_size  # smaller than true colour
