"""Benchmark: a 10 x 8 worst-queries grid (10 queries x [query + 5 results + 2 GT]) from 256 px PNGs.

Targets (2 cores): < 1.5 s the first time (cold thumbnail cache), < 0.3 s from the cache; both
include rendering the figure to an RGB array (what a logger or a panel does with it).

Baseline, measured in the same run: the usual way (OML's, most notebooks'): one matplotlib axes
per tile with imshow and a title, images decoded each time.

    python benchmarks/bench_render.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import oml_viz as ov
from oml_viz.data import ThumbnailCache, make_demo_dataset
from oml_viz.data.sources import ImageSource

N_QUERIES, N_INSTANCES, N_GT = 10, 5, 2


def baseline_grid(res, paths, query_ids) -> np.ndarray:
    """One axes per tile, coloured spines, decode every time: OML's approach without pyplot."""
    cols = 1 + N_INSTANCES + N_GT
    fig = Figure(figsize=(cols * 1.6, len(query_ids) * 1.9), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(query_ids), cols)
    for r, qid in enumerate(query_ids):
        row = int(np.searchsorted(res.query_ids, qid))
        gt, gt_d = res.gt_ids(qid, return_distances=True)
        cells = [(qid, "blue", f"Query #{qid}")]
        cells += [(int(i), "green" if rel else "red", f"#{k + 1} d={d:.3f}") for k, (i, d, rel) in
                  enumerate(zip(res.retrieved_ids[row, :N_INSTANCES], res.distances[row], res.is_relevant[row]))]
        cells += [(int(i), "gray", f"GT d={d:.3f}") for i, d in zip(gt[:N_GT], gt_d)]
        for c, (item, color, title) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(np.asarray(Image.open(paths[item]).convert("RGB")))
            ax.set_title(title, fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor(color), s.set_linewidth(3)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        df = make_demo_dataset(tmp, n_classes=12, images_per_class=15, size=256, progress=False)
        print(f"setup: {len(df)} PNGs of 256x256 written in {time.perf_counter() - t:.1f} s")
        rng = np.random.default_rng(0)
        emb = rng.normal(size=(len(df), 32)).astype(np.float32) + np.eye(12, 32, dtype=np.float32)[df["label"]] * 2
        res = ov.retrieve(emb, df["label"].to_numpy(), top_n=N_INSTANCES, device="cpu")
        qids = res.worst_queries("map/5", N_QUERIES)
        src = ImageSource(df, tmp)
        paths = [str(src.item(i)) for i in range(len(src))]

        def ours(cache):
            fig = ov.plot_worst_queries(res, df, "map/5", N_QUERIES, N_INSTANCES, N_GT, dataset_root=tmp, cache=cache)
            return ov.figure_to_array(fig)

        ours(ThumbnailCache())  # warm-up: imports, fonts
        baseline_grid(res, paths, qids)
        first = timed(lambda: ours(ThumbnailCache()), args.repeats)  # a fresh cache each time: cold
        cache = ThumbnailCache()
        ours(cache)
        cached = timed(lambda: ours(cache), args.repeats)
        base = timed(lambda: baseline_grid(res, paths, qids), max(1, args.repeats // 2))
        shape = ours(cache).shape

    med = statistics.median
    print(f"\n{N_QUERIES} x {1 + N_INSTANCES + N_GT} grid from 256 px PNGs, figure rendered to RGB {shape}; "
          f"median of {args.repeats}")
    print("| case | time (s) | target | vs baseline |")
    print("|---|---|---|---|")
    print(f"| baseline: one axes per tile (OML-style) | {med(base):.3f} | - | 1.0x |")
    print(f"| oml_viz, first time (cold cache) | {med(first):.3f} | < 1.5 | {med(base) / med(first):.1f}x faster |")
    print(f"| oml_viz, from cache | {med(cached):.3f} | < 0.3 | {med(base) / med(cached):.1f}x faster |")
    ok = med(first) < 1.5 and med(cached) < 0.3
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
