"""Retrieval engine speed and memory against the fp32 GEMM floor and a naive full-matrix baseline.

Leave-one-out on synthetic clustered data (every item both query and gallery), top-10, metrics
cmc/1, cmc/5, precision/5, map/5. Each measurement runs in a fresh subprocess so that its peak
resident memory (above the embeddings, which are allocated before the peak is reset) is its own.

    python benchmarks/bench_retrieval.py                       # N = 20k and 50k, D = 384, CPU
    python benchmarks/bench_retrieval.py --sizes 1000000 --device cuda --no-naive   # on a GPU

Ratios are measured in the same run: the machine is shared and noisy, absolute times are not.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

METRIC_ARGS = dict(cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,))


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _data(n: int, dim: int, device: str):
    import torch

    gen = torch.Generator().manual_seed(0)
    n_labels = max(2, n // 10)
    labels = torch.randint(0, n_labels, (n,), generator=gen)
    centers = torch.randn(n_labels, dim, generator=gen)
    emb = centers[labels] + 1.5 * torch.randn(n, dim, generator=gen)
    return emb.to(device), labels.numpy()


def _naive(emb, labels, top_n: int):
    """Full N x N distance matrix, one topk: what a notebook user writes first."""
    import numpy as np
    import torch

    sq = (emb * emb).sum(1)
    dist = torch.addmm(sq[:, None] + sq[None, :], emb, emb.T, alpha=-2)
    dist.fill_diagonal_(float("inf"))
    _, ids = torch.topk(dist, top_n, dim=1, largest=False)
    del dist
    ids = ids.cpu().numpy()
    hits = labels[ids] == labels[:, None]
    n_gt = np.bincount(labels)[labels] - 1
    from oml_viz.engine import metrics as M

    return {f"cmc/{k}": np.nanmean(M.cmc(hits, n_gt, k)) for k in (1, 5)}


def worker(kind: str, n: int, dim: int, top_n: int, device: str) -> dict:
    import torch

    import oml_viz as ov

    emb, labels = _data(n, dim, device)
    ov.retrieve(emb[:512], labels[:512], top_n=top_n, progress=False)  # warm up kernels
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS counter to the current RSS
        f.write("5")
    base = _rss_mb("VmRSS")
    start = time.perf_counter()
    if kind == "engine":
        res = ov.retrieve(emb, labels, top_n=top_n, device=device, progress=False)
        table = res.metrics(**METRIC_ARGS)
        cmc1 = float(table.loc["OVERALL", "cmc/1"])
    else:
        cmc1 = float(_naive(emb, labels, top_n)["cmc/1"])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "peak_mb": _rss_mb("VmHWM") - base, "cmc1": cmc1}
    if device == "cuda":
        out["gpu_peak_mb"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    return out


def gemm_rate(dim: int, device: str) -> float:
    """Sustained fp32 GEMM flop/s of torch on this device (median of 5)."""
    import torch

    a = torch.randn(2048, dim, device=device)
    b = torch.randn(16384, dim, device=device)
    times = []
    for i in range(7):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b.T)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 2 * 2048 * 16384 * dim / statistics.median(times)


def run_worker(kind: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--dim", str(args.dim),
           "--top-n", str(args.top_n), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-naive", action="store_true", help="skip the full-matrix baseline")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.dim, args.top_n, args.device)))
        return

    rate = gemm_rate(args.dim, args.device)
    print(f"device={args.device} D={args.dim} top_n={args.top_n} GEMM rate {rate / 1e9:.0f} GFLOP/s "
          f"(median of {args.repeats} runs per cell)\n")
    print("| N | engine s | GEMM floor s | engine / floor | naive s | naive / engine | "
          "engine peak MB above data | naive peak MB | CMC@1 engine / naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        floor = 2 * n * n * args.dim / rate
        runs = [run_worker("engine", n, args) for _ in range(args.repeats)]
        if any("error" in r for r in runs):
            print(f"| {n} | error: {runs[0].get('error')} |")
            continue
        eng = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        if "gpu_peak_mb" in runs[0]:
            peak = f"{peak:.0f} (GPU {max(r['gpu_peak_mb'] for r in runs):.0f})"
        else:
            peak = f"{peak:.0f}"
        naive = {"seconds": float("nan"), "peak_mb": float("nan"), "cmc1": float("nan")}
        if not args.no_naive:
            naive = run_worker("naive", n, args)
            if "error" in naive:
                print(f"(naive baseline at N={n} failed: {naive['error']})")
                naive = {"seconds": float("nan"), "peak_mb": float("nan"), "cmc1": float("nan")}
        print(f"| {n} | {eng:.2f} | {floor:.2f} | {eng / floor:.2f}x | {naive['seconds']:.2f} | "
              f"{naive['seconds'] / eng:.2f}x | {peak} | {naive['peak_mb']:.0f} | "
              f"{runs[0]['cmc1']:.4f} / {naive['cmc1']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
