"""oml_viz.EmbeddingMetrics against open-metric-learning 4.0's, on the same data.

Prints every metric from both (they must agree to 1e-5), and each one's time and peak memory
(each runs in a fresh process: peak resident memory above what the process held once the data
was made, from ``ru_maxrss``).

OML is not a dependency (its requirements pin a stack we do not use); install it on the side:

    pip install --no-deps --target /tmp/omlsite open-metric-learning==4.0.0 omegaconf \\
        antlr4-python3-runtime==4.9.3 gdown validators
    PYTHONPATH=/tmp/omlsite python benchmarks/bench_oml_metrics.py --n 4000

``albumentations`` (OML's image transforms, unused here) is replaced by a stub when missing.
"""
from __future__ import annotations

import argparse
import importlib.abc
import json
import resource
import subprocess
import importlib.machinery
import sys
import time
import types
import warnings

import numpy as np
import torch


def _stub_albumentations() -> None:
    """OML imports albumentations at import time; metrics never call it."""
    try:
        import albumentations  # noqa: F401
        return
    except ImportError:
        pass

    class Stub(types.ModuleType):
        __path__: list = []

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)

            def stub(*args, fill=None, fill_mask=None, value=None, **kwargs):
                return None
            return stub

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] == "albumentations":
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            return Stub(spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())


def make_data(n: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    per_class = 5
    labels = np.repeat(np.arange(n // per_class), per_class)
    centers = rng.normal(size=(labels.max() + 1, dim)).astype(np.float32)
    emb = centers[labels] + rng.normal(scale=1.2, size=(len(labels), dim)).astype(np.float32)
    categories = np.array(["bags", "shoes", "tops"])[labels % 3]
    is_query = np.ones(len(labels), dtype=bool)
    is_gallery = rng.random(len(labels)) < 0.9
    is_gallery[np.arange(0, len(labels), per_class)] = True  # two gallery items in every class
    is_gallery[np.arange(1, len(labels), per_class)] = True
    sequence = np.where(rng.random(len(labels)) < 0.2, labels * 10 + rng.integers(0, 2, len(labels)),
                        -1 - np.arange(len(labels)))  # a few items share a sequence
    return emb, labels, is_query, is_gallery, categories, sequence


def oml_dataset(labels, is_query, is_gallery, categories, sequence):
    from oml.interfaces.datasets import IQueryGalleryLabeledDataset

    class Dataset(IQueryGalleryLabeledDataset):
        def __init__(self):
            self.extra_data = {"category": categories, "sequence": sequence}

        def __len__(self):
            return len(labels)

        def __getitem__(self, item):
            return {"idx": item}

        def get_labels(self):
            return labels

        def get_query_ids(self):
            return torch.from_numpy(np.flatnonzero(is_query))

        def get_gallery_ids(self):
            return torch.from_numpy(np.flatnonzero(is_gallery))

    return Dataset()


def run(cls, dataset, emb, batch_order, args) -> tuple[dict, float, float]:
    calc = cls(dataset, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,), fmr_vals=(0.1, 0.5),
               pcf_variance=(0.5, 0.9), verbose=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    calc.setup()
    for idx in batch_order:
        calc.update(torch.from_numpy(emb[idx]), torch.from_numpy(idx))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = calc.compute_metrics()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return metrics, seconds, peak


def flat(d, parent=""):
    out = {}
    for k, v in d.items():
        key = f"{parent}/{k}" if parent else str(k)
        out.update(flat(v, key) if isinstance(v, dict) else {key: float(v)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("oml", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only is None:
        return compare(args)
    _stub_albumentations()
    try:
        from oml.metrics.embeddings import EmbeddingMetrics as OMLEmbeddingMetrics
    except ImportError as e:
        sys.exit(f"open-metric-learning is not importable ({e}); see this script's docstring")
    from oml_viz import EmbeddingMetrics
    import oml_viz.engine  # noqa: F401 -- imported before the baseline, as OML's modules are

    torch.set_num_threads(max(1, torch.get_num_threads()))
    emb, labels, is_query, is_gallery, categories, sequence = make_data(args.n, args.dim, args.seed)
    order = np.random.default_rng(args.seed + 1).permutation(len(labels))
    batches = np.array_split(order, 17)  # shuffled order, uneven batch sizes
    dataset = oml_dataset(labels, is_query, is_gallery, categories, sequence)

    cls = OMLEmbeddingMetrics if args.only == "oml" else EmbeddingMetrics
    metrics, seconds, peak = run(cls, dataset, emb, batches, args)
    print(json.dumps({"metrics": flat(metrics), "seconds": seconds, "peak_mib": peak}))


def compare(args) -> None:
    """Each implementation in its own process, then the table."""
    out = {}
    for which in ("oml", "ours"):
        cmd = [sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim),
               "--seed", str(args.seed), "--only", which]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(proc.stderr[-2000:])
        out[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    f_theirs, f_ours = out["oml"]["metrics"], out["ours"]["metrics"]
    t_oml, t_ours = out["oml"]["seconds"], out["ours"]["seconds"]
    m_oml, m_ours = out["oml"]["peak_mib"], out["ours"]["peak_mib"]
    emb, labels, is_query, is_gallery, *_ = make_data(args.n, args.dim, args.seed)
    print(f"N={len(labels)} D={args.dim} queries={is_query.sum()} gallery={is_gallery.sum()}")
    print(f"{'metric':28s} {'OML 4.0':>10s} {'oml_viz':>10s}")
    worst = 0.0
    for key in f_theirs:
        a, b = f_theirs[key], f_ours.get(key, float("nan"))
        worst = max(worst, abs(a - b))
        print(f"{key:28s} {a:10.6f} {b:10.6f}")
    print(f"same keys: {list(f_theirs) == list(f_ours) or sorted(f_theirs) == sorted(f_ours)}; "
          f"largest difference {worst:.2e}")
    print(f"time: OML {t_oml:.2f} s, oml_viz {t_ours:.2f} s ({t_oml / t_ours:.1f}x)")
    print(f"peak memory above the data: OML {m_oml:.0f} MiB, oml_viz {m_ours:.0f} MiB")


if __name__ == "__main__":
    main()
