"""OML's documented logger blocks (tests/fixtures/oml_logger_blocks.yaml) work as written.

Each block is read from the fixture, its "..." lines dropped, and passed to ``create_logger``
unchanged. Local backends log and are read back; online ones fail at creation without
credentials (naming the variable) and are created with a token from the environment (they
connect lazily, so nothing here reaches the network).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

pytest.importorskip("lightning")
from oml_viz.loggers import create_logger

FIXTURE = Path(__file__).parent / "fixtures" / "oml_logger_blocks.yaml"


def block(name: str) -> dict:
    """The ``logger:`` mapping of one documented block, parsed as the page shows it."""
    text = yaml.safe_load(FIXTURE.read_text())[name]
    config = yaml.safe_load("\n".join(line for line in text.splitlines() if line.strip() != "..."))
    assert set(config) == {"logger"} and config["logger"]["name"] == name
    return config["logger"]


@pytest.fixture(autouse=True)
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT",
                "NEPTUNE_MODE", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE",
                "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "CLEARML_AUTH_TOKEN",
                "CLEARML_OFFLINE_MODE"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    (tmp_path / "clearml.conf").write_text("")
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "clearml.conf"))


def test_fixture_holds_the_five_documented_blocks():
    assert list(yaml.safe_load(FIXTURE.read_text())) == ["tensorboard", "neptune", "wandb",
                                                         "mlflow", "clearml"]


def test_tensorboard_block_logs_under_save_dir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = create_logger(block("tensorboard"))
    assert type(logger).__name__ == "TensorBoardPipelineLogger"
    assert type(create_logger(None)).__name__ == "TensorBoardPipelineLogger"  # no logger: key
    logger.log_metrics({"OVERALL/cmc/1": 0.5}, step=1)
    logger.finalize("success")
    log_dir = Path(logger.log_dir).resolve()
    assert log_dir.is_relative_to(tmp_path.resolve())  # save_dir "." is the working directory
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    ea.Reload()
    assert [(s.step, s.value) for s in ea.Scalars("OVERALL/cmc/1")] == [(1, 0.5)]


def test_mlflow_file_block_logs_to_that_folder_with_one_note(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from oml_viz.loggers import mlflow as ml

    monkeypatch.setattr(ml, "_FILE_STORE_NOTED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = create_logger(block("mlflow"))
        logger.log_metrics({"OVERALL/cmc/1": 0.5}, step=1)
        logger.log_metrics({"OVERALL/cmc/1": 0.75}, step=2)
        logger.finalize("success")
        create_logger(block("mlflow"))  # a second logger on the same store: no second note
    notes = [w for w in caught if "SQLite" in str(w.message)]
    assert len(notes) == 1 and "file:./ml-runs" in str(notes[0].message)
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # allowed only while the store opened
    assert (tmp_path / "ml-runs" / "0" / "meta.yaml").exists()
    run_dirs = list((tmp_path / "ml-runs").glob(f"*/{logger.run_id}"))
    assert len(run_dirs) == 1
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # read back with MLflow's own client
    client = MlflowClient("file:./ml-runs")
    assert client.get_experiment_by_name("test_project").experiment_id == run_dirs[0].parent.name
    hist = client.get_metric_history(logger.run_id, "OVERALL/cmc/1")
    assert {m.step: m.value for m in hist} == {1: 0.5, 2: 0.75}
    assert client.get_run(logger.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("name, variable", [("neptune", "NEPTUNE_API_TOKEN"),
                                            ("wandb", "WANDB_API_KEY")])
def test_online_block_needs_its_variable(tmp_path, monkeypatch, name, variable):
    with pytest.raises(ValueError, match=variable):
        create_logger(block(name))
    monkeypatch.setenv(variable, "x" * 40)
    logger = create_logger(block(name))  # connects on first use only
    assert type(logger).__name__.lower().startswith(name)
    project = logger._project if name == "neptune" else logger._wandb_init["project"]
    assert project == block(name)["args"]["project"]


def test_clearml_block_needs_credentials(tmp_path, monkeypatch):
    config = block("clearml")
    assert config["args"]["offline_mode"] is False
    with pytest.raises(ValueError, match="CLEARML_API_ACCESS_KEY"):
        create_logger(config)
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "A" * 20)
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "S" * 40)
    logger = create_logger(config)  # the task is created on first use
    assert logger.name == "test_project" and logger._task_name == "test" and not logger._offline
