"""``retrieve()``: validate the inputs, run the batched search, wrap the answer."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from .result import RetrievalResult
from .search import search, unit_rows
from .validation import (
    DISTANCES,
    _length,
    as_codes,
    as_embeddings,
    as_mask,
    check_choice,
    check_positive_int,
    resolve_device,
)


def retrieve(
    embeddings: Any,
    labels: Sequence[Hashable],
    is_query: Sequence[bool] | None = None,
    is_gallery: Sequence[bool] | None = None,
    *,
    top_n: int = 10,
    distance: str = "euclidean",
    sequence_ids: Sequence[Hashable] | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    categories: Sequence[Hashable] | None = None,
    progress: bool | None = None,
) -> RetrievalResult:
    """Exact top-``top_n`` retrieval of every query against the gallery, in bounded memory.

    An item never retrieves itself, and gallery items sharing the query's ``sequence_ids`` value are
    ignored (neither retrieved nor counted as ground truth). ``device=None`` uses CUDA when
    available; ``batch_size`` (queries per chunk) defaults to what fits the device's free memory.
    ``categories`` (optional, one per item) are kept for ``metrics()`` and ``worst_queries()``;
    ``progress`` forces the progress bar on or off (default: on for long runs).

    Example:
        >>> import numpy as np
        >>> emb = np.array([[0.0], [0.1], [1.0], [1.2]], dtype=np.float32)
        >>> res = retrieve(emb, ["a", "a", "b", "b"], top_n=2)
        >>> res.retrieved_ids.tolist()
        [[1, 2], [0, 2], [3, 1], [2, 1]]
        >>> float(res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(2,))["cmc/1"]["OVERALL"])
        1.0
    """
    raw = as_embeddings(embeddings)
    n = raw.shape[0]
    label_codes, _ = as_codes("labels", labels, n)
    query_mask = as_mask("is_query", is_query, n)
    gallery_mask = as_mask("is_gallery", is_gallery, n)
    top_n = check_positive_int("top_n", top_n)
    distance = check_choice("distance", distance, DISTANCES)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if not query_mask.any():
        raise ValueError("is_query selects no item: at least one query is needed")
    if not gallery_mask.any():
        raise ValueError("is_gallery selects no item: at least one gallery item is needed")
    if sequence_ids is None:
        seq_codes = np.arange(n, dtype=np.int64)  # every item its own sequence: excludes itself
    else:
        seq_codes, _ = as_codes("sequence_ids", sequence_ids, n, missing_unique=True)
    if distance == "euclidean" and not all(bool(torch.isfinite((p * p).sum(1)).all()) for p in raw.split(4096)):
        raise ValueError("embeddings are too large: squared norms overflow float32; rescale them")
    device = resolve_device(device)
    vectors = unit_rows(raw) if distance == "cosine" else raw
    query_ids = np.flatnonzero(query_mask).astype(np.int64)
    gallery_ids = np.flatnonzero(gallery_mask).astype(np.int64)
    k = min(top_n, len(gallery_ids))

    retrieved, dist = search(
        vectors, query_ids, gallery_ids, seq_codes,
        k=k, distance=distance, device=device, batch_size=batch_size, progress=progress,
    )
    valid = retrieved >= 0
    is_relevant = valid & (label_codes[np.where(valid, retrieved, 0)] == label_codes[query_ids, None])
    n_gt = _count_ground_truth(label_codes, seq_codes, gallery_mask, query_ids)
    label_values = _length("labels", labels, n)
    return RetrievalResult(
        query_ids=query_ids,
        retrieved_ids=retrieved,
        distances=dist,
        is_relevant=is_relevant,
        n_gt=n_gt,
        top_n=top_n,
        distance=distance,
        labels=np.array(label_values, copy=True),
        is_query=query_mask,
        is_gallery=gallery_mask,
        categories=None if categories is None else np.array(_length("categories", categories, n), copy=True),
        _vectors=vectors,
        _raw=raw,
        _label_codes=label_codes,
        _seq_codes=seq_codes,
        _device=device,
    )


def _count_ground_truth(
    label_codes: np.ndarray, seq_codes: np.ndarray, gallery: np.ndarray, query_ids: np.ndarray
) -> np.ndarray:
    """Gallery items with the query's label, minus those sharing its sequence (itself included)."""
    per_label = np.bincount(label_codes[gallery], minlength=label_codes.max() + 1)
    pair = label_codes * (seq_codes.max() + 1) + seq_codes  # (label, sequence) as one int
    pair_codes, pair_index = np.unique(pair, return_inverse=True)
    per_pair = np.bincount(pair_index[gallery], minlength=len(pair_codes))
    return (per_label[label_codes[query_ids]] - per_pair[pair_index[query_ids]]).astype(np.int64)
