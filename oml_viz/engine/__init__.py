"""The shared retrieval engine: batched exact top-k on a torch device and the metrics on top.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> res = ov.retrieve(np.random.rand(100, 8).astype("float32"), np.arange(100) % 10)
    >>> table = res.metrics(cmc_top_k=(1, 5), map_top_k=(5,))
"""
from .result import OVERALL, RetrievalResult
from .retrieval import retrieve
from .sharded import ShardedRetrievalResult, retrieve_sharded
from .evaluate import evaluate

__all__ = ["OVERALL", "RetrievalResult", "ShardedRetrievalResult", "evaluate", "retrieve", "retrieve_sharded"]
