"""MetricValCallback under a real DDP fit (2 CPU processes, gloo) equals `oml-viz validate`.

The fit runs in tests/ddp_fit_script.py (Lightning's DDP launcher re-runs a script, not pytest).
The validation rows have a ``sequence`` column and an odd count, so DistributedSampler pads a
shard with a repeated item: the callback must gather, deduplicate by idx, and honour sequences.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oml_viz.datasets import make_demo_dataset
from oml_viz.engine import evaluate
from oml_viz.loggers.flatten import flat_metrics
from oml_viz.pipelines.validate import validate_pipeline

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TINY_VIT = {"kind": "vit", "arch": "vit_tiny_patch16_224", "normalise_features": True,
            "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}
METRICS = {"cmc_top_k": [1, 3], "precision_top_k": [3], "map_top_k": [3], "fmr_vals": [0.2]}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "data"
    make_demo_dataset(root, n_classes=16, images_per_class=4, size=32, progress=False)
    df = pd.read_csv(root / "df.csv")
    # pairs of images of one label share a sequence; one validation row dropped: 31 rows, odd
    df["sequence"] = [f"{label}-{i // 2}" for i, label in zip(df.groupby("label").cumcount(), df["label"])]
    df = df.drop(index=df.index[df.split == "validation"][-1]).reset_index(drop=True)
    df.to_csv(root / "df_seq.csv", index=False)
    out = root.parent / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(HERE / "ddp_fit_script.py"), str(root / "df_seq.csv"), str(out),
                           json.dumps(TINY_VIT)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return root, out, reports


def test_ddp_metrics_equal_validate_on_the_same_weights(ddp_run, tmp_path):
    root, out, reports = ddp_run
    assert [r["world_size"] for r in reports] == [2, 2]
    # every process got the same numbers; the RetrievalResult lives on rank 0 only
    assert reports[0]["table"] == reports[1]["table"]
    assert reports[0]["callback_metrics"] == pytest.approx(reports[1]["callback_metrics"], abs=0)
    assert [r["has_result"] for r in reports] == [True, False]
    # the shards overlap by one padded item (31 rows, 2 x 16 seen)
    seen = [set(r["seen_idx"]) for r in reports]
    assert len(seen[0] | seen[1]) == 31 and sum(len(r["seen_idx"]) for r in reports) == 32

    cfg = {"dataset": {"dataframe": str(root / "df_seq.csv")}, "model": dict(TINY_VIT, weights=str(out / "model.pt")),
           "progress": False, "device": "cpu", "log_images": False, "metric_args": METRICS,
           "logger": {"name": "tensorboard", "args": {"save_dir": str(tmp_path / "tb")}}}
    run = validate_pipeline(cfg)
    expected = flat_metrics(run.metrics)
    assert set(reports[0]["table"]) == set(expected)
    assert reports[0]["table"] == pytest.approx(expected, abs=1e-6)
    assert {k: v for k, v in reports[0]["callback_metrics"].items() if k in expected} == pytest.approx(expected,
                                                                                                        abs=1e-6)

    # logged once, from rank 0: one CSV, each metric in exactly one row
    csvs = list((out / "csv").rglob("metrics.csv"))
    assert len(csvs) == 1
    logged = pd.read_csv(csvs[0])
    for key, value in expected.items():
        column = logged[key].dropna()
        assert len(column) == 1 and column.iloc[0] == pytest.approx(value, abs=1e-6)

    # the old callback's answer (one shard alone) differs: the test would catch it
    rows = run.rows
    mine = np.array(sorted(seen[0]))
    _, alone = evaluate(run.embeddings[mine], rows.label.to_numpy()[mine], rows.is_query.to_numpy(bool)[mine],
                        rows.is_gallery.to_numpy(bool)[mine], categories=rows.category.to_numpy()[mine],
                        sequence=rows.sequence.to_numpy()[mine], top_n=5,
                        metric_args=METRICS)
    alone = flat_metrics(alone)
    assert any(abs(alone[k] - expected[k]) > 1e-3 for k in expected if k in alone)

    # and sequences matter here: without them validate's numbers change
    _, no_seq = evaluate(run.embeddings, rows.label, rows.is_query.to_numpy(bool), rows.is_gallery.to_numpy(bool),
                         categories=rows.category, top_n=5, metric_args=METRICS)
    assert flat_metrics(no_seq) != pytest.approx(expected, abs=1e-6)
