"""MetricValCallback + RetrievalModule in a real (tiny) Lightning fit, read back from TensorBoard."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

pytest.importorskip("lightning")
pytest.importorskip("tensorboard")

import lightning.pytorch as pl
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import oml_viz as ov
from oml_viz.loggers import (
    MetricValCallback,
    RetrievalModule,
    create_logger,
    flat_metrics,
)

N_CLASSES, PER_CLASS, D_IN = 6, 4, 8


class Blobs(Dataset):
    """Gaussian blobs: class c sits around centre c; categories split classes in two groups."""

    def __init__(self, seed: int, val: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(N_CLASSES, D_IN, generator=torch.Generator().manual_seed(0)) * 3
        self.labels = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
        self.x = centres[self.labels] + torch.randn(len(self.labels), D_IN, generator=g)
        self.val = val

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"input_tensors": self.x[i], "labels": self.labels[i]}
        if self.val:
            item.update(idx=i, is_query=True, is_gallery=True,
                        categories="low" if int(self.labels[i]) < 3 else "high")
        return item


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(n)]


def _trainer(logger, callback, epochs=2):
    return pl.Trainer(
        max_epochs=epochs, logger=logger, callbacks=[callback], accelerator="cpu", devices=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1, num_sanity_val_steps=1,
    )


def test_fit_logs_loss_stats_metrics_and_figures(tmp_path):
    torch.manual_seed(0)
    val = Blobs(seed=2, val=True)
    model = torch.nn.Sequential(torch.nn.Linear(D_IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    module = RetrievalModule(model, lr=1e-2)
    cb = MetricValCallback({"cmc_top_k": (1,), "map_top_k": (5,)}, log_images=True,
                           images=_images(len(val)), n_queries=2, n_instances=3)
    logger = create_logger({"name": "tensorboard", "args": {"save_dir": str(tmp_path)}})
    # shuffled validation batches: idx must put the items back in dataset order
    trainer = _trainer(logger, cb)
    trainer.fit(module, DataLoader(Blobs(seed=1), batch_size=8, shuffle=True),
                DataLoader(val, batch_size=5, shuffle=True))
    logger.finalize("success")

    ea = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for key in ("OVERALL/cmc/1", "OVERALL/map/5", "low/cmc/1", "high/map/5",
                "loss_step", "loss_epoch", "loss/pos_dist_epoch", "loss/neg_dist_step",
                "loss/active_tri_epoch"):
        assert key in scalars, key
    assert len(ea.Scalars("OVERALL/cmc/1")) == 2  # one per epoch, none for the sanity check
    figs = ea.Images("worst_queries/map/5")
    assert len(figs) == 2 and figs[0].step != figs[1].step

    # the logged numbers are the engine's on the same embeddings, in dataset order
    module.eval()
    with torch.no_grad():
        emb = module(val.x).numpy()
    cats = ["low" if int(c) < 3 else "high" for c in val.labels]
    expected = flat_metrics(ov.retrieve(emb, val.labels.numpy(), top_n=5)
                            .metrics(cmc_top_k=(1,), map_top_k=(5,), categories=cats))
    last = {k: ea.Scalars(k)[-1].value for k in expected}
    assert last == pytest.approx(expected, abs=1e-6)
    assert cb.last_metrics.loc["OVERALL", "map/5"] == pytest.approx(expected["OVERALL/map/5"])

    # the local CSV copy has the same final numbers
    import pandas as pd
    csv = pd.read_csv(logger.metrics_csv)
    final = csv[csv.key == "OVERALL/map/5"].value.iloc[-1]
    assert final == pytest.approx(expected["OVERALL/map/5"], abs=1e-6)


class BlobsWithPaths(Blobs):
    def __init__(self, seed: int, paths: list[str]) -> None:
        super().__init__(seed, val=True)
        self.paths = paths

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "paths": self.paths[i]}


def test_return_only_overall_and_figures_from_batch_paths(tmp_path):
    from PIL import Image

    paths = []
    for i, img in enumerate(_images(N_CLASSES * PER_CLASS)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    cb = MetricValCallback({"cmc_top_k": (1,), "precision_top_k": (), "map_top_k": ()},
                           return_only_overall_category=True, log_images=True,
                           worst_metric="cmc/1", n_queries=2, n_instances=2)
    module = RetrievalModule(torch.nn.Linear(D_IN, 4), lr=1e-3)
    logger = create_logger({"args": {"save_dir": str(tmp_path / "logs")}})
    _trainer(logger, cb, epochs=1).fit(module, DataLoader(Blobs(seed=1), batch_size=8),
                                       DataLoader(BlobsWithPaths(2, paths), batch_size=8))
    logger.finalize("success")
    assert list(cb.last_metrics.index) == ["OVERALL"]
    assert list(cb.last_metrics.columns) == ["cmc/1"]
    assert "OVERALL/cmc/1" in module.trainer.callback_metrics  # usable by ModelCheckpoint
    assert not any(k.startswith(("low/", "high/")) for k in module.trainer.callback_metrics)
    ea = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    ea.Reload()
    assert len(ea.Images("worst_queries/cmc/1")) == 1


def test_log_images_without_images_fails_before_training(tmp_path):
    cb = MetricValCallback(log_images=True)
    module = RetrievalModule(torch.nn.Linear(D_IN, 4))
    logger = create_logger({"args": {"save_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match="paths"):
        _trainer(logger, cb).fit(module, DataLoader(Blobs(seed=1), batch_size=8),
                                 DataLoader(Blobs(seed=2, val=True), batch_size=8))
    assert module.trainer.global_step == 0  # failed in the sanity check, before any step


def test_validation_step_without_embeddings_is_named():
    class Bad(RetrievalModule):
        def validation_step(self, batch, batch_idx):
            return self(batch["input_tensors"])  # a bare tensor breaks the protocol

    cb = MetricValCallback()
    trainer = pl.Trainer(max_epochs=1, logger=False, callbacks=[cb], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="embeddings"):
        trainer.validate(Bad(torch.nn.Linear(D_IN, 4)), DataLoader(Blobs(2, val=True), batch_size=8))


@pytest.mark.parametrize("kwargs, word", [
    ({"metric_args": {"cmc_k": (1,)}}, "cmc_k"),
    ({"log_images": True, "worst_metric": "fnmr/5"}, "worst_metric"),
])
def test_bad_callback_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MetricValCallback(**kwargs)
