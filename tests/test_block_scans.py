"""The numpy and torch implementations of the FNMR block scans agree, and agree with plain definitions."""
import numpy as np
import pytest
import torch

from oml_viz.engine import block_scans


def _block(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(5, 2, size=(37, 211)), 1).astype(np.float32)  # many exact ties at the edges
    y[rng.random(y.shape) < 0.05] = np.inf  # relevant and excluded pairs
    return torch.from_numpy(y)


@pytest.mark.parametrize("seed", range(4))
def test_scan_regions_implementations_agree_with_the_definition(seed):
    y = _block(seed)
    yn = y.numpy()
    f = np.float32
    regions = [(f(-np.inf), f(2.0)), (f(4.5), f(4.6)), (f(6.0), f(np.inf))]
    inside = np.zeros(yn.shape, bool)
    for a, b in regions:
        inside |= (yn >= a) & (yn < b)
    r, c = np.nonzero(inside)
    expected_starts = [int((yn < a).sum()) for a, _ in regions]
    for use_numpy in (True, False):
        starts, rr, cc, values = block_scans.scan_regions(y[:, 3:200], [(a, b) for a, b in regions], use_numpy)
        sub = inside[:, 3:200]
        er, ec = np.nonzero(sub)
        assert starts.tolist() == [int((yn[:, 3:200] < a).sum()) for a, _ in regions]
        np.testing.assert_array_equal(rr, er)
        np.testing.assert_array_equal(cc, ec)
        np.testing.assert_array_equal(values, yn[:, 3:200][er, ec])
    starts, rr, cc, _ = block_scans.scan_regions(y, regions)
    assert starts.tolist() == expected_starts
    np.testing.assert_array_equal(rr, r)
    np.testing.assert_array_equal(cc, c)


@pytest.mark.parametrize("cut", [np.inf, 5.05, 0.0])
def test_histogram_implementations_agree(cut):
    y = _block(7)
    yn = y.numpy()
    out = [block_scans.histogram(y, -1.0, 12.0, 64, cut, use_numpy) for use_numpy in (True, False)]
    np.testing.assert_array_equal(out[0], out[1])
    assert out[0].sum() == np.isfinite(yn).sum()
    below = yn[yn < np.float32(cut)].astype(np.float64)
    edges = np.linspace(-1.0, 12.0, 65)
    near_edge = np.abs(below[:, None] - edges[None, :]).min(1) < 1e-4
    hist, _ = np.histogram(below[~near_edge], bins=edges)
    hist[0] += (below[~near_edge] < -1).sum()  # outside the range: clamped into the end bins
    hist[-1] += (below[~near_edge] > 12).sum() + (np.isfinite(yn) & (yn >= np.float32(cut))).sum()
    diff = out[0] - hist  # only values on a bin edge may differ, each moving one count
    assert np.abs(diff).sum() <= 2 * near_edge.sum() and diff.sum() == near_edge.sum()


def test_row_counts_below_implementations_agree():
    y = _block(9)
    thresholds = [2.0, 5.0, 5.05, np.inf]
    expected = np.stack([(y.numpy() < np.float32(t)).sum(1) for t in thresholds], 1)
    for use_numpy in (True, False):
        np.testing.assert_array_equal(block_scans.row_counts_below(y, thresholds, use_numpy), expected)


@pytest.mark.parametrize("cut", [np.inf, 6.3])
@pytest.mark.parametrize("view", ["contiguous", "column slice"])
def test_bins_below_implementations_agree_in_row_major_order(cut, view):
    y = _block(5)
    y = y if view == "contiguous" else y[:, 7:150]  # a tile's segment: not contiguous
    yn = y.numpy()
    values = yn[yn < np.float32(cut)]  # row-major, finite only
    expected = np.clip(((values - np.float32(-1.0)) * np.float32(64 / 13.0)).astype(np.int64), 0, 63)
    for use_numpy in (True, False):
        np.testing.assert_array_equal(block_scans.bins_below(y, -1.0, 12.0, 64, cut, use_numpy), expected)
