"""``DataIssuesPanel``: suspected label errors with their neighbours, near-duplicate and leak pairs.

Three views, paged: **label issues** (one row per suspect, most suspicious first: the item framed
red with its given and suggested label and score, then its nearest neighbours with their labels
and distances, green where the label is the suggested one), **duplicates** (pairs under the
threshold, closest first, drawn by :func:`oml_viz.plot_pairs`) and **leaks** (the duplicate pairs
that cross splits). The threshold slider starts at the automatic cut of
:func:`oml_viz.find_duplicates`; moving it filters the pairs already found, and only a value above
every cut searched so far asks the engine again. Everything is computed once and cached.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                  # 4 labels x 3 items
    >>> emb = (rng.normal(size=(12, 8)) * 0.1 + labels[:, None]).astype(np.float32)
    >>> emb[11] = emb[0]                        # item 11 (label 3) is a copy of item 0 (label 0)
    >>> images = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(12)]
    >>> res = ov.retrieve(emb, labels, top_n=5)
    >>> splits = np.where(np.arange(12) < 6, "train", "validation")
    >>> panel = DataIssuesPanel(res, images, splits=splits, background=False)
    >>> int(panel.issues.index[0]), int(panel.issues["suggested_label"].iloc[0])   # the copy: top suspect
    (11, 0)
    >>> panel.view.value = "leaks"; _ = panel.wait()
    >>> panel._rows()[["id_a", "id_b", "cross_split"]].values.tolist()   # and a leak across splits
    [[0, 11, True]]
    >>> panel.close()
"""
from __future__ import annotations

import html
import os
from typing import Any, Hashable, Sequence

import ipywidgets as w
import numpy as np
import pandas as pd

from oml_viz.checks import check_int

from .base import Panel
from .items import Items
from .png import captioned_strip, figure_to_png, rgb_to_png

VIEWS = ("label issues", "duplicates", "leaks")
_SUSPECT_COLOR = (214, 39, 40)
_AGREE_COLOR = (44, 160, 44)
_OTHER_COLOR = (170, 170, 170)


def _is_result(obj: Any) -> bool:
    return hasattr(obj, "retrieved_ids") and hasattr(obj, "embeddings")


class DataIssuesPanel(Panel):
    """Suspected label errors, duplicates and train/validation leaks of a dataset.

    Args:
        res_or_embeddings: a :class:`oml_viz.RetrievalResult` (its embeddings, labels and
            distance are used) or an (N, D) embedding array.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe (its ``label``,
            ``split`` and ``sequence`` columns are used when present).
        labels, splits, sequence_ids: one per item (default: the result's labels, the dataframe's
            columns).
        k: neighbours per item for the label issues (at most N - 1).
        threshold: the duplicate cut (default: automatic, see :func:`oml_viz.find_duplicates`).
        n_per_page: suspects or pairs per page; n_neighbors: neighbours shown per suspect.
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        tile_size: image side in pixels.
        background: False makes every render finish before a call returns.
    """

    css_class = "ov-data-issues"

    def __init__(self, res_or_embeddings: Any, images: Any, *, labels: Sequence[Hashable] | None = None,
                 splits: Sequence[Hashable] | None = None, sequence_ids: Sequence[Hashable] | None = None,
                 k: int = 10, threshold: float | None = None, n_per_page: int = 5, n_neighbors: int = 5,
                 distance: str | None = None, dataset_root: str | os.PathLike | None = None, tile_size: int = 96,
                 background: bool = True):
        super().__init__(background=background)
        from oml_viz.analysis.duplicates import duplicates_from_result, find_duplicates
        from oml_viz.analysis.label_issues import label_issue_scores
        from oml_viz.engine import retrieve

        for name, v in (("n_per_page", n_per_page), ("n_neighbors", n_neighbors), ("tile_size", tile_size)):
            check_int(name, v, low=1)
        df = images if isinstance(images, pd.DataFrame) else None
        # a leave-one-out result with k columns, over its own labels and sequences, is the search
        # the label issues need: reused, and the duplicates start from it too (no second search)
        given = res_or_embeddings if _is_result(res_or_embeddings) else None
        reuse = (given is not None and labels is None and sequence_ids is None and distance in (None, given.distance)
                 and bool(given.is_query.all() and given.is_gallery.all())
                 and given.retrieved_ids.shape[1] == min(int(k), given.n_items - 1))
        if _is_result(res_or_embeddings):
            emb = res_or_embeddings.embeddings
            labels = res_or_embeddings.labels if labels is None else labels
            distance = res_or_embeddings.distance if distance is None else distance
        else:
            emb = res_or_embeddings
        distance = distance or "euclidean"
        if labels is None:
            if df is None or "label" not in df.columns:
                raise ValueError("labels: give labels, a RetrievalResult or a dataframe with a 'label' column")
            labels = df["label"].to_numpy()
        if splits is None and df is not None and "split" in df.columns:
            splits = df["split"].to_numpy()
        if sequence_ids is None and df is not None and "sequence" in df.columns and not reuse:
            sequence_ids = df["sequence"].to_numpy()
        self.items = Items(images, dataset_root, labels=labels)
        self.splits = None if splits is None else np.asarray(splits, dtype=object)
        n = len(self.items)
        if len(emb) != n:
            raise ValueError(f"images holds {n} items but there are {len(emb)} embeddings")
        k = min(int(k), n - 1)
        self._knn = given if reuse else retrieve(emb, labels, top_n=k, distance=distance, sequence_ids=sequence_ids)
        self.issues = label_issue_scores(self._knn, given_labels=np.asarray(self.items.labels, dtype=object))
        if reuse:
            sequence_ids = given._seq_codes  # the result's own exclusions, for any later wider search
        self._dup_args = dict(splits=splits, labels=labels, sequence_ids=sequence_ids, distance=distance)
        self._emb = emb
        self.duplicates = duplicates_from_result(self._knn, threshold=threshold, splits=splits, labels=labels)
        self.auto_threshold = float(self.duplicates.attrs["threshold"])
        self._searched = self.auto_threshold
        self._find_duplicates = find_duplicates
        self.n_per_page, self.n_neighbors, self.tile_size = int(n_per_page), int(n_neighbors), int(tile_size)
        self.page = 0

        self.view = w.ToggleButtons(options=list(VIEWS), value=VIEWS[0], layout=w.Layout(width="auto"))
        self.view.add_class("ov-issues-view")
        top = max(self.auto_threshold * 3, float(self.duplicates["distance"].max()) if len(self.duplicates) else 0.0,
                  1e-6)
        self.threshold = w.FloatSlider(value=self.auto_threshold, min=0.0, max=top, step=top / 200,
                                       description="threshold", readout_format=".4g", continuous_update=False,
                                       layout=w.Layout(width="380px"))
        self.threshold.add_class("ov-issues-threshold")
        self.prev_button = w.Button(description="◀ prev", layout=w.Layout(width="80px"))
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="80px"))
        self.prev_button.add_class("ov-prev-page")
        self.next_button.add_class("ov-next-page")
        self.page_label = w.HTML()
        self.summary = w.HTML()
        self.summary.add_class("ov-issues-summary")
        self.image = self._slot("ov-issues-image")
        self.prev_button.on_click(lambda _: self.go_to_page(self.page - 1))
        self.next_button.on_click(lambda _: self.go_to_page(self.page + 1))
        self.view.observe(self._on_control, names="value")
        self.threshold.observe(self._on_control, names="value")
        self.children = [self.view, self.summary, w.HBox([self.threshold]),
                         w.HBox([self.prev_button, self.page_label, self.next_button, self.image.progress]),
                         self.image.image, self.image.status]
        self._start()

    # ---------------------------------------------------------------- state
    def pairs(self) -> pd.DataFrame:
        """The duplicate pairs under the slider's threshold (exact copies always), closest first."""
        cut = float(self.threshold.value)
        if cut > self._searched:
            self.duplicates = self._find_duplicates(self._emb, threshold=cut, **self._dup_args)
            self._searched = cut
        d = self.duplicates
        return d[(d["distance"] <= cut) | (d["distance"] == 0)]

    def _rows(self) -> pd.DataFrame:
        if self.view.value == "label issues":
            return self.issues
        pairs = self.pairs()
        if self.view.value == "leaks":
            pairs = pairs[pairs["cross_split"].fillna(False).astype(bool)]
        return pairs

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self._rows()) // self.n_per_page))

    @property
    def state(self) -> dict:
        return {"view": self.view.value, "threshold": float(self.threshold.value), "page": self.page}

    def go_to_page(self, page: int) -> None:
        """Show page ``page`` (0-based, clipped)."""
        self.page = int(min(max(page, 0), self.n_pages - 1))
        self._refresh()

    def _on_control(self, change: dict) -> None:
        self.page = 0
        self._refresh()

    # ---------------------------------------------------------------- views
    def _refresh(self) -> None:
        if self._closed:
            return
        rows = self._rows()
        pairs = self.pairs()
        n_leaks = int(pairs["cross_split"].fillna(False).astype(bool).sum())
        high = int((self.issues["score"] >= 0.5).sum())
        self.summary.value = (f"<b>{high}</b> items with label-issue score ≥ 0.5 (of {len(self.issues)}) · "
                              f"<b>{len(pairs)}</b> duplicate pairs at distance ≤ {self.threshold.value:.4g} "
                              f"(automatic cut {self.auto_threshold:.4g}) · <b>{n_leaks}</b> cross the splits")
        self.threshold.layout.visibility = "hidden" if self.view.value == "label issues" else "visible"
        self.page_label.value = (f"&nbsp;page <b>{self.page + 1}</b> / {self.n_pages} &nbsp;"
                                 f"<span style='color:#666'>({len(rows)} {html.escape(self.view.value)})</span>&nbsp;")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.n_pages - 1
        super()._refresh()

    def _views(self) -> list:
        view, page = self.view.value, self.page
        rows = self._rows().iloc[page * self.n_per_page:(page + 1) * self.n_per_page]
        if view == "label issues":
            key = ("issues", page, self.n_per_page, self.n_neighbors)
            return [(self.image, key, lambda: self._issues_png(rows))]
        cut = float(self.threshold.value)
        key = (view, page, round(cut, 12), self.n_per_page)
        return [(self.image, key, lambda: self._pairs_png(rows, view))]

    def _issues_png(self, rows: pd.DataFrame) -> bytes:
        if len(rows) == 0:
            return _empty_png("no items", self.tile_size)
        strips = []
        for item, row in rows.iterrows():
            item = int(item)
            q = int(np.searchsorted(self._knn.query_ids, item))
            nb, dist = self._knn.retrieved_ids[q], self._knn.distances[q]
            shown = [(int(j), float(d)) for j, d in zip(nb, dist) if j >= 0][:self.n_neighbors]
            imgs = [_safe_image(self.items, item)] + [_safe_image(self.items, j) for j, _ in shown]
            caps = [f"item {item}: {row['given_label']} → {row['suggested_label']}\nscore {row['score']:.3f}"]
            caps += [f"item {j} · {self.items.labels[j]}\nd={d:.3g}" for j, d in shown]
            frames = [_SUSPECT_COLOR] + [_AGREE_COLOR if self.items.labels[j] == row["suggested_label"]
                                         else _OTHER_COLOR for j, _ in shown]
            strips.append(captioned_strip(imgs, caps, side=self.tile_size, frames=frames))
        return rgb_to_png(_stack(strips))

    def _pairs_png(self, rows: pd.DataFrame, view: str) -> bytes:
        if len(rows) == 0:
            return _empty_png(f"no {view} at this threshold", self.tile_size)
        from oml_viz.render import plot_pairs

        fig = plot_pairs(rows, self.items.images, n=len(rows), labels=self.items.labels, splits=self.splits,
                         dataset_root=self.items.dataset_root, tile_size=self.tile_size,
                         title=f"{view}: pairs {self.page * self.n_per_page + 1}-"
                               f"{self.page * self.n_per_page + len(rows)}, closest first")
        return figure_to_png(fig)


def _safe_image(items: Items, i: int) -> np.ndarray:
    try:
        return items.image(i)
    except Exception:  # a missing file shows as a grey tile; the caption still names the item
        return np.full((8, 8, 3), 200, np.uint8)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    width = max(a.shape[1] for a in arrays)
    out = np.full((sum(a.shape[0] for a in arrays), width, 3), 255, np.uint8)
    y = 0
    for a in arrays:
        out[y:y + a.shape[0], :a.shape[1]] = a
        y += a.shape[0]
    return out


def _empty_png(text: str, side: int) -> bytes:
    return rgb_to_png(captioned_strip([np.full((8, 8, 3), 245, np.uint8)], [text], side=side))
