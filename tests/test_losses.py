"""Triplet losses and miners against hand computations on tiny batches."""
from __future__ import annotations

import math

import pytest
import torch

from oml_viz.losses import (
    AllTripletsMiner,
    HardTripletsMiner,
    TripletLoss,
    TripletLossWithMiner,
)

# Four points on a line: labels 0,0,1,1. Distances are |x_i - x_j|.
X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [4.0, 0.0]])
Y = torch.tensor([0, 0, 1, 1])


def _triplets(a, p, n):
    return sorted(zip(a.tolist(), p.tolist(), n.tolist()))


def test_all_triplets_miner_lists_every_valid_triplet():
    got = _triplets(*AllTripletsMiner().mine(X, Y))
    expected = [
        (0, 1, 2), (0, 1, 3), (1, 0, 2), (1, 0, 3),
        (2, 3, 0), (2, 3, 1), (3, 2, 0), (3, 2, 1),
    ]
    assert got == expected


def test_all_triplets_miner_cap_keeps_a_valid_subset():
    a, p, n = AllTripletsMiner(max_triplets=3).mine(X, Y)
    assert len(a) == 3
    assert set(_triplets(a, p, n)) <= set(_triplets(*AllTripletsMiner().mine(X, Y)))


def test_hard_miner_picks_farthest_positive_and_nearest_negative():
    # each class has one positive per anchor, so the negative choice is what is tested
    got = _triplets(*HardTripletsMiner().mine(X, Y))
    # 0: neg 2 (1.5) beats 3 (4); 1: neg 2 (0.5); 2: neg 1 (0.5); 3: neg 1 (3.0)
    assert got == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]


def test_hard_miner_farthest_positive_among_several():
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    y = torch.tensor([0, 0, 0, 1])
    a, p, n = HardTripletsMiner().mine(x, y)
    assert dict(zip(a.tolist(), p.tolist())) == {0: 2, 1: 2, 2: 0}
    assert n.tolist() == [3, 3, 3]  # label 1 has no positive: not an anchor


def test_triplet_loss_value_and_stats_by_hand():
    loss_fn = TripletLossWithMiner(margin=1.0, miner=AllTripletsMiner())
    loss = loss_fn(X, Y)
    # (a, p, n): d_ap, d_an, hinge 1 + d_ap - d_an
    rows = [
        (1.0, 1.5), (1.0, 4.0), (1.0, 0.5), (1.0, 3.0),
        (2.5, 1.5), (2.5, 0.5), (2.5, 4.0), (2.5, 3.0),
    ]
    hinges = [max(0.0, 1.0 + dp - dn) for dp, dn in rows]
    assert loss.item() == pytest.approx(sum(hinges) / 8)
    logs = loss_fn.last_logs
    assert logs["pos_dist"] == pytest.approx(sum(r[0] for r in rows) / 8)
    assert logs["neg_dist"] == pytest.approx(sum(r[1] for r in rows) / 8)
    assert logs["active_tri"] == pytest.approx(sum(h > 0 for h in hinges) / 8)
    assert 0 < logs["active_tri"] < 1  # the example has both kinds


def test_soft_margin_is_softplus_of_gap_and_counts_violations():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # d_ap = 5, 1
    n = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # d_an = 1, 2
    fn = TripletLoss(margin=None, reduction="none")
    loss = fn(a, p, n)
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(4.0)), math.log1p(math.exp(-1.0))])
    assert fn.last_logs == pytest.approx({"pos_dist": 3.0, "neg_dist": 1.5, "active_tri": 0.5})


def test_sum_reduction_and_gradient_flows():
    x = X.clone().requires_grad_(True)
    loss = TripletLossWithMiner(margin=1.0, reduction="sum")(x, Y)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_batch_without_triplets_gives_zero_loss_that_backpropagates():
    x = torch.randn(3, 4, requires_grad=True)
    fn = TripletLossWithMiner(margin=0.2, miner=HardTripletsMiner())
    loss = fn(x, torch.tensor([0, 1, 2]))  # no positives at all
    assert loss.item() == 0.0
    loss.backward()
    assert math.isnan(fn.last_logs["pos_dist"]) and fn.last_logs["active_tri"] == 0.0


@pytest.mark.parametrize("kwargs, word", [
    ({"margin": 0.0}, "margin"),
    ({"margin": -1.0}, "margin"),
    ({"reduction": "avg"}, "reduction"),
])
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        TripletLoss(**kwargs)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        TripletLossWithMiner()(torch.randn(4, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="features"):
        HardTripletsMiner().mine(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="miner"):
        TripletLossWithMiner(miner=object())
