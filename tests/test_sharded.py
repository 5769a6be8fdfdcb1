"""``retrieve_sharded`` on 2 and 3 gloo processes (CPU) equals ``retrieve`` on the concatenation.

The processes run tests/sharded_worker.py (one launch per world size runs every scenario);
each has a timeout, so a hang fails the test instead of stalling the suite.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import oml_viz as ov

sys.path.insert(0, str(Path(__file__).parent))
from sharded_worker import METRICS, scenarios  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*have no ground truth:UserWarning")]
WORKER = Path(__file__).parent / "sharded_worker.py"
TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[2, 3], ids=["2 processes", "3 processes"])
def launched(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"world{world}")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    errors = []
    try:
        for rank, proc in enumerate(procs):
            _, err = proc.communicate(timeout=TIMEOUT)
            if proc.returncode:
                errors.append(f"rank {rank} exited {proc.returncode}: {err[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # a hang (the test then fails on the timeout)
    assert not errors, "\n".join(errors)
    return world, out


@pytest.mark.parametrize("name", ["random", "cosine_str_labels", "ties"])
def test_equals_retrieve_on_the_concatenation(launched, name):
    world, out = launched
    case = scenarios(world)[name]
    ref = ov.retrieve(**case["data"], **case["kwargs"])
    if name == "ties":
        expected = ref.metrics(cmc_top_k=(1,), precision_top_k=(3,), map_top_k=(8,))
        # the scenario really has ties across shards at the cut-off
        d = ref.distances
        assert (d[:, 1:] == d[:, :-1]).sum() > 50
    else:
        expected = ref.metrics(**METRICS, categories=case["data"]["categories"])
    for rank in range(world):
        got = np.load(out / f"{name}-{rank}.npz")
        for key in ("query_ids", "retrieved_ids", "distances", "is_relevant", "n_gt"):
            np.testing.assert_array_equal(got[key], getattr(ref, key), err_msg=f"{key} on rank {rank}")
        assert got["index"].tolist() == [str(i) for i in expected.index]
        assert got["columns"].tolist() == list(expected.columns)
        np.testing.assert_array_equal(got["table"], expected.to_numpy(), err_msg=f"metrics on rank {rank}")


def test_shards_really_are_uneven_with_an_empty_gallery_shard(launched):
    world, _ = launched
    case = scenarios(world)["random"]
    cuts, gallery = case["cuts"], case["data"]["is_gallery"]
    sizes = np.diff(cuts)
    assert len(set(sizes.tolist())) == world and not gallery[cuts[1] : cuts[2]].any()
    seq = case["data"]["sequence_ids"]
    assert any(seq[c - 1] == seq[c] for c in cuts[1:-1])  # a sequence spans two shards


@pytest.mark.parametrize("name, needle", [
    ("width", "different widths across processes: rank 0: D=3, rank 1: D=4"),
    ("mixed_labels", "labels have mixed types across processes"),
    ("nan_on_one", "NaN or inf"),
    ("device_on_one", "rank 1: device 'no-such-device' is not a torch device"),
    ("uninitialised", "needs an initialised torch.distributed process group"),
    ("gather_no_idx", "processes disagree on the validation keys"),
    ("gather_local_error", "MetricValCallback: rank 1: bad batch"),
])
def test_bad_input_is_the_same_clear_error_on_every_process(launched, name, needle):
    world, out = launched
    messages = [(out / f"{name}-{rank}.txt").read_text() for rank in range(world)]
    for message in messages:
        assert needle in message
    assert len(set(messages)) == 1
    if name == "nan_on_one":
        assert f"rank {world - 1}:" in messages[0]


def test_callback_gathering_drops_the_samplers_padding_and_sorts_by_idx(launched):
    world, out = launched
    for rank in range(world):
        got = np.load(out / f"gather-{rank}.npz")
        np.testing.assert_array_equal(got["idx"], np.arange(10))
        np.testing.assert_array_equal(got["embeddings"], np.stack([np.arange(10), -np.arange(10)], 1))
        np.testing.assert_array_equal(got["labels"], np.arange(10) % 3)
        assert got["names"].tolist() == [f"item{i}" for i in range(10)]


def test_a_sub_group_sees_only_its_members_shards(launched):
    world, out = launched
    case = scenarios(world)["random"]
    cuts = case["cuts"]
    rows = np.r_[cuts[0] : cuts[1], cuts[world - 1] : cuts[world]]
    data = {k: v[rows] for k, v in case["data"].items()}
    ref = ov.retrieve(**data, top_n=5)
    expected = ref.metrics(**METRICS, categories=data["categories"]).to_numpy()
    for rank in (0, world - 1):
        got = np.load(out / f"subgroup-{rank}.npz")
        np.testing.assert_array_equal(got["retrieved_ids"], ref.retrieved_ids)
        np.testing.assert_array_equal(got["distances"], ref.distances)
        np.testing.assert_array_equal(got["table"], expected)
    if world == 3:  # rank 1 is not a member
        assert "not a member of the given group" in (out / "subgroup-1.txt").read_text()
