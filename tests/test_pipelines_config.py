"""Config schema: every error names its key path; missing files name their path; defaults."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from oml_viz.pipelines.config import (
    TrainConfig,
    ValidateConfig,
    config_from_dict,
    load_config,
)
from oml_viz.pipelines.schema import ConfigError


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    p = tmp_path / "data" / "df.csv"
    p.parent.mkdir()
    p.write_text("label,path,split,is_query,is_gallery\n")
    return p


def problems_of(data, kind="validate", base=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, kind, base_dir=base)
    assert str(info.value).count("\n") == len(info.value.problems)  # one line per problem
    return info.value.problems


def ds(csv: Path) -> dict:
    return {"dataframe": str(csv)}


def test_minimal_config_gets_defaults(csv):
    cfg = config_from_dict({"dataset": ds(csv)}, "validate")
    assert isinstance(cfg, ValidateConfig) and not isinstance(cfg, TrainConfig)
    assert cfg.logger.name == "tensorboard" and cfg.logger.args == {}
    assert cfg.metric_args.cmc_top_k == [1, 5] and cfg.metric_args.top_n == 5
    assert cfg.model.kind == "vit" and cfg.model.weights is None
    train = config_from_dict({"dataset": ds(csv), "epochs": 3}, "train")
    assert train.epochs == 3 and train.loss.miner == "all" and train.sampler.n_labels == 8


def test_int_accepted_for_float_and_converted(csv):
    cfg = config_from_dict({"dataset": ds(csv), "optimizer": {"lr": 1}}, "train")
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)


@pytest.mark.parametrize("data, expected", [
    ({"metric_args": {"cmc_top_k": [1, "5"]}}, "metric_args.cmc_top_k[1]: expected int, got str ('5')"),
    ({"metric_args": {"cmc_top_k": 1}}, "metric_args.cmc_top_k: expected a list of int, got int (1)"),
    ({"metric_args": {"fmr_vals": [0.1, "x"]}}, "metric_args.fmr_vals[1]: expected float, got str ('x')"),
    ({"metric_args": {"return_only_overall_category": "yes"}},
     "metric_args.return_only_overall_category: expected bool (true/false), got str ('yes')"),
    ({"image_size": True}, "image_size: expected int, got bool (True)"),
    ({"image_size": 6.5}, "image_size: expected int, got float (6.5)"),
    ({"log_images": 1}, "log_images: expected bool (true/false), got int (1)"),
    ({"model": "vit"}, "model: expected a mapping (key: value lines), got str ('vit')"),
    ({"model": {"kind": "cnn"}}, "model.kind: expected one of 'vit', 'resnet', 'timm', got 'cnn'"),
    ({"model": {"kwargs": [1]}}, "model.kwargs: expected a mapping (key: value lines), got list"),
    ({"logger": {"name": "comet"}},
     "logger.name: expected one of 'tensorboard', 'mlflow', 'wandb', 'neptune', 'clearml', got 'comet'"),
    ({"distance": "manhattan"}, "distance: expected one of 'euclidean', 'cosine', got 'manhattan'"),
    ({"tags": ["a", 3]}, "tags[1]: expected str, got int (3)"),
])
def test_wrong_type_names_the_key_path(csv, data, expected):
    assert problems_of({"dataset": ds(csv), **data}) == [expected]


@pytest.mark.parametrize("data, expected", [
    ({"metric_args": {"cmc_top_k": [1, 0]}}, "metric_args.cmc_top_k[1]: must be >= 1, got 0"),
    ({"metric_args": {"fmr_vals": [1.0]}}, "metric_args.fmr_vals[0]: must lie in (0, 1), got 1.0"),
    ({"metric_args": {"pcf_variance": [0.0]}}, "metric_args.pcf_variance[0]: must lie in (0, 1], got 0.0"),
    ({"device": "gpu"}, "device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ({"batch_size_inference": 0}, "batch_size_inference: must be >= 1, got 0"),
    ({"image_size": 4}, "image_size: must be >= 8, got 4"),
])
def test_bad_values_name_the_key_path(csv, data, expected):
    assert problems_of({"dataset": ds(csv), **data}) == [expected]


@pytest.mark.parametrize("data, expected", [
    ({"sampler": {"n_labels": 1}}, "sampler.n_labels: must be >= 2, got 1"),
    ({"sampler": {"n_instances": "4"}}, "sampler.n_instances: expected int, got str ('4')"),
    ({"loss": {"miner": "semihard"}}, "loss.miner: expected one of 'all', 'hard', got 'semihard'"),
    ({"loss": {"margin": -0.1}}, "loss.margin: must be > 0, got -0.1"),
    ({"optimizer": {"name": "lamb"}}, "optimizer.name: expected one of 'adam', 'adamw', 'sgd', got 'lamb'"),
    ({"epochs": 0}, "epochs: must be >= 1, got 0"),
    ({"valid_period": 2.0}, "valid_period: expected int, got float (2.0)"),
])
def test_train_keys_are_checked(csv, data, expected):
    assert problems_of({"dataset": ds(csv), **data}, "train") == [expected]


def test_float_written_without_dot_gets_a_hint(csv):
    (msg,) = problems_of({"dataset": ds(csv), "optimizer": {"lr": "1e-3"}}, "train")
    assert msg.startswith("optimizer.lr: expected float, got str ('1e-3')")
    assert "write it with a dot" in msg


def test_soft_margin_is_null(csv):
    assert config_from_dict({"dataset": ds(csv), "loss": {"margin": None}}, "train").loss.margin is None


def test_unknown_keys_name_the_path_and_the_known_keys(csv):
    problems = problems_of({"dataset": {**ds(csv), "root": "x"}, "metric_args": {"cmc_topk": [1]}, "foo": 1})
    assert "dataset.root: unknown key (known: dataframe, dataset_root)" in problems
    assert any(p.startswith("metric_args.cmc_topk: unknown key (known: cmc_top_k,") for p in problems)
    assert any(p.startswith("foo: unknown key") for p in problems)
    assert len(problems) == 3


def test_train_keys_are_unknown_in_a_validate_config(csv):
    (msg,) = problems_of({"dataset": ds(csv), "epochs": 3}, "validate")
    assert msg.startswith("epochs: unknown key")
    assert config_from_dict({"dataset": ds(csv), "epochs": 3}, "train").epochs == 3


def test_every_problem_is_reported_at_once(csv):
    problems = problems_of({"dataset": ds(csv), "seed": "0", "log_images": "no",
                            "sampler": {"n_labels": "8"}, "optimizer": {"lr": "fast"}}, "train")
    assert [p.split(":")[0] for p in problems] == ["log_images", "seed", "optimizer.lr", "sampler.n_labels"]


def test_required_keys(csv):
    assert problems_of({}) == ["dataset: required key is missing"]
    assert problems_of({"dataset": {"dataset_root": "x"}}) == ["dataset.dataframe: required key is missing"]


def test_missing_files_name_the_path(tmp_path, csv):
    with pytest.raises(FileNotFoundError, match=r"dataset\.dataframe: file not found: .*nope\.csv"):
        config_from_dict({"dataset": {"dataframe": str(tmp_path / "nope.csv")}})
    with pytest.raises(FileNotFoundError, match=r"dataset\.dataset_root: folder not found: .*imgs"):
        config_from_dict({"dataset": {**ds(csv), "dataset_root": str(tmp_path / "imgs")}})
    with pytest.raises(FileNotFoundError, match=r"model\.weights: file not found: .*w\.pt"):
        config_from_dict({"dataset": ds(csv), "model": {"weights": str(tmp_path / "w.pt")}})
    cfg = config_from_dict({"dataset": ds(csv), "model": {"weights": "pretrained"}})
    assert cfg.model.weights == "pretrained"  # a keyword, not a file


def test_load_config_resolves_inputs_against_the_config_folder(tmp_path, csv, monkeypatch):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({"dataset": {"dataframe": "data/df.csv", "dataset_root": "data"},
                                        "logger": {"args": {"save_dir": "logs"}}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_path)
    assert Path(cfg.dataset.dataframe) == csv
    assert Path(cfg.dataset.dataset_root) == csv.parent
    assert cfg.logger.args == {"save_dir": "logs"}  # outputs stay relative to the working directory
    assert cfg.source == str(cfg_path)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="the config must be a mapping"):
        load_config(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="dataset: required key is missing"):
        load_config(empty)
    with pytest.raises(ValueError, match="kind must be one of"):
        config_from_dict({}, "predict")


def test_shipped_example_configs_fit_the_schema(tmp_path):
    import shutil

    import oml_viz.pipelines

    folder = Path(oml_viz.pipelines.__file__).parent / "configs"
    for kind in ("validate", "train"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "df.csv").write_text("label\n")
        shutil.copy(folder / f"{kind}.yaml", tmp_path / f"{kind}.yaml")
        cfg = load_config(tmp_path / f"{kind}.yaml", kind)
        assert Path(cfg.dataset.dataframe) == tmp_path / "data" / "df.csv"
