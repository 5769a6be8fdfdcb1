"""Retrieval engine speed and memory against faiss, the previous fp32 path and a full-matrix baseline.

Leave-one-out on synthetic clustered data (every item both query and gallery), top-10. Cells:

- ``engine``: ``ov.retrieve`` + cmc/1, cmc/5, precision/5, map/5 (the default exact filter-and-verify
  search on the backend measured fastest; leave-one-out, so each pair is scored once);
- ``engine-rows``: the same with ``OML_VIZ_SEARCH=filter-rows`` (row by row: every pair scored twice);
- ``engine-fp32``: the same with ``OML_VIZ_SEARCH=fp32`` (the single float32 pass used before);
- ``faiss``: faiss ``IndexFlatL2`` search of k + 1 neighbours (search only, no metrics), threads = torch's;
- ``full-matrix``: OML-style: rows of the full N x N distance matrix (``addmm``) then ``torch.topk``;
- ``fnmr`` (``--fnmr``): ``retrieve`` then ``metrics(fmr_vals=(0.001, 0.01, 0.1))`` with 10 categories;
  prints the retrieval time and the FNMR@FMR time separately.

Each cell runs in a fresh subprocess, so its peak resident memory (above the embeddings, which are
allocated before the peak is reset) is its own. The first lines give the load and the GEMM rates of
every backend measured in the same run: the machine is shared and noisy, read the ratios.

    python benchmarks/bench_retrieval.py --sizes 50000            # engine vs faiss vs fp32 vs full
    python benchmarks/bench_retrieval.py --sizes 30000 --fnmr --only engine   # FNMR@FMR cost
    python benchmarks/bench_retrieval.py --sizes 1000000 --device cuda --no-naive   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

METRIC_ARGS = dict(cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,))
FMR_VALS = (0.001, 0.01, 0.1)
CELLS = ("engine", "engine-rows", "engine-fp32", "faiss", "full-matrix")


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


def _full_matrix(emb, labels, top_n: int, rows: int = 2048):
    """Rows of the N x N distance matrix (squared norms + addmm), self masked, one topk per block."""
    import numpy as np
    import torch

    from oml_viz.engine import metrics as M

    sq = (emb * emb).sum(1)
    ids = []
    for start in range(0, len(emb), rows):
        q = emb[start : start + rows]
        dist = torch.addmm(sq[start : start + rows, None] + sq[None, :], q, emb.T, alpha=-2)
        dist[torch.arange(len(q)), torch.arange(start, start + len(q))] = float("inf")
        ids.append(torch.topk(dist, top_n, dim=1, largest=False).indices)
        del dist
    ids = torch.cat(ids).cpu().numpy()
    hits = labels[ids] == labels[:, None]
    n_gt = np.bincount(labels)[labels] - 1
    return float(np.nanmean(M.cmc(hits, n_gt, 1)))


def _faiss(emb, top_n: int) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(torch.get_num_threads())
    x = emb.cpu().numpy()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    index.search(x, top_n + 1)  # every item finds itself first


def worker(kind: str, n: int, dim: int, top_n: int, device: str) -> dict:
    import numpy as np
    import torch

    import oml_viz as ov

    emb, labels = _data(n, dim, device)
    categories = np.arange(n) % 10
    if kind.startswith("engine") or kind == "fnmr":
        ov.retrieve(emb[:512], labels[:512], top_n=top_n, progress=False)  # warm up kernels
        from oml_viz.engine.gemm import choose_backend

        backend = choose_backend(torch.device(device)).name  # the one-off measurement, not timed
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    try:  # return the heap's free memory first, so that the peak counts what the cell allocates
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS counter to the current RSS
        f.write("5")
    base = _rss_mb("VmRSS")
    start = time.perf_counter()
    out: dict = {}
    if kind in ("engine", "engine-rows", "engine-fp32", "fnmr"):
        res = ov.retrieve(emb, labels, top_n=top_n, device=device, progress=False, categories=categories)
        table = res.metrics(**METRIC_ARGS)
        out["cmc1"] = float(table.loc["OVERALL", "cmc/1"])
        out["backend"] = backend if kind != "engine-fp32" else "torch-fp32 (single pass)"
        if kind == "fnmr":
            mid = time.perf_counter()
            out["retrieval_s"] = mid - start
            res.metrics(cmc_top_k=(), precision_top_k=(), map_top_k=(), fmr_vals=FMR_VALS)
            out["fnmr_s"] = time.perf_counter() - mid
    elif kind == "faiss":
        _faiss(emb, top_n)
        out["cmc1"] = float("nan")
    else:
        out["cmc1"] = _full_matrix(emb, labels, top_n)
    if device == "cuda":
        torch.cuda.synchronize()
    out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = _rss_mb("VmHWM") - base
    if device == "cuda":
        out["gpu_peak_mb"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    return out


def gemm_rates(dim: int, device: str) -> dict[str, float]:
    """flop/s of every backend the engine can use (one 2048 x (dim + 1) x 50000 product, best of 3)."""
    import torch

    from oml_viz.engine.gemm import candidates_for

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a0 = torch.randn(2048, dim + 1, generator=gen)
    b0 = torch.randn(50000, dim + 1, generator=gen)
    rates = {}
    for backend in candidates_for(dev):
        a, b = backend.prepare(a0.to(dev)), backend.prepare(b0.to(dev))
        best = float("inf")
        for i in range(4):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            backend.mm(a, b)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - t)
        rates[backend.name] = 2 * 2048 * 50000 * (dim + 1) / best
    return rates


def run_worker(kind: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--dim", str(args.dim),
           "--top-n", str(args.top_n), "--device", args.device]
    env = dict(os.environ)
    if kind in ("engine-fp32", "engine-rows"):
        env["OML_VIZ_SEARCH"] = "fp32" if kind == "engine-fp32" else "filter-rows"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-naive", action="store_true", help="skip the full-matrix baseline")
    parser.add_argument("--no-faiss", action="store_true", help="skip faiss")
    parser.add_argument("--fnmr", action="store_true", help="also time FNMR@FMR against the retrieval")
    parser.add_argument("--only", nargs="+", choices=CELLS + ("fnmr",), help="run only these cells")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.dim, args.top_n, args.device)))
        return

    import torch

    cells = list(args.only or CELLS)
    if args.no_naive and "full-matrix" in cells:
        cells.remove("full-matrix")
    if (args.no_faiss or args.device != "cpu") and "faiss" in cells:
        cells.remove("faiss")
    if args.fnmr and "fnmr" not in cells:
        cells.append("fnmr")
    print(f"load average before: {_load()}; torch threads {torch.get_num_threads()}; device={args.device} "
          f"D={args.dim} top_n={args.top_n}; median of {args.repeats} per cell")
    rates = gemm_rates(args.dim, args.device)
    best_fp32 = max(r for name, r in rates.items() if "bf16" not in name)
    print("GEMM rates (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in rates.items()))
    for n in args.sizes:
        floor = 2 * n * n * args.dim / best_fp32
        print(f"\nN = {n}: fp32 GEMM floor (fastest fp32 rate) {floor:.2f} s")
        print("| cell | backend | seconds | / engine | peak MB above data | CMC@1 |")
        print("|---|---|---|---|---|---|")
        results = {}
        for rep in range(args.repeats):  # interleaved, so that load bursts hit every cell alike
            for kind in cells:
                results.setdefault(kind, []).append(run_worker(kind, n, args))
        engine_s = None
        for kind in cells:
            runs = results[kind]
            if any("error" in r for r in runs):
                print(f"| {kind} | error: {runs[0].get('error')} | | | | |")
                continue
            sec = statistics.median(r["seconds"] for r in runs)
            if kind == "engine":
                engine_s = sec
            peak = f"{max(r['peak_mb'] for r in runs):.0f}"
            if "gpu_peak_mb" in runs[0]:
                peak += f" (GPU {max(r['gpu_peak_mb'] for r in runs):.0f})"
            ratio = f"{sec / engine_s:.2f}x" if engine_s else "-"
            print(f"| {kind} | {runs[0].get('backend', '-')} | {sec:.2f} | {ratio} | {peak} | "
                  f"{runs[0]['cmc1']:.4f} |", flush=True)
            if kind == "fnmr":
                ret = statistics.median(r["retrieval_s"] for r in runs)
                fn = statistics.median(r["fnmr_s"] for r in runs)
                print(f"|   fnmr@fmr {FMR_VALS}, OVERALL + 10 categories | | {fn:.2f} | "
                      f"{fn / ret:.2f}x its retrieval ({ret:.2f} s) | | |")
        if engine_s and "faiss" in results and "error" not in results["faiss"][0]:
            faiss_s = statistics.median(r["seconds"] for r in results["faiss"])
            print(f"engine / faiss = {engine_s / faiss_s:.2f} (target <= 0.8)")
        if engine_s and "full-matrix" in results and "error" not in results["full-matrix"][0]:
            full_s = statistics.median(r["seconds"] for r in results["full-matrix"])
            print(f"full-matrix / engine = {full_s / engine_s:.2f} (target >= 4)")
        print(f"engine / fp32 floor = {engine_s / floor:.2f}" if engine_s else "")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
