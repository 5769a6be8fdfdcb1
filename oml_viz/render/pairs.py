"""``plot_pairs``: near-duplicate (or any) item pairs side by side, with distance, labels and splits.

One row per pair: the two images in frames (red: the pair crosses splits, a leak; orange: the
labels differ; grey: neither), and a text column with the ids, the distance, the labels and the
splits. The images are drawn into one array (one ``imshow``), as in the queries grid.

Example:
    >>> import numpy as np, pandas as pd
    >>> imgs = [np.full((16, 16, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    >>> dups = pd.DataFrame({"id_a": [0, 1], "id_b": [2, 3], "distance": [0.0, 0.5],
    ...                      "same_label": [True, False], "cross_split": [False, True]})
    >>> fig = plot_pairs(dups, imgs, n=2)
    >>> len(fig.axes)
    1
"""
from __future__ import annotations

import os
from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oml_viz.checks import check_int
from oml_viz.data.sources import ImageSource

from .tiles import framed_tile, inner_side, placeholder_tile

LEAK_COLOR = (214, 39, 40)
OTHER_LABEL_COLOR = (255, 127, 14)
PLAIN_COLOR = (150, 150, 150)
_NEEDED = ("id_a", "id_b", "distance")


def _column(images: Any, name: str, given: Sequence[Hashable] | None, n: int) -> np.ndarray | None:
    if given is not None:
        values = np.asarray(given, dtype=object)
    elif isinstance(images, pd.DataFrame) and name in images.columns:
        values = images[name].to_numpy(dtype=object)
    else:
        return None
    if len(values) != n:
        raise ValueError(f"{name}s has {len(values)} values for {n} images")
    return values


def _flag(row: pd.Series, name: str) -> bool | None:
    if name not in row.index or pd.isna(row[name]):
        return None
    return bool(row[name])


def plot_pairs(
    pairs: pd.DataFrame,
    images: Any,
    n: int = 10,
    *,
    labels: Sequence[Hashable] | None = None,
    splits: Sequence[Hashable] | None = None,
    dataset_root: str | os.PathLike | None = None,
    tile_size: int = 128,
    title: str | None = None,
) -> Figure:
    """The first ``n`` pairs of ``pairs`` (e.g. :func:`oml_viz.find_duplicates`) as a figure.

    Args:
        pairs: a DataFrame with ``id_a``, ``id_b``, ``distance`` and optionally ``same_label`` and
            ``cross_split`` (their order is kept: the closest first for ``find_duplicates``).
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        n: how many pairs to draw (from the top).
        labels, splits: one per item, shown under the ids (default: the dataframe's ``label`` and
            ``split`` columns when ``images`` is one).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        tile_size: side of each image tile in pixels.
        title: the figure title (default: "n of N pairs").
    """
    if not isinstance(pairs, pd.DataFrame):
        raise TypeError(f"pairs must be a DataFrame (e.g. from find_duplicates), got {type(pairs).__name__}")
    missing = [c for c in _NEEDED if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lacks the columns {missing} (needs {list(_NEEDED)})")
    n = check_int("n", n, low=1)
    source = ImageSource(images, dataset_root)
    n_items = len(source)
    shown = pairs.head(int(n))
    ids = shown[["id_a", "id_b"]].to_numpy()
    bad = (ids < 0) | (ids >= n_items)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))[:5].tolist()
        raise ValueError(f"pairs: ids outside 0..{n_items - 1} in rows {rows}")
    label_of = _column(images, "label", labels, n_items)
    split_of = _column(images, "split", splits, n_items)

    tile, frame, pad, text_w = int(tile_size), max(2, int(tile_size) // 32), 8, 300
    rows = max(1, len(shown))
    height = rows * (tile + pad) + pad
    width = 2 * tile + 3 * pad
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    texts = []
    for r, (_, row) in enumerate(shown.iterrows()):
        a, b = int(row["id_a"]), int(row["id_b"])
        cross, same = _flag(row, "cross_split"), _flag(row, "same_label")
        color = LEAK_COLOR if cross else OTHER_LABEL_COLOR if same is False else PLAIN_COLOR
        y0 = pad + r * (tile + pad)
        for c, item in enumerate((a, b)):
            x0 = pad + c * (tile + pad)
            thumb = source.thumbnail(item, inner_side(tile, frame))
            out = canvas[y0:y0 + tile, x0:x0 + tile]
            if thumb.array is None:
                out[:] = placeholder_tile(tile, frame, color)
            else:
                framed_tile(thumb.array, tile, frame, color, out=out)
        lines = [f"{a}  ·  {b}    d = {float(row['distance']):.4g}"]
        if label_of is not None:
            lines.append(f"labels: {label_of[a]} / {label_of[b]}")
        elif same is not None:
            lines.append("same label" if same else "different labels")
        if split_of is not None:
            lines.append(f"splits: {split_of[a]} / {split_of[b]}" + ("  (leak)" if cross else ""))
        elif cross is not None:
            lines.append("cross-split (leak)" if cross else "same split")
        texts.append((y0 + tile / 2, "\n".join(lines), cross))

    dpi = 100
    fig = Figure(figsize=((width + text_w) / dpi, (height + 30) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, width / (width + text_w), height / (height + 30)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(0, width + text_w * 1.0)
    ax.set_ylim(height, 0)
    ax.set_position((0, 0, 1, height / (height + 30)))
    ax.set_aspect("equal", adjustable="datalim")
    ax.axis("off")
    for y, text, cross in texts:
        ax.text(width + 4, y, text, va="center", ha="left", fontsize=9,
                color="#b00" if cross else "#222")
    if not texts:
        ax.text(width / 2, height / 2, "no pairs", ha="center", va="center", fontsize=11, color="#666")
    total = len(pairs)
    fig.suptitle(title if title is not None else f"{len(shown)} of {total} pairs, closest first", fontsize=10,
                 y=1 - 8 / (height + 30), va="top")
    return fig
