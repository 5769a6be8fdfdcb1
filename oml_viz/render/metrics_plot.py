"""Metric plots: one metric per category next to the CMC@k curve."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oml_viz.engine.result import OVERALL


def metrics_figure(table: pd.DataFrame, metric: str, cmc_columns: Sequence[str]) -> Figure:
    """Left: ``metric`` per category (bars, OVERALL first). Right: CMC@k for OVERALL and each
    category. A pyplot-free Figure."""
    fig = Figure(figsize=(10, 3.6), dpi=90, layout="constrained")
    ax_bar, ax_cmc = fig.subplots(1, 2, width_ratios=(1, 1.2))
    names = [str(n) for n in table.index]
    values = table[metric].to_numpy(dtype=float)
    colors = ["#1f4e9c"] + ["#7aa6d8"] * (len(names) - 1)
    ax_bar.barh(range(len(names)), np.nan_to_num(values), color=colors)
    ax_bar.set_yticks(range(len(names)), names, fontsize=8)
    ax_bar.invert_yaxis()
    ax_bar.set_xlim(0, 1.0)
    ax_bar.set_title(metric, fontsize=10)
    for i, v in enumerate(values):
        ax_bar.text(min(v, 0.85) + 0.01 if np.isfinite(v) else 0.01, i, "—" if not np.isfinite(v) else f"{v:.3f}",
                    va="center", fontsize=7)
    ks = [int(c.split("/")[1]) for c in cmc_columns]
    for name, row in zip(names, table[list(cmc_columns)].to_numpy(dtype=float)):
        overall = name == OVERALL
        ax_cmc.plot(ks, row, marker="o", ms=3, lw=2.4 if overall else 1.0, color="black" if overall else None,
                    alpha=1.0 if overall else 0.8, label=name, zorder=3 if overall else 2)
    ax_cmc.set_xlabel("k", fontsize=9)
    ax_cmc.set_ylabel("CMC@k", fontsize=9)
    ax_cmc.set_xticks(ks)
    ax_cmc.set_ylim(0, 1.02)
    ax_cmc.grid(alpha=0.3)
    ax_cmc.set_title("CMC@k", fontsize=10)
    ax_cmc.legend(fontsize=7, loc="lower right", ncols=2 if len(names) > 6 else 1)
    return fig
