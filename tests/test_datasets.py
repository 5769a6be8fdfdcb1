"""The demo datasets: the procedural one and Fashion-MNIST (Debian files, or fakes in idx format)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

import oml_viz as ov
from oml_viz.data import check_dataframe, load_image, read_dataframe
from oml_viz.data import fashion_mnist as fm
from oml_viz.data.demo import MAX_CLASSES, SHAPES, class_spec
from oml_viz.datasets import make_demo_dataset, make_fashion_mnist_dataset

SMALL = {"n_classes": 16, "images_per_class": 6, "size": 40}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, make_demo_dataset(root, **SMALL, progress=False)


def test_demo_is_a_valid_oml_dataset(small_demo):
    root, df = small_demo
    assert len(df) == 16 * 6 and df["label"].nunique() == 16
    assert check_dataframe(df, root) == []
    back = read_dataframe(root / "df.csv")
    assert back[["label", "path", "split", "category"]].equals(df[["label", "path", "split", "category"]])
    img = load_image(root / df["path"][0])
    assert img.shape == (40, 40, 3)


def test_demo_split_is_by_label_and_follows_oml(small_demo):
    _, df = small_demo
    splits_per_label = df.groupby("label")["split"].nunique()
    assert (splits_per_label == 1).all()
    val = df[df["split"] == "validation"]
    train = df[df["split"] == "train"]
    assert val["is_query"].all() and val["is_gallery"].all()
    assert not train["is_query"].any() and not train["is_gallery"].any()
    # every category has classes on both sides, so per-category metrics exist
    assert set(val["category"]) == set(train["category"]) == set(SHAPES)


def test_demo_category_groups_classes_by_shape(small_demo):
    _, df = small_demo
    assert (df.groupby("label")["category"].nunique() == 1).all()
    for label, cat in df.groupby("label")["category"].first().items():
        assert class_spec(label)[0] == cat


def test_demo_is_deterministic_and_seed_dependent(small_demo, tmp_path):
    root, df = small_demo
    again = make_demo_dataset(tmp_path / "again", **SMALL, progress=False)
    assert again["path"].tolist() == df["path"].tolist()
    for p in df["path"].tolist()[::17]:
        assert (root / p).read_bytes() == (tmp_path / "again" / p).read_bytes()
    other = make_demo_dataset(tmp_path / "other", **SMALL, seed=1, progress=False)
    p = other["path"][0]
    assert not np.array_equal(load_image(root / p), load_image(tmp_path / "other" / p))


def test_demo_reuses_an_existing_dataset(small_demo):
    root, df = small_demo
    first = (root / df["path"][0]).stat().st_mtime_ns
    again = make_demo_dataset(root, **SMALL, progress=False)
    assert (root / df["path"][0]).stat().st_mtime_ns == first
    assert again["path"].tolist() == df["path"].tolist()


def test_demo_images_vary_within_a_class(small_demo):
    root, df = small_demo
    a, b = (load_image(root / p).astype(int) for p in df[df["label"] == 3]["path"][:2])
    assert np.abs(a - b).mean() > 10  # pose, background and clutter differ


def test_demo_bboxes_frame_the_object(tmp_path):
    df = make_demo_dataset(tmp_path, n_classes=2, images_per_class=2, size=48, with_bboxes=True, progress=False)
    assert check_dataframe(df, tmp_path) == []
    box = df.loc[0, ["x_1", "y_1", "x_2", "y_2"]].to_numpy()
    assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 48
    assert (box[2] - box[0]) >= 48 * 0.3  # the object's radius is at least 0.22 of the side


def test_demo_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="n_classes"):
        make_demo_dataset(tmp_path, n_classes=MAX_CLASSES + 1)
    with pytest.raises(ValueError, match="images_per_class"):
        make_demo_dataset(tmp_path, images_per_class=1)
    with pytest.raises(ValueError, match="size"):
        make_demo_dataset(tmp_path, size=8)


@pytest.mark.slow
def test_demo_default_size_matches_the_brief(tmp_path):
    """The dataset ``oml-viz demo`` makes (its full recipe, which is also the function's default):
    made here and measured, >= 40 classes, 2,000 to 4,000 images of 64 to 96 px."""
    from oml_viz.pipelines.demo import demo_recipe

    recipe = demo_recipe(quick=False)["data"]
    df = make_demo_dataset(tmp_path, **recipe, progress=False)
    assert df["label"].nunique() >= 40 and 2000 <= len(df) <= 4000
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == len(df)
    shapes = {load_image(tmp_path / p).shape for p in df["path"].iloc[:: max(1, len(df) // 40)]}
    assert shapes and all(64 <= h <= 96 and 64 <= w <= 96 and c == 3 for h, w, c in shapes), shapes
    assert make_demo_dataset(tmp_path, progress=False).equals(df)  # the defaults are that recipe


def test_demo_is_not_trivial_for_raw_pixels(small_demo):
    """Nearest neighbours on raw pixels are far from perfect: the task needs a learned model."""
    root, df = small_demo
    val = df[df["split"] == "validation"].reset_index(drop=True)
    emb = np.stack([load_image(root / p).astype(np.float32).ravel() / 255 for p in val["path"]])
    res = ov.retrieve(emb, val["label"].to_numpy(), top_n=1, device="cpu")
    assert res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=())["cmc/1"]["OVERALL"] < 0.9


# ---------------------------------------------------------------------------- Fashion-MNIST
def _write_idx(path: Path, arr: np.ndarray) -> None:
    code = {np.uint8: 0x08}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.fixture()
def fake_fmnist(tmp_path):
    """Idx files in the Fashion-MNIST layout with known pixel values (label * 20 + 5)."""
    src = tmp_path / "src"
    src.mkdir()
    for stem, n in (("train", 30), ("t10k", 20)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.repeat(labels[:, None, None] * 20 + 5, 28, 1).repeat(28, 2).astype(np.uint8)
        _write_idx(src / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx(src / f"{stem}-labels-idx1-ubyte.gz", labels)
    return src


def test_read_idx_roundtrip_and_errors(tmp_path, fake_fmnist):
    arr = fm.read_idx(fake_fmnist / "t10k-images-idx3-ubyte.gz")
    assert arr.shape == (20, 28, 28) and arr.dtype == np.uint8 and arr[3, 0, 0] == 65
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        fm.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="truncated"):
        fm.read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files(tmp_path, fake_fmnist):
    df = make_fashion_mnist_dataset(tmp_path / "out", source_dir=fake_fmnist, max_per_class=2, progress=False)
    assert check_dataframe(df, tmp_path / "out") == []
    assert df["split"].value_counts().to_dict() == {"train": 20, "validation": 20}
    val = df[df["split"] == "validation"]
    assert val["is_query"].all() and val["is_gallery"].all()
    row = df.iloc[0]
    img = load_image(tmp_path / "out" / row["path"])
    assert img.shape == (28, 28, 3) and img[0, 0, 0] == row["label"] * 20 + 5
    assert df.set_index("class_name")["category"].to_dict()["Ankle boot"] == "shoes"


def test_fashion_mnist_missing_source_dir_names_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images"):
        make_fashion_mnist_dataset(tmp_path / "out", source_dir=tmp_path, progress=False)


def test_fashion_mnist_offline_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    import torchvision.datasets

    class Offline:
        def __init__(self, *a, **k):
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(RuntimeError, match="dataset-fashion-mnist") as err:
        make_fashion_mnist_dataset(tmp_path / "out", progress=False)
    assert "network is unreachable" in str(err.value)


@pytest.mark.skipif(not fm.DEBIAN_DIR.is_dir(), reason="Debian dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_files(tmp_path):
    df = make_fashion_mnist_dataset(tmp_path, max_per_class=3, progress=False)
    assert len(df) == 2 * 10 * 3 and sorted(df["label"].unique()) == list(range(10))
    assert check_dataframe(df, tmp_path, decode=True) == []
    img = load_image(tmp_path / df["path"][0])
    assert img.shape == (28, 28, 3) and img.std() > 0  # a real picture, not a blank
