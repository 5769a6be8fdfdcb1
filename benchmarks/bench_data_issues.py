"""Data issues at scale: label issues and duplicates against one retrieve() call, and cleanlab.

Planted data (N x D, default 50,000 x 384): overlapping Gaussian classes (class spreads vary), 3% of
the labels flipped to another class, and near-duplicate pairs (half across a train/validation
split) plus a few exact copies. Printed, all measured in this run:

- time of one ``ov.retrieve(top_n=10)`` (the baseline), ``ov.find_label_issues(k=10)`` and
  ``ov.find_duplicates()``, with their ratios to the baseline (target <= 1.5);
- precision among the top (number flipped) suspects of: oml_viz, a plain k-NN vote (share of
  disagreeing neighbours, from the same retrieve) and cleanlab's ``Datalab`` (k-NN label issues on
  the same features, k = 10), with Datalab's time;
- recall of the planted duplicates and the automatic threshold;
- the same precisions on embeddings of a trained model (an MLP trained on half of scikit-learn's
  digits, embedding the other half; 3% flipped; mean over 5 seeds);
- ``ov.project`` at N in a fresh process (umap twice: the first may compile numba kernels, the
  second reads them from the disk cache; pca; tsne with ``--tsne``).

Usage: ``python benchmarks/bench_data_issues.py [--n 50000] [--dim 384] [--no-cleanlab] [--no-project]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

import oml_viz as ov
from oml_viz.analysis.label_issues import knn_vote_scores


def planted(n: int, dim: int, seed: int = 0, n_classes: int = 100, share: float = 0.03, latent: int = 16):
    """Overlapping classes in a ``latent``-dim space (class spreads vary), mapped linearly to ``dim``
    dims plus a little isotropic noise: embeddings of low intrinsic dimension, as a model's are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, latent)).astype(np.float32) * 1.6 / np.sqrt(2)
    truth = rng.integers(0, n_classes, n)
    spread = rng.uniform(0.7, 1.3, n_classes).astype(np.float32) * 0.9
    z = centres[truth] + rng.normal(size=(n, latent)).astype(np.float32) * spread[truth, None]
    lift = rng.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    emb = z @ lift + rng.normal(size=(n, dim)).astype(np.float32) * 0.05
    m = int(round(share * n))
    flipped = rng.choice(n, m, replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, n_classes, m)) % n_classes
    n_dup = max(10, n // 1000)
    src = rng.choice(n, n_dup, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n_dup, replace=False)
    emb[dst] = emb[src] + rng.normal(size=(n_dup, dim)).astype(np.float32) * 0.01
    emb[dst[:n_dup // 5]] = emb[src[:n_dup // 5]]  # a fifth are exact copies
    splits = np.where(rng.random(n) < 0.5, "train", "validation")
    pairs = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    return emb, labels, flipped, splits, pairs


def precision(order: np.ndarray, flipped: np.ndarray) -> float:
    return len(set(order[:len(flipped)].tolist()) & set(flipped.tolist())) / len(flipped)


def datalab(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    from cleanlab import Datalab

    t = time.perf_counter()
    lab = Datalab(pd.DataFrame({"y": labels}), label_name="y", verbosity=0)
    lab.find_issues(features=emb, issue_types={"label": {"k": 10}})
    quality = lab.get_issues("label")["label_score"].to_numpy()
    return np.lexsort((np.arange(len(quality)), quality)), time.perf_counter() - t


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def trained_model_precisions(seeds: int = 5, use_cleanlab: bool = True) -> dict[str, float]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    out = {"oml_viz": [], "kNN vote": [], "Datalab": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(y))
        a, b = perm[:700], perm[700:]
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
        head = torch.nn.Linear(32, 10)
        opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 1e-3)
        xa, ya = torch.tensor(x[a] / 16, dtype=torch.float32), torch.tensor(y[a])
        for _ in range(60):
            loss = torch.nn.functional.cross_entropy(head(net(xa)), ya)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            emb = net(torch.tensor(x[b] / 16, dtype=torch.float32)).numpy()
        truth = y[b]
        m = int(round(0.03 * len(truth)))
        flipped = rng.choice(len(truth), m, replace=False)
        labels = truth.copy()
        labels[flipped] = (truth[flipped] + rng.integers(1, 10, m)) % 10
        out["oml_viz"].append(precision(ov.find_label_issues(emb, labels, k=10).index.to_numpy(), flipped))
        vote = knn_vote_scores(ov.retrieve(emb, labels, top_n=10, progress=False))
        out["kNN vote"].append(precision(np.lexsort((np.arange(len(vote)), -vote)), flipped))
        if use_cleanlab:
            out["Datalab"].append(precision(datalab(emb, labels)[0], flipped))
    return {k: float(np.mean(v)) for k, v in out.items() if v}


_PROJECT = """
import sys, time, numpy as np
t0 = time.perf_counter()
import oml_viz as ov
x = np.load(sys.argv[1])
t = time.perf_counter()
ov.project(x, method=sys.argv[2], cache=False, progress=False)
print(f"{time.perf_counter() - t:.1f} {time.perf_counter() - t0:.1f}")
"""


def project_times(emb: np.ndarray, methods: list[str]) -> list[tuple[str, float, float]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "emb.npy")
        np.save(path, emb)
        for method in methods:
            r = subprocess.run([sys.executable, "-c", _PROJECT, path, method], capture_output=True, text=True,
                               check=True)
            call, total = (float(v) for v in r.stdout.split()[-2:])
            out.append((method, call, total))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--no-cleanlab", action="store_true")
    p.add_argument("--no-project", action="store_true")
    p.add_argument("--tsne", action="store_true")
    p.add_argument("--project-only", action="store_true")
    args = p.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    emb, labels, flipped, splits, pairs = planted(args.n, args.dim)
    print(f"planted: N={args.n}, D={args.dim}, {len(flipped)} flipped labels, {len(pairs)} duplicate pairs")
    if not args.project_only:
        issues_and_duplicates(args, emb, labels, flipped, splits, pairs)
    if not args.no_project:
        methods = ["umap", "umap", "pca"] + (["tsne"] if args.tsne else [])
        print("\n| ov.project, fresh process | call (s) | with import (s) | load average |")
        print("|---|---|---|---|")
        for i, (method, call, total) in enumerate(project_times(emb, methods)):
            note = " (first process)" if i == 0 else " (numba cache warm)" if method == "umap" else ""
            print(f"| {method}{note} | {call:.1f} | {total:.1f} | {os.getloadavg()[0]:.1f} |")


def issues_and_duplicates(args, emb, labels, flipped, splits, pairs) -> None:

    ov.retrieve(emb[:2000], labels[:2000], top_n=10, progress=False)  # warm-up: torch's first-call costs
    res, t_ret = timed(lambda: ov.retrieve(emb, labels, top_n=10))
    issues, t_li = timed(lambda: ov.find_label_issues(emb, labels, k=10))
    dups, t_du = timed(lambda: ov.find_duplicates(emb, splits=splits, labels=labels))
    vote = knn_vote_scores(res)
    p_ours = precision(issues.index.to_numpy(), flipped)
    p_vote = precision(np.lexsort((np.arange(len(vote)), -vote)), flipped)
    found = set(zip(dups["id_a"].tolist(), dups["id_b"].tolist()))
    print()
    print("| step | time (s) | / one retrieve |")
    print("|---|---|---|")
    print(f"| ov.retrieve(top_n=10) | {t_ret:.1f} | 1.00 |")
    print(f"| ov.find_label_issues(k=10) | {t_li:.1f} | {t_li / t_ret:.2f} |")
    print(f"| ov.find_duplicates() | {t_du:.1f} | {t_du / t_ret:.2f} |")
    print(f"\nduplicates: {len(pairs & found)} of {len(pairs)} planted pairs found; {len(dups)} pairs reported, "
          f"{int(dups['cross_split'].sum())} across splits; automatic threshold {dups.attrs['threshold']:.4g}")
    print("\n| label issues, 3% flipped | precision@flipped | time (s) |")
    print("|---|---|---|")
    print(f"| oml_viz find_label_issues | {p_ours:.3f} | {t_li:.1f} |")
    print(f"| plain k-NN vote (same neighbours) | {p_vote:.3f} | {t_ret:.1f} |")
    if not args.no_cleanlab:
        order, t_dl = datalab(emb, labels)
        print(f"| cleanlab Datalab (k=10, features) | {precision(order, flipped):.3f} | {t_dl:.1f} |")
    print(f"(chance: {len(flipped) / args.n:.3f})")
    trained = trained_model_precisions(use_cleanlab=not args.no_cleanlab)
    print("\ntrained-model embeddings (digits MLP, 3% flipped, mean of 5 seeds): "
          + ", ".join(f"{k} {v:.3f}" for k, v in trained.items()))


if __name__ == "__main__":
    main()
