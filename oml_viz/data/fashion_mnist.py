"""Fashion-MNIST (real photographs of clothes, 28x28 grey) as an OML dataset of PNGs.

Read from Debian's ``dataset-fashion-mnist`` files (``/usr/share/datasets/fashion-mnist``) when
present; otherwise torchvision downloads them (needs internet). The official train file becomes
``split="train"`` and the test file ``split="validation"`` (every validation row both query and
gallery). ``category`` groups the ten classes (tops, bottoms, dresses, shoes, bags).

Example (tiny idx files written here stand in for the real ones):
    >>> import tempfile
    >>> src = Path(tempfile.mkdtemp())
    >>> def write_idx(name, arr):   # the MNIST format: 0, 0, dtype 0x08, ndim, sizes, bytes
    ...     header = struct.pack(f">BBBB{arr.ndim}I", 0, 0, 8, arr.ndim, *arr.shape)
    ...     (src / name).write_bytes(header + arr.astype(np.uint8).tobytes())
    >>> for images, labels in _FILES.values():
    ...     write_idx(images, np.zeros((30, 28, 28))); write_idx(labels, np.repeat(np.arange(10), 3))
    >>> df = make_fashion_mnist_dataset(f"{tempfile.mkdtemp()}/fmnist", max_per_class=2, source_dir=src,
    ...                                 progress=False)
    >>> df["split"].value_counts().sort_index().to_dict()
    {'train': 20, 'validation': 20}
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .written import finish, reuse

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
CATEGORIES = ("tops", "bottoms", "tops", "dresses", "tops", "shoes", "tops", "shoes", "bags", "shoes")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "validation": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_META = "fashion_mnist_meta.json"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST format; gzipped or not) into a numpy array."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{p} is not an idx file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{p}: unknown idx data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{p}: holds {arr.size} values for shape {shape} (truncated?)")
    return arr.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(source_dir: str | os.PathLike | None, download_root: Path) -> Path:
    """The folder holding the four idx files: given, Debian's, or fetched by torchvision."""
    stems = [s for pair in _FILES.values() for s in pair]
    candidates = [Path(source_dir)] if source_dir is not None else [DEBIAN_DIR, download_root / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all(_find(folder, s) for s in stems):
            return folder
    if source_dir is not None:
        missing = [s for s in stems if not _find(Path(source_dir), s)]
        raise FileNotFoundError(f"source_dir {source_dir} lacks Fashion-MNIST files {missing}")
    try:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(download_root), train=train, download=True)
    except Exception as e:  # offline: URLError, RuntimeError...; no torchvision: ImportError
        raise RuntimeError(
            f"Fashion-MNIST files are not in {DEBIAN_DIR} and downloading them with torchvision failed "
            f"({type(e).__name__}: {e}). Install the Debian package `dataset-fashion-mnist` "
            "(apt-get install dataset-fashion-mnist), or pass source_dir= a folder with the idx files."
        ) from e
    return download_root / "FashionMNIST" / "raw"


def load_fashion_mnist_arrays(source_dir: str | os.PathLike | None = None,
                              download_root: str | os.PathLike = ".") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "validation": (images, labels)}`` as uint8 (N, 28, 28) / int64."""
    folder = _locate(source_dir, Path(download_root))
    out = {}
    for split, (img_stem, lab_stem) in _FILES.items():
        images = read_idx(_find(folder, img_stem))  # type: ignore[arg-type]
        labels = read_idx(_find(folder, lab_stem)).astype(np.int64)  # type: ignore[arg-type]
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {img_stem} has {len(images)} images but {lab_stem} {len(labels)} labels")
        out[split] = (images, labels)
    return out


def make_fashion_mnist_dataset(
    root: str | os.PathLike,
    *,
    max_per_class: int | None = None,
    splits: tuple[str, ...] = ("train", "validation"),
    source_dir: str | os.PathLike | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Write Fashion-MNIST under ``root`` as PNGs + ``df.csv`` and return its OML dataframe.

    Args:
        root: output folder; dataframe paths are relative to it (``df.attrs["dataset_root"]``).
        max_per_class: keep at most this many images per class and split (a seeded random
            subset); None keeps all 70,000 (about a minute to write).
        splits: which of ``"train"`` (the 60k file) and ``"validation"`` (the 10k file) to write.
        source_dir: a folder with the idx files (default: Debian's, then torchvision's download).
        seed: picks the subset when ``max_per_class`` is set.
        overwrite: rewrite even if ``root`` already holds this exact dataset.
    """
    bad = [s for s in splits if s not in _FILES]
    if bad or not splits:
        raise ValueError(f"splits must be a non-empty subset of {tuple(_FILES)}, got {splits!r}")
    if max_per_class is not None and max_per_class < 2:
        raise ValueError(f"max_per_class must be >= 2 or None, got {max_per_class}")
    root = Path(root).expanduser()
    params = {"max_per_class": max_per_class, "splits": list(splits), "seed": seed, "version": 1}
    if not overwrite and (df := reuse(root, _META, params)) is not None:
        return df

    from tqdm.auto import tqdm

    arrays = load_fashion_mnist_arrays(source_dir, download_root=root / "_download")
    rng = np.random.default_rng(seed)
    rows = []
    for split in splits:
        images, labels = arrays[split]
        keep = np.arange(len(labels))
        if max_per_class is not None:
            keep = np.sort(np.concatenate([
                rng.permutation(np.flatnonzero(labels == c))[:max_per_class] for c in np.unique(labels)]))
        is_val = split == "validation"
        for c in np.unique(labels):
            (root / "images" / split / str(int(c))).mkdir(parents=True, exist_ok=True)
        for i in tqdm(keep.tolist(), desc=f"fashion-mnist {split}", disable=not progress, unit="img"):
            label = int(labels[i])
            rel = f"images/{split}/{label}/{i:05d}.png"
            Image.fromarray(images[i], "L").save(root / rel, compress_level=1)
            rows.append({"label": label, "path": rel, "split": split, "is_query": is_val, "is_gallery": is_val,
                         "category": CATEGORIES[label], "class_name": CLASS_NAMES[label]})
    return finish(root, _META, params, rows)
