"""The oml-viz command: exit codes, printed tables, and error messages that name the problem."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from oml_viz.datasets import make_demo_dataset
from oml_viz.pipelines.cli import main

TINY_VIT = {"kind": "vit", "arch": "vit_tiny_patch16_224",
            "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "data"
    make_demo_dataset(root, n_classes=16, images_per_class=3, size=32, progress=False)
    return root


def write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_console_script_is_declared_and_help_runs():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "oml-viz"]
    assert ep.value == "oml_viz.pipelines.cli:main"
    out = subprocess.run([sys.executable, "-m", "oml_viz.pipelines.cli", "--help"], capture_output=True, check=False,
                         text=True, timeout=120)
    assert out.returncode == 0
    for command in ("validate", "train", "demo"):
        assert command in out.stdout


def test_validate_prints_the_metrics_table(tmp_path, data_dir, capsys):
    # relative paths: the data from the config's folder, the logs from the working directory
    cfg = write(data_dir.parent, {"dataset": {"dataframe": "data/df.csv"}, "model": TINY_VIT,
                                  "logger": {"args": {"save_dir": str(tmp_path / "logs")}},
                                  "metric_args": {"cmc_top_k": [1, 2], "map_top_k": [2]}, "progress": False})
    assert main(["validate", cfg, "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert header == ["cmc/1", "cmc/2", "precision/5", "map/2"]
    assert lines[1].split()[0] == "OVERALL" and len(lines) == 1 + 1 + 8  # 8 shape categories
    values = [float(v) for v in lines[1].split()[1:]]
    assert all(0.0 <= v <= 1.0 for v in values) and values[0] <= values[1]
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("command, cfg, message", [
    ("validate", {"metric_args": {"cmc_topk": [1]}}, "metric_args.cmc_topk: unknown key"),
    ("validate", {"metric_args": {"cmc_top_k": [1, "5"]}}, "metric_args.cmc_top_k[1]: expected int, got str"),
    ("train", {"optimizer": {"lr": "1e-4"}}, "optimizer.lr: expected float, got str ('1e-4')"),
    ("validate", {"epochs": 2}, "epochs: unknown key"),
    ("train", {"dataset": {"dataframe": "nowhere/df.csv"}}, "dataset.dataframe: file not found: "),
    ("train", {"sampler": {"n_labels": 30}}, "n_labels=30 but only 8 labels have >= 2 items"),
    ("validate", {"model": {"arch": "resnet18", "kind": "vit"}}, "arch: 'resnet18' is not a vision transformer"),
])
def test_bad_configs_exit_2_with_a_message_naming_the_problem(tmp_path, data_dir, capsys, command, cfg, message):
    base = {"dataset": {"dataframe": str(data_dir / "df.csv")}, "model": TINY_VIT, "progress": False,
            "logger": {"args": {"save_dir": str(tmp_path / "logs")}}}
    base.update(cfg)
    assert main([command, write(tmp_path, base)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "logs").exists()  # nothing was logged for a config that failed its checks


def test_missing_config_file_and_bad_arguments(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["predict", "x.yaml"])
