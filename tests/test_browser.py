"""The notebook in a real browser: JupyterLab in Debian's Chromium, driven by Playwright.

Runs all cells, pages the worst-queries panel and switches the attention head, and checks that
each panel's image changed on screen; clicks a result and waits for its pairwise explanation. Screenshots go to ``test-artifacts/browser/``.
The test starts its own JupyterLab (a free port, settings and workspaces in a temporary folder)
and ends only that process. It is skipped only where /usr/bin/chromium is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "visualization.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture
def lab(tmp_path, tmp_path_factory):
    """A JupyterLab server on a free port over a copy of the notebook; yields its base URL."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port = free_port()
    work = tmp_path_factory.getbasetemp() / "oml_viz_demo_quick"  # shared with tests/test_notebook.py
    env = dict(os.environ, OML_VIZ_WORK_DIR=str(work), OML_VIZ_QUICK="1",
               # everything the server writes or reads per user stays in tmp_path; the venv's
               # kernelspec and widget extension (under sys.prefix) are what it finds
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    # no news or update checks: the machine is offline, and their toast would cover the page
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = open(tmp_path / "lab.log", "wb")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.token=", "--ServerApp.password=",
           f"--port={port}", "--port-retries=0", "--ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={root}"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and get_json(f"{base}/api/status"), 60, "JupyterLab to start")
        yield base
    finally:
        # end only the server we started (and its kernels, which are in its own session group)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "lab.log", ARTIFACTS / "jupyterlab.log")


def kernel_idle(base: str) -> bool:
    sessions = get_json(f"{base}/api/sessions")
    return bool(sessions) and all(s["kernel"]["execution_state"] == "idle" for s in sessions)


def image_src(locator) -> str:
    return locator.evaluate("el => el.src")


def test_notebook_widgets_respond_in_jupyterlab(lab):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{lab}/lab/tree/{NOTEBOOK.name}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=60_000)
            wait_for(lambda: kernel_idle(lab), 90, "the kernel to be idle")

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            # the last cell prints the report path when everything above it has run
            page.wait_for_selector(".jp-OutputArea-output:has-text('report:')", timeout=170_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                  ":has-text('Traceback')")
            assert errors.count() == 0, errors.first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "01_after_run_all.png"))

            # page the worst-queries panel: the grid image must change on screen
            panel = page.locator(".ov-worst-queries").first
            grid = panel.locator(".ov-grid-image")
            grid.scroll_into_view_if_needed()
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=grid.element_handle(),
                                   timeout=30_000)
            before_src, before = image_src(grid), grid.screenshot(path=str(ARTIFACTS / "02_worst_page1.png"))
            panel.locator(".ov-next-page").click()
            page.wait_for_function("([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
                                   arg=[grid.element_handle(), before_src], timeout=60_000)
            after = grid.screenshot(path=str(ARTIFACTS / "03_worst_page2.png"))
            assert after != before
            assert "page 2 /" in panel.locator(".ov-page-label").inner_text()

            # click a result: the pairwise explanation appears under the grid
            pair = panel.locator(".ov-pair-image")
            panel.locator(".ov-result-row").first.locator(".ov-result-button").first.click()
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=pair.element_handle(),
                                   timeout=60_000)
            pair.scroll_into_view_if_needed()
            pair.screenshot(path=str(ARTIFACTS / "03b_worst_pair.png"))

            # switch the attention head: the attention image must change on screen
            att = page.locator(".ov-attention").first
            image = att.locator(".ov-attn-image")
            image.scroll_into_view_if_needed()
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle(),
                                   timeout=30_000)
            before_src, before = image_src(image), image.screenshot(path=str(ARTIFACTS / "04_attention_mean.png"))
            att.locator(".ov-attn-head button", has_text="head 1").click()
            page.wait_for_function("([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
                                   arg=[image.element_handle(), before_src], timeout=60_000)
            after = image.screenshot(path=str(ARTIFACTS / "05_attention_head1.png"))
            assert after != before
            page.screenshot(path=str(ARTIFACTS / "06_final.png"), full_page=True)
        finally:
            browser.close()


MAP_CELLS = [
    "import numpy as np\n"
    "from oml_viz.widgets import EmbeddingMapPanel\n"
    "rng = np.random.default_rng(0)\n"
    "xy = rng.normal(size=(500, 2)).astype('float32')\n"
    "labels = rng.integers(0, 5, 500)\n"
    "images = [np.full((32, 32, 3), 40 * int(v), np.uint8) for v in labels]\n"
    "panel = EmbeddingMapPanel(xy, images, labels=labels)\n"
    "panel",
    "panel.select([1, 2, 3]); panel.wait(); print('selected', panel.selected)",
]


def test_map_panel_renders_and_a_selection_fills_the_grid(lab, tmp_path):
    """The jupyter-scatter map draws its WebGL canvas in the page, and a selection made from the
    kernel (as a lasso would send it) fills the image grid under the map."""
    import nbformat

    playwright = pytest.importorskip("playwright.sync_api")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in MAP_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "lab" / "map.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{lab}/lab/tree/map.ipynb")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=60_000)
            wait_for(lambda: kernel_idle(lab), 90, "the kernel to be idle")
            page.locator(".jp-Cell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")  # the first cell: the panel
            canvas = page.locator(".ov-map-scatter canvas").first
            canvas.wait_for(state="visible", timeout=120_000)
            box = canvas.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100
            grid = page.locator(".ov-embedding-map .ov-map-grid").first
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=grid.element_handle(),
                                   timeout=60_000)
            before_src = image_src(grid)
            page.locator(".ov-embedding-map").first.screenshot(path=str(ARTIFACTS / "10_map.png"))
            page.keyboard.press("Escape")
            page.locator(".jp-Cell .jp-InputArea-editor").nth(1).click()
            page.keyboard.press("Shift+Enter")  # the second cell: select three items
            page.wait_for_selector(".jp-OutputArea-output:has-text('selected [1, 2, 3]')", timeout=60_000)
            page.wait_for_function("([el, old]) => el.src !== old && el.complete && el.naturalWidth > 100",
                                   arg=[grid.element_handle(), before_src], timeout=60_000)
            grid.scroll_into_view_if_needed()
            page.locator(".ov-embedding-map").first.screenshot(path=str(ARTIFACTS / "11_map_selected.png"))
            assert "3 selected" in page.locator(".ov-embedding-map .ov-map-selection").first.inner_text()
        finally:
            browser.close()
