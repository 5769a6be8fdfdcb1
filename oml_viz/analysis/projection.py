"""2-D maps of embeddings: PCA (torch, exact), UMAP (umap-learn) or t-SNE (openTSNE / scikit-learn).

- ``"pca"``: the top two principal axes from the D x D covariance (float32 GEMMs summed in float64,
  float64 eigendecomposition, on a torch device),
  exact up to the sign of each axis; the sign is fixed so that each axis's largest loading is
  positive. Under a second at 50,000 x 384.
- ``"umap"`` (the default): umap-learn's layout, fed the **engine's exact k-NN graph**
  (:func:`oml_viz.retrieve`) instead of its approximate NN-descent, after a PCA to
  :data:`PCA_DIMS` dimensions when D is larger (the neighbours of 384-D embeddings barely change,
  and the search costs 8x less). Seeded UMAP runs single-threaded and deterministic.
- ``"tsne"``: openTSNE (FFT-accelerated) on the same PCA input, or scikit-learn's Barnes-Hut t-SNE
  when openTSNE is not installed; PCA initialisation, seeded.

Results are cached by content: the SHA-1 of the embeddings' bytes, shape, method, seed and
parameters, in memory (the last few) and on disk under ``$OML_VIZ_CACHE_DIR`` (default
``~/.cache/oml_viz``)/``projections``, so reopening a panel or a notebook does not recompute.
numba's compiled UMAP kernels are cached on disk too (``NUMBA_CACHE_DIR``, default under the same
folder), which is what makes a second process start fast.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 16)).astype("float32")
    >>> xy = project(x, method="pca")
    >>> xy.shape, xy.dtype
    ((100, 2), dtype('float32'))
    >>> bool(np.array_equal(project(x, method="pca"), xy))
    True
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from oml_viz.checks import check_int
from oml_viz.data.atomic import atomic_path
from oml_viz.engine.validation import as_embeddings, check_choice, check_positive_int, resolve_device

__all__ = ["METHODS", "PCA_DIMS", "cache_dir", "pca", "project", "umap_epochs"]

METHODS = ("umap", "pca", "tsne")
PCA_DIMS = 50  # pre-reduction before UMAP / t-SNE
_MEMORY: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMORY_ITEMS = 8
_LOCK = threading.Lock()
_PROGRESS_MIN_ITEMS = 5000


def cache_dir() -> Path:
    """Where projections (and numba's compiled UMAP kernels) are cached on disk."""
    return Path(os.environ.get("OML_VIZ_CACHE_DIR", Path.home() / ".cache" / "oml_viz")).expanduser()


def pca(embeddings: Any, n_components: int = 2, device: str | torch.device | None = None) -> np.ndarray:
    """(N, n_components) float32 principal-component scores, exact up to sign (largest loading > 0).

    Example:
        >>> x = np.array([[0.0, 0.0], [2.0, 0.1], [4.0, 0.0]], dtype=np.float32)
        >>> np.round(pca(x, 1).ravel(), 3).tolist()
        [-2.0, 0.0, 2.0]
    """
    x = as_embeddings(embeddings)
    n_components = check_positive_int("n_components", n_components)
    if n_components > x.shape[1]:
        raise ValueError(f"n_components={n_components} is above the embeddings' {x.shape[1]} dimensions")
    dev = resolve_device(device)
    return _pca(x, n_components, dev)


def _pca(x: torch.Tensor, n_components: int, dev: torch.device) -> np.ndarray:
    # the mean in float64; the covariance of the centred rows as float32 GEMMs (chunks: bounded
    # memory) summed in float64; the D x D eigenproblem in float64
    mean = sum(chunk.to(dev).sum(0).double() for chunk in torch.split(x, 16384)) / len(x)
    mean32 = mean.to(torch.float32)
    cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=dev)
    for chunk in torch.split(x, 16384):
        c = chunk.to(dev) - mean32
        cov += (c.T @ c).double()
    # one thread for the D x D eigenproblem: with torch's threads it took 0.5-5 s on 2 cores, alone 0.03 s
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    finally:
        torch.set_num_threads(threads)
    axes = vecs[:, -n_components:].flip(1)
    signs = torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    axes = (axes * torch.where(signs == 0, torch.ones_like(signs), signs)).to(torch.float32)
    out = torch.cat([(chunk.to(dev) - mean32) @ axes for chunk in torch.split(x, 16384)])
    return out.cpu().numpy()


def project(
    embeddings: Any,
    method: str = "umap",
    seed: int = 0,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    perplexity: float = 30.0,
    distance: str = "euclidean",
    device: str | torch.device | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> np.ndarray:
    """A 2-D map of the embeddings: (N, 2) float32, deterministic for a given ``seed``.

    Args:
        embeddings: (N, D) numpy array or torch tensor.
        method: ``"umap"`` (default), ``"pca"`` or ``"tsne"``.
        seed: random seed of UMAP / t-SNE (PCA has none).
        n_neighbors, min_dist: UMAP's; perplexity: t-SNE's.
        n_epochs: UMAP's optimisation epochs (default :func:`umap_epochs`: 500 up to 10,000 items,
            then fewer, down to 100 at 40,000 and more).
        distance: ``"euclidean"`` or ``"cosine"`` (cosine maps the unit-length rows).
        device: torch device of the PCA and the neighbour search (default: CUDA when available).
        cache: reuse and store the result in the content-keyed cache (module docstring).
        progress: show a progress bar (default: for 5,000 items and more).
    """
    method = check_choice("method", method, METHODS)
    distance = check_choice("distance", distance, ("euclidean", "cosine"))
    seed = check_int("seed", seed)
    x = as_embeddings(embeddings)
    n = x.shape[0]
    if distance == "cosine":
        from oml_viz.engine.search import unit_rows

        x = unit_rows(x)
    params: dict[str, Any] = {"method": method, "seed": int(seed), "distance": distance}
    if method == "umap":
        n_neighbors = check_positive_int("n_neighbors", n_neighbors)
        if n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2; got {n_neighbors}")
        n_epochs = umap_epochs(n) if n_epochs is None else check_positive_int("n_epochs", n_epochs)
        params.update(n_neighbors=n_neighbors, min_dist=float(min_dist), pca_dims=PCA_DIMS, n_epochs=n_epochs)
    elif method == "tsne":
        if not perplexity > 0:
            raise ValueError(f"perplexity must be > 0; got {perplexity!r}")
        params.update(perplexity=float(perplexity), pca_dims=PCA_DIMS)
    if method != "pca" and n < 4:
        raise ValueError(f"embeddings has {n} rows: method {method!r} needs at least 4 (use method='pca')")
    key = _content_key(x, params) if cache else ""
    if cache:
        hit = _cached(key)
        if hit is not None:
            return hit
    dev = resolve_device(device)
    show = (n >= _PROGRESS_MIN_ITEMS) if progress is None else bool(progress)
    steps = {"pca": ["pca"], "umap": ["pca", "neighbours", "layout"], "tsne": ["pca", "layout"]}[method]
    with tqdm(total=len(steps), desc=f"project ({method})", disable=not show, leave=False) as bar:
        if method == "pca":
            xy = _pca(x, 2, dev) if x.shape[1] >= 2 else np.c_[_pca(x, 1, dev), np.zeros((n, 1), np.float32)]
            bar.update(1)
        else:
            reduced = _reduce(x, dev)
            bar.set_postfix_str("pca")
            bar.update(1)
            if method == "umap":
                xy = _umap(reduced, n_neighbors, float(min_dist), int(n_epochs), int(seed), dev, bar)
            else:
                xy = _tsne(reduced, float(perplexity), int(seed))
                bar.update(1)
    xy = np.ascontiguousarray(xy, dtype=np.float32)
    if cache:
        _store(key, xy)
    return xy.copy()


def _reduce(x: torch.Tensor, dev: torch.device) -> np.ndarray:
    if x.shape[1] <= PCA_DIMS:
        return x.numpy().astype(np.float32, copy=True)
    return _pca(x, PCA_DIMS, dev)


def umap_epochs(n: int) -> int:
    """UMAP's epochs for ``n`` items: umap-learn's 500 up to 10,000 items, then ``2e6 / n`` (the
    work per epoch grows with n), at least 100. Measured on 2 cores (README): 200 epochs of a
    50,000-item layout alone take longer than the whole 60 s budget of the map."""
    return 500 if n <= 10_000 else max(100, min(500, int(2e6 / n)))


def _umap(x: np.ndarray, n_neighbors: int, min_dist: float, n_epochs: int, seed: int, dev: torch.device,
          bar: Any) -> np.ndarray:
    _numba_cache()
    from oml_viz.engine import retrieve

    n = len(x)
    k = min(n_neighbors, n) - 1  # UMAP's lists start with the item itself
    res = retrieve(x, np.zeros(n, dtype=np.int64), top_n=k, device=dev, progress=False)
    knn_ids = np.concatenate([np.arange(n)[:, None], res.retrieved_ids], axis=1)
    knn_dist = np.concatenate([np.zeros((n, 1), np.float32), res.distances], axis=1)
    bar.update(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transform() unavailable without a search index; n_jobs with a seed
        import umap

        model = umap.UMAP(n_neighbors=k + 1, min_dist=min_dist, n_epochs=n_epochs, random_state=seed, n_jobs=1,
                          precomputed_knn=(knn_ids, knn_dist), low_memory=True, verbose=False)
        xy = model.fit_transform(x)
    bar.update(1)
    return xy


def _tsne(x: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    perplexity = min(perplexity, (len(x) - 1) / 3)
    try:
        from openTSNE import TSNE
    except ImportError:
        from sklearn.manifold import TSNE as SkTSNE

        return SkTSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return np.asarray(TSNE(perplexity=perplexity, initialization="pca", random_state=seed, n_jobs=1,
                           verbose=False).fit(x))


def _numba_cache() -> None:
    """numba compiles UMAP's kernels on first use: keep them on disk so the next process skips it."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        folder = cache_dir() / "numba"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            import numba.core.config

            numba.core.config.reload_config()  # numba read the environment when it was imported
        except OSError:
            pass  # read-only home: numba falls back to __pycache__ next to umap's sources
    from oml_viz.compat.umap import enable_numba_cache

    enable_numba_cache()


def _content_key(x: torch.Tensor, params: dict[str, Any]) -> str:
    h = hashlib.sha1()
    h.update(repr((tuple(x.shape), sorted(params.items()))).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def _cached(key: str) -> np.ndarray | None:
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key].copy()
    path = cache_dir() / "projections" / f"{key}.npy"
    try:
        xy = np.load(path)
    except (OSError, ValueError):
        return None
    with _LOCK:
        _MEMORY[key] = xy
        while len(_MEMORY) > _MEMORY_ITEMS:
            _MEMORY.popitem(last=False)
    return xy.copy()


def _store(key: str, xy: np.ndarray) -> None:
    with _LOCK:
        _MEMORY[key] = xy.copy()
        while len(_MEMORY) > _MEMORY_ITEMS:
            _MEMORY.popitem(last=False)
    folder = cache_dir() / "projections"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{key}.npy") as tmp:
            np.save(tmp, xy)
    except OSError:
        pass  # no disk cache (read-only home): the memory cache still holds it
