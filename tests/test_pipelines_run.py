"""validate and train end to end on a tiny dataset, with real TensorBoard and MLflow loggers read back."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import oml_viz as ov
from oml_viz.datasets import make_demo_dataset
from oml_viz.pipelines.config import load_config
from oml_viz.pipelines.train import train_pipeline
from oml_viz.pipelines.validate import validate_pipeline

TINY_VIT = {"kind": "vit", "arch": "vit_tiny_patch16_224", "normalise_features": True,
            "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    # 16 classes: 8 train, 8 validation (half of each shape category), 4 images each
    make_demo_dataset(root, n_classes=16, images_per_class=4, size=32, progress=False)
    return root


def write_cfg(tmp_path: Path, data_dir: Path, **overrides) -> Path:
    cfg = {"dataset": {"dataframe": str(data_dir / "df.csv")}, "model": TINY_VIT, "progress": False,
           "device": "cpu", "metric_args": {"cmc_top_k": [1, 3], "map_top_k": [3], "fmr_vals": [0.2]}}
    cfg.update(overrides)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def tb_events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def flat(table: pd.DataFrame) -> dict[str, float]:
    return {f"{i}/{c}": float(v) for i, row in table.iterrows() for c, v in row.items() if not math.isnan(v)}


def test_validate_with_tensorboard_logs_what_the_engine_computes(tmp_path, data_dir):
    cfg = write_cfg(tmp_path, data_dir, logger={"name": "tensorboard", "args": {"save_dir": str(tmp_path / "tb")}})
    run = validate_pipeline(cfg)

    # the metrics are those of retrieve() on the validation rows' embeddings, computed here independently
    full = pd.read_csv(data_dir / "df.csv")
    val = full[full.split == "validation"].reset_index(drop=True)
    val.attrs["dataset_root"] = str(data_dir)
    emb = run.extractor.extract(val, batch_size=7, progress=False)
    np.testing.assert_allclose(emb, run.embeddings, rtol=1e-4, atol=1e-5)
    res = ov.retrieve(emb, val.label, val.is_query, val.is_gallery, top_n=5, categories=val.category)
    expected = res.metrics(cmc_top_k=(1, 3), precision_top_k=(5,), map_top_k=(3,), fmr_vals=(0.2,))
    pd.testing.assert_frame_equal(run.metrics, expected, check_exact=False, atol=1e-6)
    assert list(run.metrics.index) == ["OVERALL", *sorted(val.category.unique())]

    ea = tb_events(run.logger.log_dir)
    logged = {tag: ea.Scalars(tag) for tag in ea.Tags()["scalars"]}
    assert {tag: s[0].value for tag, s in logged.items()} == pytest.approx(flat(run.metrics))
    assert {s[0].step for s in logged.values()} == {0}
    assert [i.step for i in ea.Images("worst_queries/map/3")] == [0]
    art = Path(run.logger.log_dir) / "artifacts"
    saved = yaml.safe_load((art / "config.yaml").read_text())
    assert saved["dataset"]["dataframe"] == str(data_dir / "df.csv") and saved["model"]["arch"] == TINY_VIT["arch"]
    assert len(pd.read_csv(art / "dataframe.csv")) == len(full)


def test_validate_with_mlflow_overall_only_and_no_images(tmp_path, data_dir):
    from mlflow import MlflowClient

    tiny_cnn = {"kind": "resnet", "arch": "resnet18", "kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}}
    cfg = write_cfg(tmp_path, data_dir, log_images=False, tags=["nightly"], model=tiny_cnn, image_size=32,
                    metric_args={"cmc_top_k": [1], "map_top_k": [], "precision_top_k": [2],
                                 "return_only_overall_category": True},
                    logger={"name": "mlflow", "args": {"experiment_name": "t", "save_dir": str(tmp_path / "ml")}})
    run = validate_pipeline(cfg)
    assert list(run.metrics.index) == ["OVERALL"] and list(run.metrics.columns) == ["cmc/1", "precision/2"]
    assert type(run.extractor).__name__ == "ResnetExtractor" and run.embeddings.shape == (32, 64)
    # image_size=32 (not the CNN's default 224) is what the embeddings were computed at
    val = run.rows
    np.testing.assert_allclose(run.embeddings, ov.models.extract_embeddings(
        run.extractor, val, input_size=(32, 32), progress=False), rtol=1e-4, atol=1e-5)

    client = MlflowClient(run.logger._tracking_uri)
    info = client.get_run(run.logger.run_id)
    assert info.info.status == "FINISHED"
    assert info.data.metrics == pytest.approx(flat(run.metrics))
    assert {"nightly", "validate"} <= set(info.data.tags)
    assert client.list_artifacts(run.logger.run_id, "figures") == []


def test_validate_with_a_checkpoint_reproduces_the_trained_model(tmp_path, data_dir):
    tb = {"name": "tensorboard", "args": {"save_dir": str(tmp_path / "tb")}}
    train_cfg = write_cfg(tmp_path, data_dir, logger=tb, epochs=1, sampler={"n_labels": 4, "n_instances": 2},
                          checkpoint=str(tmp_path / "ckpt" / "vit.pt"), log_images=False)
    trained = train_pipeline(train_cfg)
    assert trained.checkpoint == tmp_path / "ckpt" / "vit.pt" and trained.checkpoint.is_file()

    model = dict(TINY_VIT, weights=str(trained.checkpoint))
    val_cfg = write_cfg(tmp_path, data_dir, logger=tb, model=model, log_images=False)
    again = validate_pipeline(val_cfg)
    np.testing.assert_allclose(again.embeddings, trained.embeddings, rtol=1e-4, atol=1e-5)
    pd.testing.assert_frame_equal(again.metrics, trained.metrics, check_exact=False, atol=1e-6)


def test_train_with_tensorboard_validates_every_period_and_at_the_end(tmp_path, data_dir):
    cfg_path = write_cfg(tmp_path, data_dir, epochs=3, valid_period=2, sampler={"n_labels": 4, "n_instances": 2},
                         optimizer={"name": "adam", "lr": 1.0e-3},
                         logger={"name": "tensorboard", "args": {"save_dir": str(tmp_path / "tb")}})
    cfg = load_config(cfg_path, "train")
    before = ov.models.ViTExtractor(TINY_VIT["arch"], **TINY_VIT["kwargs"])
    run = train_pipeline(cfg)

    # 8 train labels x 4 images = 32 items; batches of 4 x 2 -> 4 steps per epoch
    ea = tb_events(run.logger.log_dir)
    steps = [s.step for s in ea.Scalars("OVERALL/cmc/1")]
    # after epoch 2 (the period, inside fit) and after epoch 3 (the last one, not on the period)
    assert len(steps) == 2 and 7 <= steps[0] <= 8 and 11 <= steps[1] <= 12
    assert ea.Scalars("OVERALL/cmc/1")[-1].value == pytest.approx(run.metrics.loc["OVERALL", "cmc/1"])
    assert len(ea.Scalars("loss_step")) == 12
    for stat in ("pos_dist", "neg_dist", "active_tri"):
        assert f"loss/{stat}_epoch" in ea.Tags()["scalars"]
    assert len(ea.Images("worst_queries/map/3")) == 2

    # the run returns the trained model: it moved away from the seed's initialisation
    state = run.extractor.model.state_dict()
    assert any(not np.allclose(v.numpy(), state[k].numpy()) for k, v in before.model.state_dict().items())
    assert run.embeddings.shape == (32, 32)
    assert [r["epoch"] for r in run.history] == [0.0, 1.0, 2.0]


def test_train_with_mlflow_reads_back(tmp_path, data_dir):
    from mlflow import MlflowClient

    cfg = write_cfg(tmp_path, data_dir, epochs=2, valid_period=1, sampler={"n_labels": 2, "n_instances": 4},
                    loss={"margin": None, "miner": "hard"}, log_images=True,
                    metric_args={"cmc_top_k": [1, 3], "map_top_k": [3]},
                    logger={"name": "mlflow", "args": {"experiment_name": "t", "save_dir": str(tmp_path / "ml")}})
    run = train_pipeline(cfg)
    client = MlflowClient(run.logger._tracking_uri)
    hist = client.get_metric_history(run.logger.run_id, "OVERALL/cmc/1")
    assert len(hist) == 2
    assert max(hist, key=lambda m: m.step).value == pytest.approx(run.metrics.loc["OVERALL", "cmc/1"])
    assert len(client.get_metric_history(run.logger.run_id, "loss_step")) == 8
    figs = [a.path for a in client.list_artifacts(run.logger.run_id, "figures/worst_queries_map_3")]
    assert len(figs) == 2
    assert client.get_run(run.logger.run_id).data.params["loss/miner"] == "hard"


def test_pipeline_errors_name_the_problem(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default logger writes to ./logs: it must not be created
    bad = pd.read_csv(data_dir / "df.csv")
    bad.loc[3, "split"] = "test"
    (tmp_path / "bad").mkdir()
    bad.to_csv(tmp_path / "bad" / "df.csv", index=False)
    cfg = write_cfg(tmp_path, data_dir, dataset={"dataframe": str(tmp_path / "bad" / "df.csv"),
                                                 "dataset_root": str(data_dir)})
    with pytest.raises(ValueError, match=r"row 3, column 'split'"):
        validate_pipeline(cfg)
    cfg = write_cfg(tmp_path, data_dir, sampler={"n_labels": 9, "n_instances": 2})
    with pytest.raises(ValueError, match=r"n_labels=9 but only 8 labels"):
        train_pipeline(cfg)
    cfg = write_cfg(tmp_path, data_dir, image_size=48)
    with pytest.raises(ValueError, match="image_size: 48 does not fit the ViT, built for 32x32"):
        validate_pipeline(cfg)
    cfg = write_cfg(tmp_path, data_dir, model={"arch": "not_a_model"})
    with pytest.raises(ValueError, match="arch: 'not_a_model' is not a timm model name"):
        validate_pipeline(cfg)
    assert not (tmp_path / "logs").exists()
