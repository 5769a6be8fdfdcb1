"""Every backend logs offline for real and is read back with that backend's own reader.

Readers: TensorBoard's event accumulator, the MLflow client, the W&B run file (records decoded
with wandb's own protobuf), Neptune's offline operation log, ClearML's offline session zip.
Nothing here may reach the network: each backend runs in its offline mode inside tmp_path.
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightning")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from oml_viz.loggers import create_logger, flat_metrics, flatten_config

CFG = {"model": {"name": "vit_s16", "dims": [384, 128]}, "optimizer": {"lr": 0.001}, "seed": 7}
FLAT = {"model/name": "vit_s16", "model/dims/0": 384, "model/dims/1": 128,
        "optimizer/lr": 0.001, "seed": 7}
DF = pd.DataFrame({"label": [0, 0, 1], "path": ["a.jpg", "b.jpg", "c.jpg"], "split": ["validation"] * 3})
TAGS = ["demo", "nightly"]
VALUES = {1: 0.5, 2: 0.75}


@pytest.fixture(autouse=True)
def offline_env(tmp_path, monkeypatch):
    """Run in tmp_path with no credentials, no user config and no way to phone home."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc, ~/clearml.conf, ~/.config/wandb
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NEPTUNE_API_TOKEN",
                "NEPTUNE_PROJECT", "NEPTUNE_MODE", "MLFLOW_TRACKING_URI", "CLEARML_API_ACCESS_KEY",
                "CLEARML_API_SECRET_KEY", "CLEARML_AUTH_TOKEN", "CLEARML_OFFLINE_MODE"):
        monkeypatch.setenv(var, "")  # recorded, so whatever a backend sets is undone after
        monkeypatch.delenv(var)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml_cache"))
    (tmp_path / "clearml.conf").write_text("")
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "clearml.conf"))
    yield


def _figure(value: float):
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.bar([0], [value])  # each step's figure looks different
    return fig


def _log_run(logger) -> None:
    for step, value in VALUES.items():
        logger.log_metrics({"OVERALL/cmc/1": value, "shoes/map/5": value / 2}, step=step)
        fig = _figure(value)
        logger.log_figure(fig, "worst_queries/map/5", step=step)
        plt.close(fig)
    logger.log_pipeline_info(CFG, dataframe=DF, tags=TAGS)
    logger.finalize("success")


def _check_pipeline_zip(data: bytes) -> None:
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "oml_viz/loggers/factory.py" in names and "oml_viz/__init__.py" in names


def _check_local_csv(logger) -> None:
    csv = pd.read_csv(logger.metrics_csv)
    got = csv[csv.key == "OVERALL/cmc/1"].set_index("step").value.to_dict()
    assert got == VALUES


# -- the five backends ------------------------------------------------------------------------
def test_tensorboard_is_the_default_and_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = create_logger({"args": {"save_dir": str(tmp_path / "tb")}})
    assert type(logger).__name__ == "TensorBoardPipelineLogger"
    assert type(create_logger(None)).__name__ == "TensorBoardPipelineLogger"
    _log_run(logger)
    ea = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    ea.Reload()
    assert {s.step: s.value for s in ea.Scalars("OVERALL/cmc/1")} == VALUES
    images = ea.Images("worst_queries/map/5")
    assert [i.step for i in images] == [1, 2]
    assert images[0].encoded_image_string != images[1].encoded_image_string
    tags_text = ea.Tensors("tags/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "demo" in tags_text and "nightly" in tags_text
    art = Path(logger.log_dir) / "artifacts"
    _check_pipeline_zip((art / "source_code.zip").read_bytes())
    pd.testing.assert_frame_equal(pd.read_csv(art / "dataframe.csv"), DF)
    _check_local_csv(logger)


def test_mlflow_sqlite_by_default_reads_back(tmp_path):
    from mlflow import MlflowClient

    logger = create_logger({"name": "mlflow", "args": {"experiment_name": "demo",
                                                       "save_dir": str(tmp_path / "ml")}})
    _log_run(logger)
    assert logger.tracking_uri.startswith("sqlite:///")
    client = MlflowClient(logger.tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    hist = client.get_metric_history(logger.run_id, "OVERALL/cmc/1")
    assert {m.step: m.value for m in hist} == VALUES
    logger.log_metrics({"OVERALL/fnmr@fmr/0.1": 0.25}, step=3)  # '@' is not allowed in MLflow names
    assert client.get_metric_history(logger.run_id, "OVERALL/fnmr_at_fmr/0.1")[0].value == 0.25
    assert "OVERALL/fnmr@fmr/0.1" in logger.metrics_csv.read_text()  # the CSV keeps the real key
    assert run.data.params == {k: str(v) for k, v in FLAT.items()}
    assert set(TAGS) <= set(run.data.tags)
    figs = [a.path for a in client.list_artifacts(logger.run_id, "figures/worst_queries_map_5")]
    assert figs == ["figures/worst_queries_map_5/step_000001.png",
                    "figures/worst_queries_map_5/step_000002.png"]
    out = Path(client.download_artifacts(logger.run_id, "pipeline", str(tmp_path / "dl")))
    pd.testing.assert_frame_equal(pd.read_csv(out / "dataframe.csv"), DF)
    _check_pipeline_zip((out / "source_code.zip").read_bytes())
    _check_local_csv(logger)


def _wandb_records(path: Path):
    """Decode a ``.wandb`` file: a LevelDB-style log of wandb's own protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(body)
        elif kind == 2:
            buf = body
        elif kind == 3:
            buf += body
        elif kind == 4:
            chunks.append(buf + body)
    records = []
    for raw in chunks:
        rec = pb.Record()
        rec.ParseFromString(raw)
        records.append(rec)
    return records


def _wandb_finished_records(path: Path, timeout: float = 60.0):
    """W&B's writer process may finish the file a moment after ``finish()`` returns: wait for
    the run's ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = _wandb_records(path)
            if any(r.WhichOneof("record_type") == "exit" for r in records):
                return records
        except Exception:  # noqa: BLE001, S110 -- a record still being written
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"W&B never completed {path}")
        time.sleep(0.2)


def test_wandb_offline_run_file_reads_back(tmp_path):
    logger = create_logger({"name": "wandb", "args": {"project": "demo", "offline": True,
                                                      "save_dir": str(tmp_path / "wb")}})
    _log_run(logger)
    assert "WANDB_MODE" not in os.environ  # offline without a process-wide side effect
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("*.wandb")
    history, config, tags = [], {}, []
    for rec in _wandb_finished_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in rec.history.item})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "run":
            tags = list(rec.run.tags) or tags
    scalars = {h["trainer/global_step"]: h["OVERALL/cmc/1"] for h in history if "OVERALL/cmc/1" in h}
    assert scalars == VALUES
    image_rows = [h for h in history if "worst_queries/map/5/path" in h]
    assert [h["trainer/global_step"] for h in image_rows] == [1, 2]
    paths = [run_dir / "files" / h["worst_queries/map/5/path"] for h in image_rows]
    assert paths[0] != paths[1] and all(p.is_file() for p in paths)
    assert {k: config[k] for k in FLAT} == FLAT
    assert set(TAGS) <= set(tags)
    files = run_dir / "files"
    _check_pipeline_zip((files / "source_code.zip").read_bytes())
    pd.testing.assert_frame_equal(pd.read_csv(files / "dataframe.csv"), DF)
    _check_local_csv(logger)

    # Lightning finalizes after fit; a later trainer.validate must resume the same run
    logger.log_metrics({"OVERALL/cmc/1": 0.9}, step=3)
    logger.finalize("success")
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and runs[0].name.split("-")[-1] == runs[1].name.split("-")[-1]
    (resumed,) = runs[1].glob("*.wandb")
    more = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in _wandb_finished_records(resumed) if r.WhichOneof("record_type") == "history"]
    assert [h["OVERALL/cmc/1"] for h in more] == [0.9]


def test_neptune_offline_folder_reads_back(tmp_path):
    logger = create_logger({"name": "neptune", "args": {"project": "ws/demo", "mode": "offline",
                                                        "save_dir": str(tmp_path / "np")}})
    _log_run(logger)
    (run_dir,) = (tmp_path / ".neptune" / "offline").glob("run__*")
    ops = [json.loads(line)["obj"] for line in (run_dir / "data-1.log").read_text().splitlines()]

    def of(kind, path):
        return [op for op in ops if op["type"] == kind and "/".join(op["path"]) == path]

    scalars = {v["step"]: v["value"] for op in of("LogFloats", "OVERALL/cmc/1") for v in op["values"]}
    assert scalars == VALUES
    images = [v for op in of("LogImages", "worst_queries/map/5") for v in op["values"]]
    assert [v["step"] for v in images] == [1, 2]
    assert images[0]["value"]["data"] != images[1]["value"]["data"]
    params = {"/".join(op["path"][1:]): op["value"] for op in ops
              if op["path"][0] == "parameters" and op["type"].startswith("Assign")}
    assert params == FLAT
    assert set(TAGS) <= {v for op in of("AddStrings", "sys/tags") for v in op["values"]}
    uploads = {op["path"][-1]: op for op in ops if op["type"] == "UploadFile"}
    assert {"source_code", "dataframe", "config"} <= set(uploads)
    df_path = Path(uploads["dataframe"]["file_path"])
    pd.testing.assert_frame_equal(pd.read_csv(df_path), DF)
    _check_local_csv(logger)
    with pytest.warns(RuntimeWarning, match=f"run {run_dir.name.split('__')[1]} was finalized"):
        logger.log_metrics({"OVERALL/cmc/1": 0.9}, step=3)  # offline runs cannot be resumed
    logger.finalize("success")
    assert len(list((tmp_path / ".neptune" / "offline").glob("run__*"))) == 2


def test_clearml_offline_session_reads_back(tmp_path):
    logger = create_logger({"name": "clearml", "args": {
        "project_name": "demo", "task_name": "run1", "offline_mode": True,
        "save_dir": str(tmp_path / "cm")}})
    folder = logger.offline_folder
    _log_run(logger)
    # (ClearML's offline switch stays on for this process: switching back connects to a server)
    session = folder.parent / f"{folder.name}.zip"
    with zipfile.ZipFile(session) as zf:
        events = [e for name in zf.namelist() if name.endswith("metrics.jsonl")
                  for line in zf.read(name).decode().splitlines() if line.strip()
                  for e in json.loads(line)]
        task = json.loads(zf.read("task.json"))
        names = zf.namelist()
        scalars = {e["iter"]: e["value"] for e in events
                   if e["type"] == "training_stats_scalar" and e["metric"] == "OVERALL"
                   and e["variant"] == "cmc/1"}
        assert scalars == VALUES
        images = [e for e in events if e["type"] == "training_debug_image"]
        assert [(e["metric"], e["variant"], e["iter"]) for e in images] == [
            ("worst_queries", "map/5", 1), ("worst_queries", "map/5", 2)]
        stored = [n for n in names if n.endswith((".jpeg", ".png"))]
        assert len(stored) == 2  # one file per step, not one overwritten file
        art = {n.rsplit("/", 1)[-1]: n for n in names if "/artifacts/" in n}
        _check_pipeline_zip(zf.read(art["source_code.zip"]))
        pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(zf.read(art["dataframe.csv"]))), DF)
    assert task["id"] == folder.name
    assert {k: v["value"] for k, v in task["hyperparams"]["config"].items()} == {
        k: str(v) for k, v in FLAT.items()}
    assert set(TAGS) <= set(task["tags"])
    _check_local_csv(logger)


# -- error paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, module", [("wandb", "wandb"), ("neptune", "neptune"),
                                          ("clearml", "clearml"), ("mlflow", "mlflow"),
                                          ("tensorboard", "lightning.pytorch")])
def test_missing_sdk_names_the_extra(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # import of a None entry raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'oml_viz\[loggers\]'") as err:
        create_logger({"name": name, "args": {}})
    assert name in str(err.value)


@pytest.mark.parametrize("name, args, word", [
    ("wandb", {"project": "demo"}, "WANDB_API_KEY"),
    ("neptune", {"project": "ws/demo"}, "NEPTUNE_API_TOKEN"),
    ("neptune", {"api_token": "x" * 20}, "project"),
    ("clearml", {"project_name": "demo", "task_name": "t"}, "CLEARML_API_ACCESS_KEY"),
])
def test_online_backend_without_credentials_fails_at_creation(tmp_path, name, args, word):
    with pytest.raises(ValueError, match=word):
        create_logger({"name": name, "args": {**args, "save_dir": str(tmp_path / "x")}})
    assert not (tmp_path / ".neptune").exists() and not (tmp_path / "x" / "wandb").exists()


@pytest.mark.parametrize("config, word", [
    ({"name": "comet"}, "comet"),
    ({"name": "mlflow", "args": {"experiment": "x"}}, "experiment"),
    ({"name": "neptune", "args": {"mode": "offline", "init_kwargs": {}}}, "init_kwargs"),
    ({"name": "wandb", "args": ["offline"]}, "args"),
    ({"name": "wandb", "arg": {}}, "arg"),
    ("tensorboard", "mapping"),
])
def test_bad_logger_config_is_named(config, word):
    with pytest.raises(ValueError, match=word):
        create_logger(config)


def test_backend_failing_mid_run_warns_once_and_keeps_local_copy(tmp_path):
    logger = create_logger({"name": "mlflow", "args": {"save_dir": str(tmp_path / "ml")}})
    logger.log_metrics({"OVERALL/cmc/1": 0.1}, step=0)
    # the tracking store vanishes mid-run (a dropped server, a deleted database)
    db = tmp_path / "ml" / "mlflow.db"
    db.unlink()
    db.mkdir()  # a directory where the database was: every later call fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, value in VALUES.items():
            logger.log_metrics({"OVERALL/cmc/1": value}, step=step)
            fig = _figure(value)
            logger.log_figure(fig, "worst_queries/map/5", step=step)
            plt.close(fig)
        logger.finalize("success")
    mine = [w for w in caught if issubclass(w.category, RuntimeWarning) and "mlflow" in str(w.message)]
    assert len(mine) == 1 and "metrics.csv" in str(mine[0].message)
    assert logger.backend_failed
    csv = pd.read_csv(logger.metrics_csv)
    assert csv.set_index("step").value.to_dict() == {0: 0.1, **VALUES}
    saved = sorted(p.name for p in (tmp_path / "ml" / "figures").iterdir())
    assert saved == ["worst_queries_map_5_step000001.png", "worst_queries_map_5_step000002.png"]


def test_bad_values_are_named(tmp_path):
    logger = create_logger({"args": {"save_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match="OVERALL/cmc/1"):
        logger.log_metrics({"OVERALL/cmc/1": "high"}, step=0)
    with pytest.raises(ValueError, match="fig"):
        logger.log_figure(np.zeros((4, 4, 3)), "x", step=0)
    with pytest.raises(ValueError, match="title"):
        logger.log_figure(_figure(1.0), "", step=0)
    with pytest.raises(ValueError, match="cfg"):
        logger.log_pipeline_info(["not", "a", "mapping"])
    with pytest.raises(ValueError, match="dataframe"):
        logger.log_pipeline_info(CFG, dataframe=[1, 2])
    plt.close("all")


def test_importing_the_package_needs_no_tracker_sdk():
    import subprocess

    code = ("import sys, oml_viz.loggers as L; L.flatten_config({}); "
            "print(sorted(m for m in ('lightning', 'wandb', 'mlflow', 'neptune', 'clearml') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- helpers ----------------------------------------------------------------------------------
def test_flatten_config_and_flat_metrics():
    assert flatten_config(CFG) == FLAT
    assert flatten_config({"a": {}, "b": [], "c": None}) == {"a": "{}", "b": "[]", "c": "None"}
    table = pd.DataFrame({"cmc/1": [0.5, np.nan], "map/5": [0.25, 1.0]}, index=["OVERALL", "bags"])
    assert flat_metrics(table) == {"OVERALL/cmc/1": 0.5, "OVERALL/map/5": 0.25, "bags/map/5": 1.0}
