"""project(): PCA against scikit-learn up to sign, seeded UMAP / t-SNE, the content cache, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oml_viz as ov
from oml_viz.analysis import projection


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OML_VIZ_CACHE_DIR", str(tmp_path / "cache"))
    projection._MEMORY.clear()
    yield
    projection._MEMORY.clear()


def blobs(n: int = 150, dim: int = 12, seed: int = 0, with_blob: bool = False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 5
    blob = rng.integers(0, 3, n)
    x = (centres[blob] + rng.normal(size=(n, dim))).astype(np.float32)
    return (x, blob) if with_blob else x


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 80), dim=st.integers(2, 20))
def test_pca_matches_scikit_learn_up_to_sign(seed, n, dim):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, dim)) * rng.uniform(0.1, 5, dim)).astype(np.float32)
    ours = ov.project(x, method="pca", cache=False)
    ref = PCA(n_components=2, svd_solver="full").fit_transform(x.astype(np.float64))
    var = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    for j in range(2):
        if j + 1 < len(var) and abs(var[j] - var[j + 1]) < 1e-3 * var[0]:
            continue  # (near-)equal variances: the axis itself is not unique
        sign = np.sign(ours[:, j] @ ref[:, j]) or 1.0
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], atol=1e-3 * max(1.0, np.abs(ref).max()))
    assert ours.dtype == np.float32 and ours.shape == (n, 2)


def test_pca_is_deterministic_with_a_fixed_sign():
    x = blobs()
    a = ov.project(x, method="pca", cache=False)
    b = ov.project(torch.from_numpy(x), method="pca", cache=False)
    assert np.array_equal(a, b)
    c = ov.project(-x, method="pca", cache=False)  # the axes flip with the data; the sign rule puts them back
    np.testing.assert_allclose(c, -a, atol=1e-4)


@pytest.mark.slow
def test_umap_is_seeded_and_deterministic():
    x, blob = blobs(120, 8, with_blob=True)
    a = ov.project(x, method="umap", seed=0, cache=False)
    b = ov.project(x, method="umap", seed=0, cache=False)
    c = ov.project(x, method="umap", seed=1, cache=False)
    assert a.shape == (120, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # the clusters stay apart on the map: each point's nearest map neighbour is in its blob
    d = ((a[:, None] - a[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (blob[d.argmin(1)] == blob).mean() > 0.95


@pytest.mark.slow
def test_tsne_is_seeded_and_deterministic():
    x = blobs(100, 6)
    a = ov.project(x, method="tsne", seed=3, cache=False)
    b = ov.project(x, method="tsne", seed=3, cache=False)
    assert a.shape == (100, 2) and np.array_equal(a, b)


def test_results_are_cached_by_content(monkeypatch, tmp_path, private_cache):
    x = blobs()
    calls = []
    real = projection._pca
    monkeypatch.setattr(projection, "_pca", lambda *a: calls.append(1) or real(*a))
    first = ov.project(x, method="pca")
    again = ov.project(x.copy(), method="pca")  # same content, another array
    assert np.array_equal(first, again) and len(calls) == 1
    again[0] = 99  # callers get copies: the cache cannot be altered through them
    assert np.array_equal(ov.project(x, method="pca"), first)
    projection._MEMORY.clear()  # a new process: the disk copy answers
    assert np.array_equal(ov.project(x, method="pca"), first) and len(calls) == 1
    assert list((tmp_path / "cache" / "projections").glob("*.npy"))
    x2 = x.copy()
    x2[5, 3] += 1
    ov.project(x2, method="pca")
    assert len(calls) == 2


def test_bad_inputs_are_named():
    x = blobs(10, 3)
    with pytest.raises(ValueError, match=r"method must be one of \['umap', 'pca', 'tsne'\]; got 'mds'"):
        ov.project(x, method="mds")
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        ov.project(x[0], method="pca")
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[7\]"):
        ov.project(bad, method="pca")
    with pytest.raises(ValueError, match="needs at least 4"):
        ov.project(x[:3], method="umap")
    with pytest.raises(TypeError, match=r"seed must be an int, got 0\.5 \(float\)"):  # a TypeError, not ValueError
        ov.project(x, method="pca", seed=0.5)
    with pytest.raises(ValueError, match="n_neighbors must be"):
        ov.project(x, method="umap", n_neighbors=1)


def test_umap_compat_finds_the_numba_kernels():
    """oml_viz.compat.umap relies on umap-learn keeping its kernels as numba dispatchers in these modules."""
    import importlib

    from numba.core.registry import CPUDispatcher

    from oml_viz.compat import umap as umap_compat

    layouts = importlib.import_module("umap.layouts")
    umap_ = importlib.import_module("umap.umap_")
    assert isinstance(umap_.smooth_knn_dist, CPUDispatcher) and isinstance(layouts.clip, CPUDispatcher)
    n = sum(isinstance(v, CPUDispatcher) for m in umap_compat._MODULES
            for v in vars(importlib.import_module(m)).values())
    assert n > 20
