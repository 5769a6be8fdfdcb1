"""Regenerate the README's pictures: ``python tools/screenshots.py`` (or ``make screenshots``).

1. ``oml-viz demo`` (reusing its trained checkpoints in ``--work-dir``) writes the worst-queries grid,
   the attention and the Grad-CAM figures;
2. JupyterLab in Debian's Chromium (driven by Playwright, as ``tests/test_browser.py``) runs
   ``notebooks/visualization.ipynb`` over that work dir; in the dashboard a result is clicked and
   every tab is photographed;
3. every picture is scaled to at most ``--width`` pixels and stored as an optimised palette PNG in
   ``docs/images/`` (the README embeds them; the total stays well under 1.5 MB).

Everything runs offline on the CPU. The JupyterLab server is started on a free port with its
settings in a temporary folder, and only that server is ended afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "visualization.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
DEMO_FIGURES = {"worst_queries": "worst_queries_grid", "attention": "attention", "gradcam": "gradcam"}


def optimise(src: Path | Image.Image, dst: Path, width: int, colours: int = 192) -> Path:
    """``src`` scaled to at most ``width`` px wide, as a palette PNG (UI pictures keep their look)."""
    im = src if isinstance(src, Image.Image) else Image.open(src)
    im = im.convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    im.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dst, optimize=True)
    return dst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_lab(root: Path, tmp: Path, work_dir: Path, quick: bool) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, OML_VIZ_WORK_DIR=str(work_dir), OML_VIZ_QUICK="1" if quick else "0",
               JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    log = open(tmp / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.token=", "--ServerApp.password=",
         f"--port={port}", "--port-retries=0", "--ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _wait_for(lambda: proc.poll() is None and _get_json(f"{base}/api/status"), 60, "JupyterLab to start")
    return proc, base


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server we started and its kernels, nothing else
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# a tab is ready when no busy bar shows and every visible image has loaded (an empty slot, such as
# the pair view before a click, counts as loaded)
_SETTLED = """el => {
  const imgs = [...el.querySelectorAll('img')].filter(i => i.offsetParent !== null);
  const busy = [...el.querySelectorAll('.ov-progress')].some(p => p.offsetParent !== null);
  return !busy && imgs.every(i => i.complete);
}"""


def browser_shots(work_dir: Path, raw: Path, quick: bool, timeout_s: float = 900) -> list[Path]:
    """Run the notebook in JupyterLab and photograph the dashboard's tabs; returns the raw PNGs."""
    from playwright.sync_api import sync_playwright

    shots: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="oml-viz-shots-") as t:
        tmp = Path(t)
        root = tmp / "lab"
        root.mkdir()
        shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
        proc, base = _start_lab(root, tmp, work_dir, quick)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(f"{base}/lab/tree/{NOTEBOOK.name}")
                    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=60_000)
                    _wait_for(lambda: all(s["kernel"]["execution_state"] == "idle"
                                          for s in _get_json(f"{base}/api/sessions")) and _get_json(f"{base}/api/sessions"),
                              90, "the kernel")
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                    page.wait_for_selector(".jp-OutputArea-output:has-text('report:')", timeout=timeout_s * 1000)
                    dash = page.locator(".ov-dashboard").first
                    dash.scroll_into_view_if_needed()
                    titles = [t.strip() for t in dash.locator(".lm-TabBar-tab .lm-TabBar-tabLabel").all_inner_texts()]
                    for i, title in enumerate(titles):
                        dash.locator(".lm-TabBar-tab", has_text=title).first.click()
                        if title == "Worst queries":  # open a result: its pairwise explanation shows too
                            dash.locator(".ov-worst-queries .ov-result-row").first.locator(
                                ".ov-result-button").first.click()
                        page.wait_for_timeout(1000)
                        try:
                            page.wait_for_function(_SETTLED, arg=dash.element_handle(), timeout=180_000)
                        except Exception as e:  # photograph it anyway, and say so
                            print(f"warning: tab {title!r} did not settle: {e}".splitlines()[0], file=sys.stderr)
                            page.screenshot(path=str(raw / f"unsettled_{i}.png"), full_page=True)
                        page.wait_for_timeout(500)
                        name = f"dashboard_{i}_{title.lower().replace(' ', '_').replace('-', '')}.png"
                        # the notebook scrolls inside its own panel: a viewport taller than the
                        # dashboard lets the element be photographed whole, in one piece
                        height = dash.bounding_box()["height"]
                        page.set_viewport_size({"width": 1400, "height": int(max(1000, height + 400))})
                        dash.scroll_into_view_if_needed()
                        page.wait_for_timeout(300)
                        dash.screenshot(path=str(raw / name))
                        page.set_viewport_size({"width": 1400, "height": 1000})
                        shots.append(raw / name)
                finally:
                    browser.close()
        finally:
            _stop(proc)
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", default=str(REPO / "demo_output"), help="the demo's work dir (reused)")
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    ap.add_argument("--width", type=int, default=960, help="largest picture width in pixels")
    ap.add_argument("--quick", action="store_true", help="the quick demo (tests' tiny recipe)")
    ap.add_argument("--no-browser", action="store_true", help="only the demo's figures")
    ap.add_argument("--skip-demo", action="store_true", help="use the figures a demo run already left in --work-dir")
    ap.add_argument("--raw-dir", help="keep the unscaled browser screenshots here (default: a temporary folder)")
    args = ap.parse_args(argv)
    work, out = Path(args.work_dir).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if not args.skip_demo:
        from oml_viz.pipelines.run_demo import run_demo

        run_demo(work, quick=args.quick, progress=False, echo=None)
    written = [optimise(work / f"{k}.png", out / f"{v}.png", args.width) for k, v in DEMO_FIGURES.items()]
    if not args.no_browser:
        with tempfile.TemporaryDirectory(prefix="oml-viz-raw-") as r:
            raw = Path(args.raw_dir or r)
            raw.mkdir(parents=True, exist_ok=True)
            for shot in browser_shots(work, raw, args.quick):
                written.append(optimise(shot, out / shot.name, args.width))
    total = sum(p.stat().st_size for p in written)
    for p in written:
        print(f"{p.stat().st_size / 1e3:7.0f} kB  {p.relative_to(REPO) if p.is_relative_to(REPO) else p}")
    print(f"{total / 1e6:7.2f} MB  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
