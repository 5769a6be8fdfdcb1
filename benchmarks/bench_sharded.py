"""Sharded exact retrieval: W processes x N/W items (gloo, CPU) against one process x N items.

Leave-one-out on synthetic clustered data, top-10, metrics cmc/1, cmc/5, precision/5, map/5, the
same data in both runs. The single process gets all the CPU threads; each of the W processes gets
threads / W, so both runs use the same cores. Prints both wall times (slowest rank for the
sharded run), the bytes each rank moved (tensor payload of the collectives: query chunks and
top-k lists; the per-item labels and masks are listed apart) and whether the results are equal.

    python benchmarks/bench_sharded.py                    # N = 50k, D = 384, 2 processes
    python benchmarks/bench_sharded.py --n 20000 --world 3
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRIC_ARGS = dict(cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,))


def _data(n: int, dim: int):
    import torch

    gen = torch.Generator().manual_seed(0)
    n_labels = max(2, n // 10)
    labels = torch.randint(0, n_labels, (n,), generator=gen)
    centers = torch.randn(n_labels, dim, generator=gen)
    return (centers[labels] + 1.5 * torch.randn(n, dim, generator=gen)).numpy(), labels.numpy()


def _single(args: argparse.Namespace, out: Path) -> dict:
    import numpy as np
    import torch

    import oml_viz as ov

    torch.set_num_threads(args.threads)
    emb, labels = _data(args.n, args.dim)
    start = time.perf_counter()
    res = ov.retrieve(emb, labels, top_n=10, device="cpu", progress=False)
    table = res.metrics(**METRIC_ARGS)
    seconds = time.perf_counter() - start
    np.savez(out / "single.npz", ids=res.retrieved_ids, dist=res.distances, table=table.to_numpy())
    return {"seconds": seconds}


def _worker(rank: int, args: argparse.Namespace, port: int, out: Path) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    import oml_viz as ov
    from oml_viz.engine.distributed import count_traffic

    torch.set_num_threads(max(1, args.threads // args.world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    emb, labels = _data(args.n, args.dim)
    cuts = np.linspace(0, args.n, args.world + 1).astype(int)
    mine = slice(cuts[rank], cuts[rank + 1])
    shard_emb, shard_labels = emb[mine].copy(), labels[mine].copy()
    del emb
    dist.barrier()
    with count_traffic() as moved:
        start = time.perf_counter()
        res = ov.retrieve_sharded(shard_emb, shard_labels, top_n=10, device="cpu", progress=False)
        table = res.metrics(**METRIC_ARGS)
        seconds = time.perf_counter() - start
    label_bytes = labels.nbytes // args.world  # what each rank's label/mask scalars add (sent once)
    report = {"rank": rank, "seconds": seconds, "sent": moved["sent"], "received": moved["received"],
              "calls": moved["calls"], "label_bytes": int(label_bytes), "chunk": res._chunk}
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        np.savez(out / "sharded.npz", ids=res.retrieved_ids, dist=res.distances, table=table.to_numpy())
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args, args.port, Path(args.out))
        return

    import numpy as np

    out = Path(tempfile.mkdtemp(prefix="bench_sharded_"))
    print(f"N = {args.n}, D = {args.dim}, leave-one-out, top-10, {args.threads} CPU threads in all")
    single = _single(args, out)
    print(f"1 process  x {args.n:>7} items: {single['seconds']:7.2f} s  ({args.threads} threads)")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim), "--world", str(args.world),
            "--threads", str(args.threads), "--port", str(port), "--out", str(out)]
    procs = [subprocess.Popen(base + ["--worker", str(r)]) for r in range(args.world)]
    for proc in procs:
        if proc.wait(timeout=3600):
            raise SystemExit(f"a worker failed (exit {proc.returncode})")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(args.world)]
    slowest = max(r["seconds"] for r in ranks)
    print(f"{args.world} processes x {args.n // args.world:>7} items: {slowest:7.2f} s  "
          f"(slowest rank; {max(1, args.threads // args.world)} threads each; "
          f"{ranks[0]['chunk']} queries per rank per step)")
    print(f"ratio sharded / single: {slowest / single['seconds']:.2f}")
    for r in ranks:
        print(f"  rank {r['rank']}: sent {r['sent'] / 2**20:8.2f} MiB, received {r['received'] / 2**20:8.2f} MiB "
              f"in {r['calls']} tensor collectives (+ {r['label_bytes'] / 2**10:.0f} KiB of labels/masks as objects)")
    emb_mib = args.n // args.world * args.dim * 4 / 2**20
    print(f"  (for scale: one rank's embeddings are {emb_mib:.1f} MiB)")
    a, b = np.load(out / "single.npz"), np.load(out / "sharded.npz")
    same = (np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["dist"], b["dist"])
            and np.array_equal(a["table"], b["table"]))
    print(f"sharded result equals the single-process result (ids, distances, metrics): {same}")


if __name__ == "__main__":
    main()
