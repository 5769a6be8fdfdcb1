"""A procedurally generated retrieval dataset: offline, deterministic, fast, not too easy.

Each class is a *shape* (8 of them: the category) combined with a *colour pattern* (a texture kind
and two hues). Every image draws its object at a random pose, scale and position on a random
gradient background with clutter (other small shapes, lines), sometimes partly occluded, plus
pixel noise. Classes of one category differ only by colour pattern, and some shapes are close
(hexagon vs. circle at 64 px), so a small model does not reach CMC@1 = 1.

The split is by label, as in OML: in each category half of the classes are ``train`` and half are
``validation``; validation rows are both query and gallery, train rows neither.

**Planted data issues** (so that the data-issues views have real findings, and their recall can be
measured): a share ``wrong_label_share`` (default 2%) of the validation rows carry the label (and
the category and class name) of another validation class while their image shows their own class;
and ``n_leaks`` (default 6) train images are replaced by near copies of validation images (with
pixel noise of up to 2 levels, as a re-encoded copy): the same picture in both splits. Two extra columns say
what was planted: ``true_label`` (the class the image shows; differs from ``label`` on a wrong
label) and ``leak_of`` (for a leaked train row, the row number of the validation image it copies;
-1 otherwise). ``wrong_label_share=0, n_leaks=0`` gives a clean dataset.

Example (the default makes 48 classes x 60 images, 2880 rows, 8 categories):
    >>> import tempfile
    >>> df = make_demo_dataset(f"{tempfile.mkdtemp()}/demo_data", n_classes=8, images_per_class=2, size=16,
    ...                        progress=False)
    >>> len(df), df["label"].nunique(), df["category"].nunique()
    (16, 8, 8)
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from oml_viz.checks import check_int

from .written import finish, reuse

SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "diamond")
PATTERN_KINDS = ("solid", "stripes", "checker", "dots", "rings", "halves")
# Two hue pairs (degrees) per kind: same texture, different colours -> 12 colour patterns. The
# palettes alternate, so the first 6 (the default 48 classes) already mix both colourings.
PALETTES = ((0, 210), (55, 280))
COLOR_PATTERNS = tuple((kind, PALETTES[(i + j) % 2]) for j in range(2) for i, kind in enumerate(PATTERN_KINDS))
MAX_CLASSES = len(SHAPES) * len(COLOR_PATTERNS)

_SUPERSAMPLE = 2  # the object mask is drawn at 2x and averaged down: smooth edges
_META = "demo_meta.json"


def class_spec(label: int) -> tuple[str, str, tuple[int, int]]:
    """(shape, pattern kind, (hue1, hue2)) of a class; shapes cycle fastest so categories stay even."""
    if not 0 <= label < MAX_CLASSES:
        raise ValueError(f"label must be in [0, {MAX_CLASSES}), got {label}")
    shape = SHAPES[label % len(SHAPES)]
    kind, hues = COLOR_PATTERNS[label // len(SHAPES)]
    return shape, kind, hues


def class_name(label: int) -> str:
    shape, kind, hues = class_spec(label)
    return f"{shape}/{kind}/{hues[0]}-{hues[1]}"


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 360) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return ((np.array(rgb, dtype=np.float32) + (v - c)) * 255.0).astype(np.float32)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """Vertices of a polygonal shape (None for the circle)."""
    if shape == "circle":
        return None
    if shape == "star":
        k = np.arange(10)
        radii = np.where(k % 2 == 0, r, 0.45 * r)
        theta = angle + k * np.pi / 5
    elif shape == "cross":
        a, b = r, 0.38 * r
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
                        (-a, b), (-a, -b), (-b, -b)])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = pts @ rot.T
        return [(cx + x, cy + y) for x, y in pts]
    elif shape == "diamond":
        theta = angle + np.arange(4) * np.pi / 2
        radii = np.array([r, 0.55 * r, r, 0.55 * r])
    else:
        n = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        theta = angle + np.arange(n) * 2 * np.pi / n
        radii = np.full(n, r)
    return list(zip(cx + radii * np.cos(theta), cy + radii * np.sin(theta)))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill) -> None:
    pts = _polygon(shape, cx, cy, r, angle)
    if pts is None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(pts, fill=fill)


def _texture(kind: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Share (0..1) of the second colour at each pixel; u, v are rotated, centred coordinates."""
    if kind == "solid":
        return np.zeros_like(u)
    if kind == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dots":
        du = (u / period) % 1 - 0.5
        dv = (v / period) % 1 - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if kind == "rings":
        return (np.sin(2 * np.pi * np.hypot(u, v) / period) > 0).astype(np.float32)
    if kind == "halves":
        return (u > 0).astype(np.float32)
    raise ValueError(f"unknown pattern kind {kind!r}")


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def render_demo_image(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One RGB uint8 image of class ``label`` and its object's bbox (x_1, y_1, x_2, y_2)."""
    shape, kind, (h1, h2) = class_spec(label)
    yy, xx = _grid(size)

    # background: a random two-colour gradient
    g_angle = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.float32(np.cos(g_angle)) + yy * np.float32(np.sin(g_angle))) / size + 1) / 2
    c_a = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.95))
    c_b = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.95))
    img = c_a * (1 - t[..., None]) + c_b * t[..., None]

    # clutter behind the object
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 7)):
        _clutter(draw, rng, size)

    # the object: a textured shape
    r = rng.uniform(0.22, 0.40) * size
    cx, cy = (float(c) for c in rng.uniform(r * 0.8, size - r * 0.8, size=2))
    angle = rng.uniform(0, 2 * np.pi)
    big = size * _SUPERSAMPLE
    mask_im = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(mask_im), shape, cx * _SUPERSAMPLE, cy * _SUPERSAMPLE, r * _SUPERSAMPLE, angle, 255)
    mask = np.asarray(mask_im.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0

    jitter = rng.uniform(-12, 12)
    col1 = _hsv_to_rgb(h1 + jitter, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    col2 = _hsv_to_rgb(h2 + jitter, rng.uniform(0.65, 1.0), rng.uniform(0.5, 1.0))
    p_angle = rng.uniform(0, 2 * np.pi)
    cos, sin = math.cos(p_angle), math.sin(p_angle)  # Python floats keep the arrays float32
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    share = _texture(kind, u, v, period=r * rng.uniform(0.45, 0.7))[..., None]
    obj = col1 * (1 - share) + col2 * share
    img = np.asarray(canvas, dtype=np.float32)
    img = img * (1 - mask[..., None]) + obj * mask[..., None]

    # sometimes a clutter item in front: partial occlusion
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.35:
        _clutter(ImageDraw.Draw(canvas), rng, size)
    img = np.asarray(canvas, dtype=np.float32)
    img = img + rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(rng.uniform(4, 12))

    ys, xs = np.nonzero(mask > 0.5)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, size, size)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), bbox


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    colour = tuple(int(c) for c in _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 1), rng.uniform(0.2, 1)))
    kind = rng.integers(0, 3)
    x, y = rng.uniform(0, size, size=2)
    if kind == 0:
        x2, y2 = rng.uniform(0, size, size=2)
        draw.line((x, y, x2, y2), fill=colour, width=int(rng.integers(1, max(2, size // 20))))
    elif kind == 1:
        rr = rng.uniform(0.04, 0.12) * size
        draw.ellipse((x - rr, y - rr * rng.uniform(0.5, 1.5), x + rr, y + rr), fill=colour)
    else:
        _draw_shape(draw, SHAPES[rng.integers(0, len(SHAPES))], x, y, rng.uniform(0.05, 0.13) * size,
                    rng.uniform(0, 2 * np.pi), colour)


def _validation_classes(n_classes: int, seed: int) -> set[int]:
    """Half of the classes of every category (shape), chosen by the seed."""
    rng = np.random.default_rng([seed, 7919])
    chosen: set[int] = set()
    for s in range(len(SHAPES)):
        members = [c for c in range(n_classes) if c % len(SHAPES) == s]
        rng.shuffle(members)
        chosen.update(members[len(members) // 2:])
    return chosen


def make_demo_dataset(
    root: str | os.PathLike,
    n_classes: int = 48,
    images_per_class: int = 60,
    size: int = 64,
    seed: int = 0,
    *,
    with_bboxes: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    wrong_label_share: float = 0.02,
    n_leaks: int = 6,
) -> pd.DataFrame:
    """Write the demo dataset under ``root`` (PNGs + ``df.csv``) and return its OML dataframe.

    Args:
        root: output folder (created). Paths in the dataframe are relative to it, and
            ``df.attrs["dataset_root"]`` holds it.
        n_classes: number of classes, 2 to 96 (default 48: 8 shape categories x 6 patterns).
        images_per_class: images per class (default 60: 2,880 images).
        size: image side in pixels (default 64).
        seed: the same seed gives byte-identical images.
        with_bboxes: add ``x_1, y_1, x_2, y_2`` columns with each object's box.
        overwrite: regenerate even when ``root`` already holds this exact dataset.
        progress: show a tqdm progress bar.
        wrong_label_share: share of validation rows given another validation class's label
            (module docstring; rounded to a count).
        n_leaks: train images replaced by near copies of validation images.

    Small version for tests: ``make_demo_dataset(tmp, n_classes=8, images_per_class=4, size=32)``.
    """
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in [2, {MAX_CLASSES}], got {n_classes}")
    if images_per_class < 2:
        raise ValueError(f"images_per_class must be >= 2 (a query needs a relevant gallery item), got {images_per_class}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if not 0 <= wrong_label_share <= 0.5:
        raise ValueError(f"wrong_label_share must be in [0, 0.5], got {wrong_label_share}")
    n_leaks = check_int("n_leaks", n_leaks, low=0)
    root = Path(root).expanduser()
    params = {"n_classes": n_classes, "images_per_class": images_per_class, "size": size, "seed": seed,
              "with_bboxes": with_bboxes, "wrong_label_share": float(wrong_label_share), "n_leaks": int(n_leaks),
              "version": 3}
    if not overwrite and (df := reuse(root, _META, params, n_classes * images_per_class)) is not None:
        return df

    from tqdm.auto import tqdm

    val = _validation_classes(n_classes, seed)
    rows = []
    total = n_classes * images_per_class
    with tqdm(total=total, desc="demo dataset", disable=not progress, unit="img") as bar:
        for label in range(n_classes):
            folder = root / "images" / f"{label:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            is_val = label in val
            for i in range(images_per_class):
                rng = np.random.default_rng([seed, label, i])  # per image: order-independent
                img, box = render_demo_image(label, size, rng)
                rel = f"images/{label:03d}/{i:03d}.png"
                Image.fromarray(img, "RGB").save(root / rel, compress_level=1)
                row = {"label": label, "path": rel, "split": "validation" if is_val else "train",
                       "is_query": is_val, "is_gallery": is_val, "category": SHAPES[label % len(SHAPES)],
                       "class_name": class_name(label)}
                if with_bboxes:
                    row.update(x_1=box[0], y_1=box[1], x_2=box[2], y_2=box[3])
                rows.append(row)
                bar.update(1)
    _plant_issues(root, rows, val, size, seed, wrong_label_share, int(n_leaks))
    return finish(root, _META, params, rows)


def _plant_issues(root: Path, rows: list[dict], val: set[int], size: int, seed: int, share: float,
                  n_leaks: int) -> None:
    """Wrong labels on validation rows and near copies of validation images among the train rows
    (see the module docstring); ``rows`` are updated in place, leaked images rewritten."""
    rng = np.random.default_rng([seed, 4242])
    for row in rows:
        row["true_label"] = row["label"]
        row["leak_of"] = -1
    val_rows = [i for i, r in enumerate(rows) if r["split"] == "validation"]
    train_rows = [i for i, r in enumerate(rows) if r["split"] == "train"]
    val_classes = sorted(val)
    n_wrong = int(round(share * len(val_rows))) if len(val_classes) > 1 else 0
    for i in rng.choice(val_rows, size=min(n_wrong, len(val_rows)), replace=False):
        row = rows[int(i)]
        others = [c for c in val_classes if c != row["true_label"]]
        wrong = int(others[rng.integers(len(others))])
        row.update(label=wrong, category=SHAPES[wrong % len(SHAPES)], class_name=class_name(wrong))
    n_leaks = min(n_leaks, len(train_rows), len(val_rows))
    sources = rng.choice(val_rows, size=n_leaks, replace=False)
    targets = rng.choice(train_rows, size=n_leaks, replace=False)
    for s_i, t_i in zip(sources, targets):
        src, dst = rows[int(s_i)], rows[int(t_i)]
        img = np.asarray(Image.open(root / src["path"]).convert("RGB"), dtype=np.int16)
        img = np.clip(img + rng.integers(-2, 3, size=img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img, "RGB").save(root / dst["path"], compress_level=1)
        dst["leak_of"] = int(s_i)
        if "x_1" in src:  # the copy shows the source's object, where the source has it
            dst.update(x_1=src["x_1"], y_1=src["y_1"], x_2=src["x_2"], y_2=src["y_2"])
