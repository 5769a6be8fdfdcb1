"""One process of tests/test_sharded.py: ``python sharded_worker.py RANK WORLD PORT OUT_DIR``.

Builds the scenarios' data from fixed seeds (every process the same), passes its shard to
``retrieve_sharded`` and saves what it got to ``OUT_DIR/<scenario>-<rank>.npz`` (or the error
message to ``.txt``); the test compares against ``retrieve`` on the whole data.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import oml_viz as ov

METRICS = {"cmc_top_k": (1, 3), "precision_top_k": (3,), "map_top_k": (2, 4), "fmr_vals": (0.1, 0.5),
           "pcf_variance": (0.5, 0.9)}


def scenarios(world: int) -> dict[str, dict]:
    """name -> {data (whole), cuts (shard boundaries), kwargs}; the test imports this too."""
    rng = np.random.default_rng(world)
    n = 157
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    labels = rng.integers(0, 12, n)
    is_query = rng.random(n) < 0.6
    is_gallery = rng.random(n) < 0.7
    sequence = np.array([f"s{i // 3}" for i in range(n)], dtype=object)  # runs of 3 cross the cuts below
    categories = np.array(["x", "y", "z"])[rng.integers(0, 3, n)]
    cuts = [0, 41, 157] if world == 2 else [0, 41, 95, 157]
    is_gallery[cuts[1] : cuts[2]] = False  # rank 1's shard has no gallery items
    whole = dict(embeddings=emb, labels=labels, is_query=is_query, is_gallery=is_gallery,
                 sequence_ids=sequence, categories=categories)
    out = {
        "random": dict(data=whole, cuts=cuts, kwargs=dict(top_n=5, batch_size=7)),
        "cosine_str_labels": dict(
            data=dict(whole, labels=np.array([f"L{v}" for v in labels], dtype=object)),
            cuts=cuts, kwargs=dict(top_n=4, distance="cosine")),
    }
    # exact ties across shards: few distinct integer vectors, so many equal distances
    tie = rng.integers(0, 3, size=(60, 2)).astype(np.float32)
    tie_labels = rng.integers(0, 4, 60)
    tie_cuts = [0, 13, 60] if world == 2 else [0, 13, 13, 60]  # with 3 processes, rank 1's shard is empty
    out["ties"] = dict(data=dict(embeddings=tie, labels=tie_labels), cuts=tie_cuts, kwargs=dict(top_n=8, batch_size=5))
    return out


def run(rank: int, world: int, port: int, out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:  # before any process group: a clear error, no hang
        ov.retrieve_sharded(np.zeros((2, 2)), [0, 1])
    except RuntimeError as exc:
        (out / f"uninitialised-{rank}.txt").write_text(str(exc))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    for name, case in scenarios(world).items():
        lo, hi = case["cuts"][rank], case["cuts"][rank + 1]
        shard = {k: v[lo:hi] for k, v in case["data"].items()}
        res = ov.retrieve_sharded(**shard, **case["kwargs"])
        table = res.metrics(**METRICS) if name != "ties" else res.metrics(cmc_top_k=(1,), precision_top_k=(3,),
                                                                          map_top_k=(8,))
        np.savez(out / f"{name}-{rank}.npz", query_ids=res.query_ids, retrieved_ids=res.retrieved_ids,
                 distances=res.distances, is_relevant=res.is_relevant, n_gt=res.n_gt,
                 table=table.to_numpy(), index=np.array(table.index, dtype=str),
                 columns=np.array(table.columns, dtype=str))

    # a sub-group: the first and the last process only (group ranks 0 and 1)
    members = [0, world - 1]
    sub = dist.new_group(members)
    if rank in members:
        case = scenarios(world)["random"]
        lo, hi = case["cuts"][rank], case["cuts"][rank + 1]
        res = ov.retrieve_sharded(**{k: v[lo:hi] for k, v in case["data"].items()}, group=sub, top_n=5)
        np.savez(out / f"subgroup-{rank}.npz", retrieved_ids=res.retrieved_ids, distances=res.distances,
                 table=res.metrics(**METRICS).to_numpy())
    else:
        try:
            ov.retrieve_sharded(np.eye(2), [0, 1], group=sub)
        except RuntimeError as exc:
            (out / f"subgroup-{rank}.txt").write_text(str(exc))

    # bad input on one process: the same clear error on every process
    bad = {
        "width": lambda: ov.retrieve_sharded(np.ones((3, 4 if rank == 1 else 3)), [0, 1, 0]),
        "mixed_labels": lambda: ov.retrieve_sharded(np.eye(3), [0, 1, 0] if rank == 0 else ["a", "b", "a"]),
        "nan_on_one": lambda: ov.retrieve_sharded(np.full((2, 2), np.nan) if rank == world - 1 else np.eye(2), [0, 1]),
        "device_on_one": lambda: ov.retrieve_sharded(np.eye(2), [0, 1],
                                                     device="no-such-device" if rank == 1 else "cpu"),
    }
    for name, call in bad.items():
        try:
            call()
            message = "no error"
        except ValueError as exc:
            message = str(exc)
        (out / f"{name}-{rank}.txt").write_text(message)
    # MetricValCallback's gathering: shards as DistributedSampler makes them (padded), one
    # process without 'idx', one process whose batches were bad
    from oml_viz.loggers.gather import gather_validation

    n = 10
    order = list(range(n)) + list(range(-(-n // world) * world - n))  # padding repeats the first items
    mine = np.array(order[rank::world])
    local = {"embeddings": np.stack([mine, -mine], 1).astype(np.float32), "labels": mine % 3,
             "idx": mine, "names": np.array([f"item{i}" for i in mine], dtype=object)}
    got = gather_validation(local)
    np.savez(out / f"gather-{rank}.npz", **{k: v.astype(str) if v.dtype == object else v for k, v in got.items()})
    for name, kwargs in (("gather_no_idx", dict(data={k: v for k, v in local.items() if k != "idx"}
                                                   if rank == 0 else local)),
                         ("gather_local_error", dict(data=None, error="bad batch" if rank == 1 else None))):
        try:
            gather_validation(**kwargs)
            message = "no error"
        except ValueError as exc:
            message = str(exc)
        (out / f"{name}-{rank}.txt").write_text(message)
    dist.destroy_process_group()


if __name__ == "__main__":
    run(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
