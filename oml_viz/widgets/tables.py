"""Metrics tables as escaped HTML (shared by the metrics panel and the HTML report)."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from oml_viz.engine.result import OVERALL

TABLE_STYLE = ("border-collapse:collapse;font:12px sans-serif;"
               "font-variant-numeric:tabular-nums")
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"
_HEAD = "padding:2px 8px;border-bottom:2px solid #888;text-align:right"
_MARK = "background:#fff3c4;font-weight:bold"


def metrics_table_html(table: pd.DataFrame, highlight: str | None = None, digits: int = 3) -> str:
    """``table`` (index = OVERALL + categories) as an HTML table; every label is escaped and the
    ``highlight`` column is shaded. NaN shows as an em dash.

    Example:
        >>> t = pd.DataFrame({"cmc/1": [0.5]}, index=["<b>"])
        >>> "&lt;b&gt;" in metrics_table_html(t)
        True
    """
    cols = [str(c) for c in table.columns]
    head = "".join(
        f"<th style='{_HEAD};{_MARK if c == highlight else ''}'>{html.escape(c)}</th>" for c in cols)
    rows = []
    for name, values in zip(table.index, table.to_numpy(dtype=float)):
        cells = "".join(
            f"<td style='{_CELL};{_MARK if c == highlight else ''}'>"
            f"{'&mdash;' if np.isnan(v) else f'{v:.{digits}f}'}</td>"
            for c, v in zip(cols, values))
        label = html.escape(str(name))
        weight = "bold" if str(name) == OVERALL else "normal"
        rows.append(f"<tr><th style='{_CELL};text-align:left;font-weight:{weight}'>{label}</th>{cells}</tr>")
    return (f"<table class='ov-metrics-table' style='{TABLE_STYLE}'>"
            f"<thead><tr><th style='{_HEAD}'></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
