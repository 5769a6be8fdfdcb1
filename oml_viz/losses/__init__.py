"""Metric-learning losses that report their own statistics.

Every loss here sets ``last_logs`` (a dict of floats) on each forward call, which
:class:`oml_viz.loggers.RetrievalModule` logs next to the loss value.

Example:
    >>> from oml_viz.losses import TripletLossWithMiner, HardTripletsMiner
    >>> criterion = TripletLossWithMiner(margin=0.1, miner=HardTripletsMiner())
"""
from oml_viz.losses.miners import AllTripletsMiner, HardTripletsMiner, TripletMiner
from oml_viz.losses.triplet import TripletLoss, TripletLossWithMiner

__all__ = [
    "AllTripletsMiner",
    "HardTripletsMiner",
    "TripletLoss",
    "TripletLossWithMiner",
    "TripletMiner",
]
