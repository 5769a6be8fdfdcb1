"""The demo: data, a small ViT and a small CNN trained on it, and everything the notebook shows.

:func:`demo_assets` is what the notebook and :func:`run_demo` (``oml-viz demo``) build on: it
makes the procedural demo dataset (``oml_viz.datasets.make_demo_dataset``) under
``<work_dir>/data``, trains both models with :func:`oml_viz.pipelines.train.train_pipeline`
(logging to TensorBoard under ``<work_dir>/logs``) and caches their checkpoints and validation
embeddings under ``<work_dir>/checkpoints``, keyed by a hash of the whole recipe (data
parameters, model, training config). A second call with the same recipe only loads files.

The two models:

- **ViT**: ``vit_tiny_patch16_224`` made smaller (64 px input, 8 px patches, width 128, 3 blocks,
  4 heads), trained from scratch with a triplet loss: its attention maps are what the notebook
  explains. No ViT weights can be downloaded offline, hence training from scratch.
- **CNN** (for Grad-CAM): a narrow ResNet (``resnet18`` with one block per stage, widths
  32-256, output stride 16 so the last stage is a 4x4 map at 64 px), trained briefly the same way.

Example:
    >>> recipe = demo_recipe(quick=True)   # demo_assets("demo_output") trains with it (minutes on a CPU)
    >>> cfg = train_config(recipe, "vit", Path("demo_output"))
    >>> cfg["epochs"], cfg["model"]["arch"], cfg["model"]["kwargs"]["img_size"]
    (8, 'vit_tiny_patch16_224', 32)
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oml_viz.data.atomic import atomic_path, write_atomic

__all__ = ["DEMO_VERSION", "DemoAssets", "demo_assets", "demo_recipe"]

DEMO_VERSION = 2  # bump when the recipe's meaning changes without its values changing

# The recipes. ``quick`` is for tests: a few seconds of training on a tiny dataset.
_DATA = {
    "full": {"n_classes": 48, "images_per_class": 60, "size": 64, "seed": 0},
    "quick": {"n_classes": 16, "images_per_class": 12, "size": 32, "seed": 0, "n_leaks": 2},
}
_VIT = {
    "full": {"kind": "vit", "arch": "vit_tiny_patch16_224", "normalise_features": True,
             "kwargs": {"img_size": 64, "patch_size": 8, "embed_dim": 128, "depth": 3, "num_heads": 4}},
    "quick": {"kind": "vit", "arch": "vit_tiny_patch16_224", "normalise_features": True,
              "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}},
}
_CNN = {
    "full": {"kind": "resnet", "arch": "resnet18", "normalise_features": True,
             "kwargs": {"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "output_stride": 16,
                        "pretrained_cfg_overlay": {"input_size": [3, 64, 64]}}},
    "quick": {"kind": "resnet", "arch": "resnet18", "normalise_features": True,
              "kwargs": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "output_stride": 16,
                         "pretrained_cfg_overlay": {"input_size": [3, 32, 32]}}},
}
_TRAIN = {
    "full": {"vit": {"epochs": 7, "valid_period": 7, "sampler": {"n_labels": 8, "n_instances": 4},
                     "optimizer": {"name": "adamw", "lr": 1.0e-3, "weight_decay": 0.05}},
             "cnn": {"epochs": 2, "valid_period": 2, "sampler": {"n_labels": 8, "n_instances": 4},
                     "optimizer": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.05}}},
    "quick": {"vit": {"epochs": 8, "valid_period": 8, "sampler": {"n_labels": 4, "n_instances": 4},
                      "optimizer": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.05}},
              "cnn": {"epochs": 2, "valid_period": 2, "sampler": {"n_labels": 4, "n_instances": 4},
                      "optimizer": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.05}}},
}
_COMMON = {"loss": {"margin": 0.2, "miner": "all"}, "metric_args": {"cmc_top_k": [1, 5], "map_top_k": [5]},
           "seed": 0, "device": "cpu", "log_images": True, "hflip": True}


@dataclass
class DemoAssets:
    """What the notebook needs: validation rows, the two trained models and the ViT's embeddings.

    ``df`` is the validation split (positions 0..n-1, ``attrs["dataset_root"]`` set);
    ``embeddings`` are the trained ViT's on ``df`` (float32 (n, D)); ``cnn_embeddings`` the CNN's.
    """

    df: pd.DataFrame
    dataset_root: Path
    vit: Any
    cnn: Any
    embeddings: np.ndarray
    cnn_embeddings: np.ndarray
    work_dir: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)
    trained_now: list[str] = field(default_factory=list)

    @property
    def full_df(self) -> pd.DataFrame:
        """The whole dataframe (train and validation rows)."""
        from oml_viz.data import read_dataframe

        return read_dataframe(self.dataset_root / "df.csv", self.dataset_root, check_files=False)


def demo_recipe(quick: bool = False) -> dict[str, Any]:
    """The demo's data, model and training settings (a copy; the cache key hashes it)."""
    mode = "quick" if quick else "full"
    return copy.deepcopy({"version": DEMO_VERSION, "data": _DATA[mode], "vit": _VIT[mode], "cnn": _CNN[mode],
                          "train": _TRAIN[mode], "common": _COMMON})


def _key(recipe: dict[str, Any], which: str) -> str:
    part = {"version": recipe["version"], "data": recipe["data"], "model": recipe[which],
            "train": recipe["train"][which], "common": recipe["common"]}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def train_config(recipe: dict[str, Any], which: str, work_dir: Path) -> dict[str, Any]:
    """The train config (as YAML would give it) for one demo model; paths relative to ``work_dir``."""
    cfg: dict[str, Any] = {
        "dataset": {"dataframe": "data/df.csv", "dataset_root": "data"},
        "model": copy.deepcopy(recipe[which]),
        "logger": {"name": "tensorboard", "args": {"save_dir": str(work_dir / "logs"), "name": f"demo_{which}"}},
        **copy.deepcopy(recipe["common"]),
        **copy.deepcopy(recipe["train"][which]),
    }
    cfg["tags"] = ["demo", which]
    return cfg


def _write_yaml(cfg: dict[str, Any], path: Path) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(cfg, sort_keys=False))


@contextmanager
def cpu_threads_for_load() -> Iterator[int]:
    """Use one torch CPU thread when other work already holds the cores torch's threads would need.

    The demo's matrices are small: with more runnable threads than cores, torch's OpenMP threads
    wait for each other. Measured on 2 cores: idle, 2 threads train ~1.8x faster than 1; with one
    other busy process, the cold demo took 419 s of CPU with 2 threads and 131 s with 1. The
    1-minute load average (which also counts this process's recent work, hence the +1) decides.
    The setting is restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0] > (os.cpu_count() or 1) - before + 1.0
    except OSError:  # no load average on this platform
        busy = False
    if busy:
        torch.set_num_threads(1)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _train_or_load(recipe: dict[str, Any], which: str, work_dir: Path, rows: pd.DataFrame, force: bool,
                   progress: bool) -> tuple[Any, np.ndarray, Path, bool]:
    """(extractor, validation embeddings, checkpoint, trained_now) for ``which`` in (vit, cnn)."""
    from oml_viz.models import load_extractor

    key = _key(recipe, which)
    ckpt = work_dir / "checkpoints" / f"{which}-{key}.pt"
    emb_path = ckpt.with_suffix(".emb.npy")
    if not force and ckpt.is_file() and emb_path.is_file():
        emb = np.load(emb_path)
        if emb.shape[0] == len(rows):
            return load_extractor(ckpt), emb.astype(np.float32, copy=False), ckpt, False

    from oml_viz.pipelines.config import config_from_dict
    from oml_viz.pipelines.train import train_pipeline

    cfg_dict = train_config(recipe, which, work_dir)
    _write_yaml(cfg_dict, work_dir / f"train_{which}.yaml")  # rerun by hand: oml-viz train <work_dir>/train_vit.yaml
    cfg = config_from_dict(cfg_dict, "train", base_dir=work_dir)
    cfg.progress = progress
    cfg.checkpoint = str(ckpt)
    with cpu_threads_for_load():
        run = train_pipeline(cfg, quiet=True)
    emb = run.embeddings
    with atomic_path(emb_path) as tmp:  # written after the checkpoint: both there means both complete
        np.save(tmp, emb)
    return run.extractor, emb, ckpt, True


def demo_assets(work_dir: str | os.PathLike = "demo_output", quick: bool = False, *, force_retrain: bool = False,
                progress: bool = True) -> DemoAssets:
    """Make (or reuse) the demo dataset and models under ``work_dir`` and return them.

    Cold, this generates 2,880 images and trains the ViT and the CNN on the CPU (a few minutes on
    2 cores; ``quick=True``: a tiny dataset and a few seconds of training, for tests). Warm (same
    recipe, files present), it only loads checkpoints and cached embeddings: seconds.

    Args:
        work_dir: where ``data/``, ``checkpoints/``, ``logs/`` and the train configs go.
        quick: the reduced recipe (16 classes of 32 px images, tiny models).
        force_retrain: train both models again even when checkpoints exist.
        progress: show progress bars.
    """
    from oml_viz.datasets import make_demo_dataset

    work = Path(work_dir).expanduser().resolve()
    recipe = demo_recipe(quick)
    full = make_demo_dataset(work / "data", **recipe["data"], progress=progress)
    rows = full[full["split"] == "validation"].reset_index(drop=True)
    rows.attrs = dict(full.attrs)
    vit, emb, vit_ckpt, vit_new = _train_or_load(recipe, "vit", work, rows, force_retrain, progress)
    cnn, cnn_emb, cnn_ckpt, cnn_new = _train_or_load(recipe, "cnn", work, rows, force_retrain, progress)
    vit.eval()
    cnn.eval()
    return DemoAssets(
        df=rows, dataset_root=work / "data", vit=vit, cnn=cnn, embeddings=emb, cnn_embeddings=cnn_emb,
        work_dir=work, checkpoints={"vit": vit_ckpt, "cnn": cnn_ckpt},
        trained_now=[n for n, new in (("vit", vit_new), ("cnn", cnn_new)) if new],
    )
