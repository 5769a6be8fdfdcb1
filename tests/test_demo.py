"""`oml-viz demo --quick`: every output is written, the trained ViT beats its random init, reruns reuse."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oml_viz.pipelines.cli import main
from oml_viz.pipelines.demo import demo_assets


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "demo_output"
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["demo", "--quick", "--work-dir", str(work), "--no-progress"])
    assert code == 0
    return work, out.getvalue()


def test_demo_writes_every_output(demo_run):
    work, _ = demo_run
    table = pd.read_csv(work / "metrics.csv", index_col=0)
    assert table.index[0] == "OVERALL" and len(table) == 9  # OVERALL + 8 shape categories
    assert {"cmc/1", "cmc/5", "precision/5", "map/5", "fnmr@fmr/0.1", "pcf/0.5"} <= set(table.columns)
    for name in ("worst_queries", "attention", "gradcam", "compare", "confusions"):
        with Image.open(work / f"{name}.png") as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
            # a real picture, not a blank canvas
            assert np.asarray(im.convert("L")).std() > 10
    html = (work / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    for tab in ("Metrics", "Worst queries", "Attention", "Grad-CAM", "Compare", "Confusions"):
        assert tab in html
    ckpts = sorted(p.name.split("-")[0] for p in (work / "checkpoints").glob("*.pt"))
    assert ckpts == ["cnn", "vit"]
    assert (work / "train_vit.yaml").is_file() and (work / "train_cnn.yaml").is_file()


def test_demo_logs_to_tensorboard(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, _ = demo_run
    table = pd.read_csv(work / "metrics.csv", index_col=0)
    (run_dir,) = (work / "logs" / "demo_validate").glob("version_*")
    ea = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    assert ea.Scalars("OVERALL/cmc/1")[0].value == pytest.approx(table.loc["OVERALL", "cmc/1"])
    assert {"worst_queries/map/5", "attention", "gradcam", "compare", "confusions"} <= set(ea.Tags()["images"])
    assert ea.Scalars("compare/OVERALL/cmc/1/delta")[0].value == pytest.approx(
        table.loc["OVERALL", "cmc/1"] - ea.Scalars("compare/OVERALL/cmc/1/random init")[0].value, abs=1e-6)
    (train_dir,) = (work / "logs" / "demo_vit").glob("version_*")
    ea = EventAccumulator(str(train_dir))
    ea.Reload()
    assert "loss_step" in ea.Tags()["scalars"] and "OVERALL/cmc/1" in ea.Tags()["scalars"]


def test_demo_prints_trained_above_random_and_the_notebook_command(demo_run):
    work, out = demo_run
    m = re.search(r"CMC@1\s+trained ViT: ([0-9.]+)\s+random-init ViT .*: ([0-9.]+)", out)
    assert m, out
    trained, random = float(m.group(1)), float(m.group(2))
    table = pd.read_csv(work / "metrics.csv", index_col=0)
    assert trained == pytest.approx(table.loc["OVERALL", "cmc/1"], abs=5e-4)
    assert trained > random + 0.05
    assert re.search(r"jupyter lab notebooks/visualization\.ipynb", out)
    assert f"OML_VIZ_WORK_DIR={work}" in out


def test_rerun_reuses_the_checkpoints(demo_run):
    work, _ = demo_run
    before = {p.name: p.stat().st_mtime_ns for p in (work / "checkpoints").iterdir()}
    assets = demo_assets(work, quick=True, progress=False)
    assert assets.trained_now == []
    assert {p.name: p.stat().st_mtime_ns for p in (work / "checkpoints").iterdir()} == before
    assert assets.embeddings.dtype == np.float32 and assets.embeddings.shape[0] == len(assets.df)
    assert set(assets.df["split"]) == {"validation"} and assets.dataset_root == work / "data"
    # the cached embeddings are the reloaded model's
    np.testing.assert_allclose(assets.vit.extract(assets.df, progress=False), assets.embeddings, atol=1e-5)
    assert type(assets.vit).__name__ == "ViTExtractor" and type(assets.cnn).__name__ == "ResnetExtractor"
