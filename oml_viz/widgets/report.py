"""A standalone HTML report: escaped text, images inlined as base64 PNG, no scripts, no links out.

Example:
    >>> from oml_viz.widgets.png import rgb_to_png
    >>> import numpy as np
    >>> png_bytes = rgb_to_png(np.zeros((2, 2, 3), np.uint8))
    >>> page = html_report("run <1>", [("metrics", "<p>table</p>", [png_bytes])])
    >>> "<title>run &lt;1&gt;</title>" in page, page.count('src="data:image/png;base64,'), "<script" in page
    (True, 1, False)
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
from typing import Sequence

_CSS = """
body { font: 14px/1.4 sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
.meta { color: #666; font-size: 12px; } img { max-width: 100%; display: block; margin: 8px 0; }
section { margin-bottom: 28px; }
"""


def png_img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` inline; ``alt`` is escaped."""
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt=\"{html.escape(alt, quote=True)}\" src=\"data:image/png;base64,{data}\">"


def html_report(title: str, sections: Sequence[tuple[str, str, Sequence[bytes]]],
                meta: Sequence[tuple[str, str]] = ()) -> str:
    """A whole HTML page.

    Args:
        title: page title (escaped).
        sections: (heading, body_html, pngs); the heading is escaped; ``body_html`` must already be
            safe HTML (callers build it with escaped values); each PNG becomes an inline image.
        meta: (name, value) lines shown under the title, both escaped (e.g. the dataset root).
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [("generated", now), *meta]
    parts.append("<div class=\"meta\">" + "<br>".join(
        f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in lines) + "</div>")
    for heading, body, pngs in sections:
        imgs = "".join(png_img_tag(p, heading) for p in pngs)
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{body}{imgs}</section>")
    parts.append("</body></html>")
    return "".join(parts)
