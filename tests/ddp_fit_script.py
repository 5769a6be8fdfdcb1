"""A real ``Trainer.fit(strategy="ddp")`` on 2 CPU processes (gloo), run by tests/test_ddp_callback.py.

Usage: python ddp_fit_script.py DATAFRAME OUT_DIR MODEL_JSON

Lightning's DDP launcher starts the second process by running this script again. Each process
writes ``rank<r>.json``: the callback's table, Lightning's ``callback_metrics`` and the validation
``idx`` it saw; rank 0 saves the trained weights to ``OUT_DIR/model.pt`` and Lightning's CSV logger
writes ``OUT_DIR/csv/.../metrics.csv`` (from rank 0 only).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import CSVLogger

from oml_viz.loggers import MetricValCallback, RetrievalModule
from oml_viz.loggers.flatten import flat_metrics
from oml_viz.pipelines.config import DatasetConfig, ModelConfig
from oml_viz.pipelines.images import ImageTensors
from oml_viz.pipelines.steps import build_extractor, read_data, train_rows, validation_rows
from oml_viz.pipelines.train import _ValidationBatches

METRIC_ARGS = {"cmc_top_k": (1, 3), "precision_top_k": (3,), "map_top_k": (3,), "fmr_vals": (0.2,)}


class SeenIdx(Callback):
    """The validation ``idx`` values this process saw (its shard, with the sampler's padding)."""

    def __init__(self) -> None:
        self.idx: list[int] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.idx += [int(i) for i in batch["idx"]]


def main(dataframe: str, out_dir: str, model_json: str) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    out = Path(out_dir)
    model = json.loads(model_json)
    df = read_data(DatasetConfig(dataframe))
    torch.manual_seed(0)
    ext = build_extractor(ModelConfig(**model))
    root = df.attrs.get("dataset_root")
    rows = validation_rows(df)
    size = tuple(ext.input_size)
    train = torch.utils.data.DataLoader(ImageTensors(train_rows(df), ext.model, size, root), batch_size=8)
    val = torch.utils.data.DataLoader(_ValidationBatches(ImageTensors(rows, ext.model, size, root), rows), batch_size=5)
    metric_cb, seen = MetricValCallback(METRIC_ARGS, top_n=5), SeenIdx()
    trainer = Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, limit_train_batches=2,
        logger=CSVLogger(str(out / "csv")), callbacks=[metric_cb, seen], enable_checkpointing=False,
        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
    )
    trainer.fit(RetrievalModule(ext, lr=1e-2), train, val)
    rank = trainer.global_rank
    if rank == 0:
        ext.save(out / "model.pt")
    report = {
        "table": flat_metrics(metric_cb.last_metrics),
        "callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()
                             if "/" in k and not k.startswith("loss")},
        "seen_idx": seen.idx,
        "has_result": metric_cb.last_result is not None,
        "world_size": trainer.world_size,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
