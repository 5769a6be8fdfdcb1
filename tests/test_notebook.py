"""notebooks/visualization.ipynb runs top to bottom headless (nbclient), widget state stored.

The kernel is ``python3`` as seen by the Python running pytest: run the tests with
``.venv/bin/python -m pytest`` and the venv's ipykernel (its kernelspec lives in the venv) runs
the notebook. Demo assets are made in quick mode once per test session, in a folder the
browser test reuses (the demo caches its trained models by recipe).
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "visualization.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path_factory, monkeypatch):
    work = tmp_path_factory.getbasetemp() / "oml_viz_demo_quick"  # shared with tests/test_browser.py
    started = time.time()
    monkeypatch.setenv("OML_VIZ_WORK_DIR", str(work))
    monkeypatch.setenv("OML_VIZ_QUICK", "1")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path_factory.mktemp("jupyter_data")))  # no user kernelspecs
    work.mkdir(parents=True, exist_ok=True)
    demo_report = work / "report.html"  # what `oml-viz demo` wrote: the notebook must leave it alone
    demo_report.write_text("<html>the demo's report</html>")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    client = nbclient.NotebookClient(nb, kernel_name="python3", store_widget_state=True, timeout=240,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the cell on any error

    assert nb.cells[-1].outputs[0].text.strip() == f"kernel python: {sys.executable}"  # this venv's kernel
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert re.search(r"\d+ images, \d+ labels, \d+ categories", text)
    html_tables = "\n".join(o.data.get("text/html", "") for o in outputs if "data" in o)
    assert "OVERALL" in html_tables and "fnmr@fmr/0.1" in html_tables
    pngs = [o for o in outputs if "data" in o and "image/png" in o.data]
    assert len(pngs) >= 3  # worst-queries grid, attention heads, Grad-CAM

    # every panel's image reached the front end (state stored with its PNG buffer)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    images = {}
    for model in state.values():
        if model["model_name"] == "ImageModel":
            for cls in model["state"].get("_dom_classes", []):
                if model.get("buffers"):
                    images.setdefault(cls, []).append(model["buffers"][0]["data"])
    for cls in ("ov-metrics-image", "ov-grid-image", "ov-attn-image", "ov-cam-image"):
        assert cls in images, f"no rendered {cls} in the stored widget state"
    assert len(images["ov-grid-image"]) >= 2  # its own panel and the dashboard's

    assert demo_report.read_text() == "<html>the demo's report</html>", "the notebook overwrote the demo's report"
    report = work / "notebook_report.html"
    assert report.stat().st_mtime >= started - 1  # written by this run
    page = report.read_text()
    # Metrics, Worst queries, Attention, Grad-CAM, Compare (the random-init baseline), Confusions
    assert page.count("data:image/png;base64,") == 8 and "<script" not in page
    json.dumps(state)  # the stored state is plain JSON: the notebook can be saved with it


def test_notebook_uses_only_public_names():
    """The notebook is the user's example: it imports public names, nothing private."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"\bfrom oml_viz[\w.]* import [^\n]*\b_\w", source)
    assert not re.search(r"\._[a-z]\w*", source), "uses a private attribute"
