"""``oml-viz validate`` with a ``baseline:`` block: the comparison it logs is the one computed here."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import oml_viz as ov
from oml_viz.datasets import make_demo_dataset
from oml_viz.pipelines.config import ConfigError
from oml_viz.pipelines.validate import validate_pipeline

TINY_VIT = {"kind": "vit", "arch": "vit_tiny_patch16_224", "normalise_features": True,
            "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


class Recorder:
    """A logger that keeps what it is given."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.figures: list[str] = []
        self.status = None

    def log_pipeline_info(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=0):
        self.metrics.update(metrics)

    def log_figure(self, fig, name, step=0):
        assert ov.figure_to_array(fig).size > 0
        self.figures.append(name)

    def finalize(self, status):
        self.status = status


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    make_demo_dataset(root, n_classes=16, images_per_class=4, size=32, progress=False)
    return root


def write_cfg(tmp_path: Path, data_dir: Path, baseline: dict) -> Path:
    cfg = {"dataset": {"dataframe": str(data_dir / "df.csv")}, "model": TINY_VIT, "progress": False,
           "device": "cpu", "metric_args": {"cmc_top_k": [1], "precision_top_k": [], "map_top_k": [3]},
           "n_worst_queries": 3, "baseline": baseline}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("rows", ["validation", "all", "pt"])
def test_validate_logs_the_comparison_with_saved_embeddings(tmp_path, data_dir, rows):
    full = pd.read_csv(data_dir / "df.csv")
    val = full[full.split == "validation"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    emb_all = rng.normal(size=(len(full), 8)).astype(np.float32)
    emb_val = emb_all[(full.split == "validation").to_numpy()]
    if rows == "pt":
        path = tmp_path / "old.pt"
        torch.save({"embeddings": torch.from_numpy(emb_val)}, path)
    else:
        path = tmp_path / "old.npy"
        np.save(path, emb_all if rows == "all" else emb_val)
    cfg = write_cfg(tmp_path, data_dir, {"embeddings": path.name, "name": "v1", "n_boot": 200})
    log = Recorder()
    run = validate_pipeline(cfg, logger=log)
    assert log.status == "success"

    # the same comparison, computed here from the two embeddings
    kw = dict(top_n=5, categories=val.category, progress=False)
    current = ov.retrieve(run.embeddings, val.label, val.is_query, val.is_gallery, **kw)
    base = ov.retrieve(emb_val, val.label, val.is_query, val.is_gallery, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ov.compare(base, current, names=("v1", "current")).table(metrics=("cmc/1", "map/3"),
                                                                             n_boot=200, seed=0)
    pd.testing.assert_frame_equal(run.comparison_table, expected, check_exact=False, atol=1e-6)
    assert log.metrics["compare/OVERALL/map/3/delta"] == pytest.approx(expected.loc["OVERALL", "map/3/delta"])
    for col in ("v1", "current", "delta", "ci_low", "ci_high", "p_value"):
        assert f"compare/OVERALL/cmc/1/{col}" in log.metrics
    assert "compare/regressed/map/3" in log.figures and "worst_queries/map/3" in log.figures


def test_validate_with_a_baseline_model(tmp_path, data_dir):
    torch.manual_seed(1)
    other = dict(TINY_VIT, kwargs=dict(TINY_VIT["kwargs"], depth=2))
    cfg = write_cfg(tmp_path, data_dir, {"model": other, "kind": "improved", "metrics": ["cmc/1"],
                                         "n_boot": 100})
    log = Recorder()
    run = validate_pipeline(cfg, logger=log)
    assert list(run.comparison_table.columns)[:3] == ["cmc/1/baseline", "cmc/1/current", "cmc/1/delta"]
    assert run.comparison.a.retrieved_ids.shape == run.result.retrieved_ids.shape
    assert "compare/improved/map/3" in log.figures
    assert not any(k.startswith("compare/") and "/map/" in k for k in log.metrics)


def test_baseline_block_errors_name_the_key(tmp_path, data_dir):
    np.save(tmp_path / "bad.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ConfigError, match="baseline: give either model"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"name": "x"}), logger=Recorder())
    with pytest.raises(ConfigError, match="baseline: give either model"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "bad.npy", "model": TINY_VIT}),
                          logger=Recorder())
    with pytest.raises(FileNotFoundError, match="baseline.embeddings: file not found"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "nope.npy"}), logger=Recorder())
    with pytest.raises(ConfigError, match=r"baseline.metrics\[0\]: unknown metric 'mrr/3'"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "bad.npy", "metrics": ["mrr/3"]}),
                          logger=Recorder())
    with pytest.raises(ConfigError, match="baseline.n_boot"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "bad.npy", "n_boot": 10}), logger=Recorder())
    with pytest.raises(ConfigError, match="baseline.name: 'current'"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "bad.npy", "name": "current"}),
                          logger=Recorder())
    log = Recorder()
    with pytest.raises(ValueError, match="bad.npy has 5 rows; expected one per validation row"):
        validate_pipeline(write_cfg(tmp_path, data_dir, {"embeddings": "bad.npy"}), logger=log)
    assert log.status == "failed"
