"""OML 4.0 pipeline configs accepted by ``oml-viz validate`` / ``train``, translated into ours."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from oml_viz.datasets import make_demo_dataset
from oml_viz.oml.configs import is_oml_config, translate_oml_config
from oml_viz.pipelines.cli import main
from oml_viz.pipelines.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "oml_viz" / "pipelines" / "configs"
TINY = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oml_cfg") / "data"
    make_demo_dataset(root, n_classes=16, images_per_class=4, size=32, progress=False)
    return root


def example(name: str, data_dir: Path, tmp_path: Path, **changes) -> Path:
    """An example config copied next to the data (its relative paths then resolve), edited."""
    cfg = yaml.safe_load((CONFIGS / name).read_text())
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path = data_dir.parent / f"{tmp_path.name}_{name}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load(path: Path, kind: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(path, kind)
    return cfg, [str(w.message) for w in caught if "OML config" in str(w.message)]


def test_examples_translate_and_report_runtime_keys_once(data_dir, tmp_path):
    cfg, notes = load(example("oml_validate.yaml", data_dir, tmp_path), "validate")
    assert len(notes) == 1
    assert "accelerator, devices, precision, hydra" in notes[0]
    assert cfg.dataset.dataframe == str(data_dir / "df.csv") and cfg.dataset.dataset_root == str(data_dir)
    assert (cfg.model.kind, cfg.model.arch, cfg.model.normalise_features) == ("vit", "vit_small_patch16_224", False)
    assert cfg.model.kwargs["img_size"] == 64 == cfg.image_size
    assert cfg.batch_size_inference == 64 and cfg.logger.name == "tensorboard"
    ma = cfg.metric_args
    assert ma.metrics_to_exclude_from_visualization == ["cmc"] and ma.worst_metric == "map/5"
    assert ma.pcf_variance == [0.5, 0.9] and ma.fmr_vals == [0.1]

    cfg, notes = load(example("oml_train.yaml", data_dir, tmp_path), "train")
    assert len(notes) == 1 and "logs_folder" in notes[0] and "interpolations: logs_folder" in notes[0]
    assert (cfg.epochs, cfg.valid_period, cfg.seed) == (7, 1, 42)
    assert (cfg.sampler.n_labels, cfg.sampler.n_instances) == (8, 4)
    assert (cfg.loss.margin, cfg.loss.miner) == (0.2, "all")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 1e-3, 0.05)
    assert cfg.tags == ["metric_learning", "demo"] and cfg.hflip is True


@pytest.mark.slow
def test_validate_on_the_oml_example_equals_our_config(data_dir, tmp_path, monkeypatch):
    from oml_viz.models import ViTExtractor
    from oml_viz.pipelines.validate import validate_pipeline

    monkeypatch.chdir(tmp_path)
    net = ViTExtractor("vit_tiny_patch16_224", img_size=32, **TINY)
    weights = net.save(tmp_path / "tiny.pt")
    path = example("oml_validate.yaml", data_dir, tmp_path, **{
        "extractor.args.arch": "vit_tiny_patch16_224", "extractor.args.weights": str(weights),
        "extractor.args.timm_kwargs": TINY, "transforms_val.args.im_size": 32,
        "metric_args.visualize_only_overall_category": False, "logger.args.save_dir": str(tmp_path / "tb")})
    path.write_text(path.read_text() + "device: cpu\nprogress: false\n")
    assert main(["validate", str(path)]) == 0  # the command accepts it

    oml_run = validate_pipeline(load(path, "validate")[0])
    ours = {"dataset": {"dataframe": str(data_dir / "df.csv")}, "device": "cpu", "progress": False,
            "model": {"kind": "vit", "arch": "vit_tiny_patch16_224", "weights": str(weights),
                      "normalise_features": False, "kwargs": {"img_size": 32, **TINY}},
            "metric_args": {"cmc_top_k": [1, 5], "map_top_k": [5], "precision_top_k": [5],
                            "fmr_vals": [0.1], "pcf_variance": [0.5, 0.9]},
            "logger": {"name": "tensorboard", "args": {"save_dir": str(tmp_path / "tb2")}}}
    our_run = validate_pipeline(ours)
    assert oml_run.metrics.equals(our_run.metrics)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(oml_run.logger.log_dir, size_guidance={"images": 0})
    ea.Reload()
    categories = sorted(oml_run.metrics.index[1:])
    assert sorted(ea.Tags()["images"]) == sorted(["worst_queries/map/5"]
                                                 + [f"worst_queries/{c}/map/5" for c in categories])


@pytest.mark.slow
def test_train_accepts_the_oml_example(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = example("oml_train.yaml", data_dir, tmp_path, **{
        "extractor.args.timm_kwargs": TINY, "transforms_train.args.im_size": 32,
        "transforms_val.args.im_size": 32, "max_epochs": 1, "sampler.args.n_labels": 4,
        "sampler.args.n_instances": 2, "logger.args.save_dir": str(tmp_path / "tb"),
        "checkpoint": str(tmp_path / "vit.pt")})
    path.write_text(path.read_text() + "device: cpu\nprogress: false\n")
    assert main(["train", str(path)]) == 0
    assert (tmp_path / "vit.pt").is_file()


def base() -> dict:
    return {"dataset_root": "data", "dataframe_name": "df.csv",
            "extractor": {"name": "vit", "args": {"arch": "vits16", "weights": None}}}


def test_detection_by_keys():
    assert is_oml_config(base()) and is_oml_config({"datasets": {}}) and is_oml_config({"bs_val": 2})
    assert not is_oml_config({"dataset": {"dataframe": "x"}, "bs_val": 2}) and not is_oml_config([])
    with pytest.raises(ConfigError, match="mixes OML keys"):
        translate_oml_config({**base(), "model": {}})


def test_datasets_block_and_defaults():
    cfg = {"datasets": {"name": "oml_image_dataset", "args": {
               "dataset_root": "root", "dataframe_name": "d.csv",
               "transforms_val": {"name": "norm_resize_albu", "args": {"im_size": 48}}}},
           "extractor": {"name": "resnet", "args": {"arch": "resnet18", "weights": None, "gem_p": 7.0}}}
    ours, notes = translate_oml_config(cfg)
    assert ours["dataset"] == {"dataframe": str(Path("root") / "d.csv"), "dataset_root": "root"}
    assert ours["image_size"] == 48 and "img_size" not in ours["model"]["kwargs"]  # a CNN takes any size
    assert ours["model"]["arch"] == "resnet18" and ours["model"]["normalise_features"] is False
    assert ours["logger"] == {"name": "tensorboard", "args": {"save_dir": "."}}  # OML's default logger
    assert any("gem_p" in n for n in notes) and any("norm_resize_albu" in n for n in notes)


def test_zoo_weights_and_missing_files_say_what_to_do(tmp_path):
    cfg = base()
    cfg["extractor"]["args"]["weights"] = "vits16_cub"
    with pytest.raises(FileNotFoundError, match=r"OML's model zoo.*weights: /path/to/the.ckpt"):
        translate_oml_config(cfg, base_dir=tmp_path)
    cfg["extractor"]["args"]["weights"] = "ckpts/best.ckpt"
    with pytest.raises(FileNotFoundError, match=r"extractor.args.weights: file not found: .*ckpts/best.ckpt"):
        translate_oml_config(cfg, base_dir=tmp_path)
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "best.ckpt").write_bytes(b"")
    ours, _ = translate_oml_config(cfg, base_dir=tmp_path)
    assert ours["model"]["weights"] == str(tmp_path / "ckpts" / "best.ckpt")


def test_pfc_variance_typo_is_read_with_a_warning():
    cfg = {**base(), "metric_args": {"pfc_variance": [0.5], "cmc_top_k": [1]}}
    with pytest.warns(UserWarning, match="pfc_variance"):
        ours, _ = translate_oml_config(cfg)
    assert ours["metric_args"] == {"pcf_variance": [0.5], "cmc_top_k": [1]}
    cfg["metric_args"]["pcf_variance"] = [0.9]
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="both pfc_variance and pcf_variance"):
        translate_oml_config(cfg)


def test_training_keys_translate():
    cfg = {**base(), "max_epochs": 3, "valid_period": 2, "tags": ["${postfix}", "${now:%H}"],
           "postfix": "run", "sampler": {"name": "balance", "args": {"n_labels": 4, "n_instances": 2}},
           "criterion": {"name": "triplet_with_miner", "args": {
               "margin": None, "need_logs": True, "miner": {"name": "hard_triplets", "args": {}}}},
           "optimizer": {"name": "adam", "args": {"lr": "1e-5"}}}
    ours, notes = translate_oml_config(cfg, "train")
    assert (ours["epochs"], ours["valid_period"]) == (3, 2)
    assert ours["loss"] == {"margin": None, "miner": "hard"}
    assert ours["optimizer"] == {"name": "adam", "lr": 1e-5}
    assert ours["sampler"] == {"n_labels": 4, "n_instances": 2}
    assert ours["tags"] == ["run", "${now:%H}"] and any("${now:...}" in n for n in notes)
    cfg["criterion"]["args"]["miner"]["name"] = "triplets_with_memory"
    ours, notes = translate_oml_config(cfg, "train")
    assert ours["loss"]["miner"] == "all" and any("triplets_with_memory" in n for n in notes)
    _, notes = translate_oml_config(cfg, "validate")
    assert any("ignored by validate" in n and "criterion" in n for n in notes)


def test_unsupported_keys_are_all_named_at_once():
    cfg = {**base(), "extractor": {"name": "vit_clip", "args": {}}, "postprocessor": {"name": "x"},
           "criterion": {"name": "arcface", "args": {}}, "sampler": {"name": "category_balance", "args": {}},
           "optimizer": {"name": "lbfgs", "args": {"lr": 0.1}}, "foo": 1,
           "transforms_val": {"name": "my_transform", "args": {}}}
    with pytest.raises(ConfigError) as err:
        translate_oml_config(cfg, "train", source="cfg.yaml")
    text = str(err.value)
    for words in ("extractor.name: 'vit_clip'", "postprocessor:", "criterion.name: 'arcface'",
                  "sampler.name: 'category_balance'", "optimizer.name: 'lbfgs'", "foo: unknown key",
                  "transforms_val.name: 'my_transform'"):
        assert words in text


def test_cli_prints_an_oml_problem_as_one_error_line(data_dir, tmp_path, capsys):
    path = data_dir.parent / f"{tmp_path.name}_bad.yaml"
    cfg = base()
    cfg["extractor"]["args"]["weights"] = "vits16_dino"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: extractor.args.weights: 'vits16_dino' is a name in OML's model zoo")


def test_example_configs_ship_next_to_ours():
    assert {p.name for p in CONFIGS.glob("*.yaml")} >= {"validate.yaml", "train.yaml", "oml_validate.yaml",
                                                        "oml_train.yaml"}
    for name in ("oml_validate.yaml", "oml_train.yaml"):
        assert is_oml_config(yaml.safe_load((CONFIGS / name).read_text()))
