"""Python-side time per click of the widget panels: from cache, cold, and a rebuild-per-click baseline.

A click from cache must stay under 100 ms (the panel sets ``.value`` of existing widgets). The
baseline is what a naive panel would do on each click: rebuild the view (grid / attention
overlay / metrics figure) and encode it. Both run here, on the same data, in the same process.

Run:  .venv/bin/python benchmarks/bench_widgets.py [--classes 16 --per-class 20 --repeats 15]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch

TARGET_MS = 100.0


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(2)

    import oml_viz as ov
    from oml_viz.datasets import make_demo_dataset
    from oml_viz.explain import draw_attention
    from oml_viz.models import ViTExtractor
    from oml_viz.widgets import AttentionPanel, MetricsPanel, WorstQueriesPanel, figure_to_png, metrics_figure
    from oml_viz.widgets.png import captioned_strip, rgb_to_png

    tmp = tempfile.mkdtemp(prefix="bench_widgets_")
    df = make_demo_dataset(tmp, n_classes=args.classes, images_per_class=args.per_class, size=64, progress=False)
    torch.manual_seed(0)
    vit = ViTExtractor("vit_tiny_patch16_224", img_size=64, patch_size=8, depth=4)
    emb = vit.extract(df, progress=False)
    res = ov.retrieve(emb, df["label"].to_numpy(), top_n=10)
    print(f"data: {len(df)} images 64 px, {len(res.query_ids)} queries; ViT-tiny depth 4 (random init); "
          f"torch threads {torch.get_num_threads()}")

    rows = []

    # --- worst queries: next / prev between two cached pages
    wq = WorstQueriesPanel(res, df, model=vit, n_queries=5, n_instances=5)
    t_cold = timed(lambda: (wq.go_to_page(wq.page + 1), wq.wait()), 3)
    wq.go_to_page(0)
    wq.wait()
    wq.go_to_page(1)
    wq.wait()
    flip = iter(range(10**6))
    t_cached = timed(lambda: (wq.next_button if next(flip) % 2 == 0 else wq.prev_button).click(), args.repeats)
    ids = wq.page_query_ids

    def rebuild_grid() -> bytes:
        disp = ov.QueriesDisplay.from_results(res, df, ids, metric="map/5", n_instances=5, n_gt=2, tile_size=112)
        return rgb_to_png(disp.render_mosaic()[0])

    rows.append(("worst queries: page", t_cached, t_cold, timed(rebuild_grid, 3)))

    # --- worst queries: open a result's pair explanation again
    wq.select(ids[0], 1)
    wq.wait()
    wq.select(ids[0], 2)
    wq.wait()
    sel = iter(range(10**6))
    t_cached = timed(lambda: wq.select(ids[0], 1 + next(sel) % 2), args.repeats)
    t_cold = timed(lambda: (wq.select(ids[1], 1 + next(sel) % 5), wq.wait()), 3)
    rows.append(("worst queries: result click", t_cached, t_cold, float("nan")))
    wq.close()

    # --- attention: switch heads back and forth
    att = AttentionPanel(vit, df, res=res)
    cold = iter(range(3))
    t_cold = timed(lambda: (setattr(att.head, "value", next(cold)), att.wait()), 3)
    heads = iter(range(10**6))
    t_cached = timed(lambda: setattr(att.head, "value", next(heads) % 2), args.repeats)
    img = att.items.image(att.item.value)

    def rebuild_attention() -> bytes:
        over = draw_attention(vit, img, head=0)
        return rgb_to_png(captioned_strip([img, over], ["item", "head 0"], 224))

    rows.append(("attention: head", t_cached, t_cold, timed(rebuild_attention, 3)))
    alphas = iter(np.linspace(0.05, 0.95, 40))
    t_alpha = timed(lambda: (setattr(att.alpha, "value", float(next(alphas))), att.wait()), 5)
    rows.append(("attention: alpha (heat map cached)", float("nan"), t_alpha, float("nan")))
    att.close()

    # --- metrics: switch the metric
    mp = MetricsPanel(res, df["category"].to_numpy())
    mp.metric.value = "cmc/1"
    mp.wait()
    metrics = iter(range(10**6))
    t_cached = timed(lambda: setattr(mp.metric, "value", ("map/5", "cmc/1")[next(metrics) % 2]), args.repeats)
    data = mp.table.join(mp.curve_table.drop(columns=mp.table.columns, errors="ignore"))
    rows.append(("metrics: metric", t_cached, float("nan"),
                 timed(lambda: figure_to_png(metrics_figure(data, "cmc/1", mp.cmc_columns)), 3)))
    mp.close()

    print()
    print("| click | from cache (ms) | cold, render on worker (ms) | rebuild per click (ms) | cache speed-up |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for name, cached, cold, base in rows:
        ratio = base / cached if np.isfinite(base) and np.isfinite(cached) and cached > 0 else float("nan")
        fmt = lambda v: "-" if not np.isfinite(v) else f"{v:.1f}"
        print(f"| {name} | {fmt(cached)} | {fmt(cold)} | {fmt(base)} | {'-' if not np.isfinite(ratio) else f'{ratio:.0f}x'} |")
        if np.isfinite(cached):
            worst = max(worst, cached)
    verdict = "OK" if worst < TARGET_MS else "OVER TARGET"
    print(f"\nslowest click from cache: {worst:.1f} ms (target < {TARGET_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
