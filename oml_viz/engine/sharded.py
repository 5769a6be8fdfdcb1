"""``retrieve_sharded()``: exact retrieval over items spread across ``torch.distributed`` processes.

Each process passes its shard of the items (any sizes, rank order defines the global order). The
result, on every process, is what :func:`oml_viz.retrieve` gives on the shards concatenated in rank
order. How:

- the per-item scalars (labels, masks, sequence ids, categories: N small values, never the
  embeddings) are all-gathered, so label and sequence codes are global and identical everywhere;
- each process keeps only its gallery shard. Queries travel in chunks: at step s every process
  contributes its s-th chunk of query vectors to one all-gather, searches all of them against its
  gallery shard with the engine's :func:`~oml_viz.engine.search.search`, and the per-shard top-k
  lists (global ids, exact distances) are all-gathered and merged by (distance, global id);
- buffers are bounded: one gathered query chunk and every shard's top-k lists for it (together at
  most 64 MiB per step unless ``batch_size`` says otherwise), plus the engine's own score blocks.

``fnmr@fmr`` needs every (query, gallery) pair: it is computed with the same chunk traffic (two
streaming passes, histograms all-reduced). ``pcf`` comes from all-reduced float64 moments. Both are
collectives: every process must call ``metrics()`` with the same arguments.
"""
from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import distributed as D
from .result import RetrievalResult
from .retrieval import _count_ground_truth
from .search import search, unit_rows
from .validation import DISTANCES, as_codes, as_mask, check_choice, check_positive_int, resolve_device
from .validation import _length

__all__ = ["ShardedRetrievalResult", "retrieve_sharded"]

_WHO = "retrieve_sharded"
_STEP_BYTES = 64 * 2**20  # per step: gathered query vectors + top-k lists of every shard


def _kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)):
        return "number"
    if isinstance(value, (str, np.str_)):
        return "str"
    return type(value).__name__


def _kinds(array: np.ndarray) -> list[str]:
    """The kinds of values in a label array: 'number', 'str' or type names (sorted, unique)."""
    if array.dtype.kind in "biuf":
        return ["number"] if len(array) else []
    if array.dtype.kind in "US":
        return ["str"] if len(array) else []
    return sorted({_kind(v) for v in array})


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """Shards' value arrays as one array, like ``np.concatenate`` of what a user would pass."""
    if all(p.dtype != object for p in parts):
        return np.concatenate(parts)
    return np.fromiter((v for p in parts for v in p.tolist()), dtype=object, count=sum(len(p) for p in parts))


def _local_embeddings(embeddings: Any) -> torch.Tensor:
    """float32 CPU copy of a shard; an empty shard (0, D) is allowed."""
    if isinstance(embeddings, torch.Tensor):
        tensor = embeddings.detach().to("cpu", torch.float32).clone()
    else:
        try:
            tensor = torch.from_numpy(np.array(embeddings, dtype=np.float32, copy=True))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"embeddings must be a numeric (N, D) array: {exc}") from None
    if tensor.ndim != 2 or tensor.shape[1] == 0:
        raise ValueError(f"embeddings must be 2-D (N, D) with D > 0; got shape {tuple(tensor.shape)}")
    bad = ~torch.isfinite(tensor).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"embeddings contain NaN or inf in local rows {rows}")
    return tensor.contiguous()


@dataclass
class _Shard:
    """What one process checked locally, before anything is exchanged."""

    raw: torch.Tensor
    vectors: torch.Tensor
    labels: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    sequence: np.ndarray | None
    categories: np.ndarray | None


def _check_local(embeddings, labels, is_query, is_gallery, sequence_ids, categories, distance) -> _Shard:
    raw = _local_embeddings(embeddings)
    n = raw.shape[0]
    label_values = _length("labels", labels, n)
    if pd.isna(pd.Series(label_values, dtype=object)).any():
        as_codes("labels", label_values, n)  # raises with the rows
    query = as_mask("is_query", is_query, n)
    gallery = as_mask("is_gallery", is_gallery, n)
    seq = None if sequence_ids is None else _length("sequence_ids", sequence_ids, n)
    cats = None if categories is None else _length("categories", categories, n)
    if distance == "euclidean" and not torch.isfinite((raw * raw).sum(1)).all():
        raise ValueError("embeddings are too large: squared norms overflow float32; rescale them")
    vectors = unit_rows(raw, "embeddings (local rows)") if distance == "cosine" and n else raw
    return _Shard(raw, vectors, label_values, query, gallery, seq, cats)


@dataclass(eq=False)
class ShardedRetrievalResult(RetrievalResult):
    """A :class:`RetrievalResult` whose embeddings stay spread over the processes.

    Everything that reads only ids, distances and labels works as usual, on every process. What
    needs the embeddings is a collective: ``metrics(fmr_vals=..., pcf_variance=...)`` (every
    process must call it with the same arguments). ``gt_ids`` and ``embeddings`` are not
    available (no process holds all embeddings).
    """

    _group: Any = field(default=None, repr=False)
    _offset: int = field(default=0, repr=False)
    _local_raw: torch.Tensor = field(default=None, repr=False)
    _local_vectors: torch.Tensor = field(default=None, repr=False)
    _chunk: int = field(default=1024, repr=False)

    @property
    def embeddings(self) -> np.ndarray:
        raise ValueError("a sharded result holds no process's full embeddings; each process has "
                         "its own shard (the embeddings it passed to retrieve_sharded)")

    def gt_ids(self, query_id: int, return_distances: bool = False) -> Any:
        raise ValueError("gt_ids needs every gallery embedding; on a sharded result use "
                         "oml_viz.retrieve on a subset, or read is_relevant / n_gt")

    def metrics(
        self,
        cmc_top_k: Sequence[int] = (1, 5),
        precision_top_k: Sequence[int] = (5,),
        map_top_k: Sequence[int] = (5,),
        fmr_vals: Sequence[float] = (),
        pcf_variance: Sequence[float] = (),
        categories: Sequence[Hashable] | None = None,
    ) -> pd.DataFrame:
        """As :meth:`RetrievalResult.metrics`; with ``fmr_vals`` or ``pcf_variance`` a collective."""
        for name, vals, upper_ok in (("fmr_vals", fmr_vals, False), ("pcf_variance", pcf_variance, True)):
            for v in vals:
                if not isinstance(v, (int, float, np.floating, np.integer)) or not (0 < v < 1 or (upper_ok and v == 1)):
                    bound = "(0, 1]" if upper_ok else "(0, 1)"
                    raise ValueError(f"{name} values must lie in {bound}; got {v!r}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = super().metrics(cmc_top_k, precision_top_k, map_top_k, (), (), categories)
        for w in caught:  # point at the caller, not at this override
            warnings.warn(w.message, w.category, stacklevel=2)
        cats = self.categories if categories is None else _length("categories", categories, self.n_items)
        groups, names = self._query_groups(cats)
        if len(fmr_vals):
            from .sharded_fnmr import sharded_fnmr_at_fmr

            values = sharded_fnmr_at_fmr(self, groups, max(len(names), 1), [float(v) for v in fmr_vals])
            for i, v in enumerate(fmr_vals):
                table[f"fnmr@fmr/{float(v)}"] = values[: 1 + len(names), i]
        if len(pcf_variance):
            values = self._pcf(list(pcf_variance), cats, names)
            for i, v in enumerate(pcf_variance):
                table[f"pcf/{float(v)}"] = values[:, i]
        return table

    def _pcf(self, shares: list[float], cats: np.ndarray | None, names: list) -> np.ndarray:
        """PCF of OVERALL and each category from all-reduced float64 moments (one all-reduce)."""
        import torch.distributed as dist

        x = self._local_raw.double()
        n_local, dim = x.shape
        groups = [np.ones(n_local, dtype=bool)]
        if names:
            local_cats = cats[self._offset : self._offset + n_local]
            groups += [local_cats == name for name in names]
        moments = torch.zeros(len(groups), 1 + dim + dim * dim, dtype=torch.float64)
        for g, mask in enumerate(groups):
            xg = x[torch.as_tensor(mask)]
            moments[g, 0] = len(xg)
            moments[g, 1 : 1 + dim] = xg.sum(0)
            moments[g, 1 + dim :] = (xg.T @ xg).reshape(-1)
        device = D.comm_device(self._group)
        moments = moments.to(device)
        dist.all_reduce(moments, group=self._group)
        D._count(moments.numel() * 8, moments.numel() * 8)
        moments = moments.cpu()
        out = np.full((len(groups), len(shares)), np.nan)
        for g in range(len(groups)):
            n = float(moments[g, 0])
            if n < 2:
                continue
            s = moments[g, 1 : 1 + dim]
            scatter = moments[g, 1 + dim :].reshape(dim, dim) - torch.outer(s, s) / n
            eig = torch.linalg.eigvalsh((scatter + scatter.T) / 2).flip(0).clamp(min=0)
            total = eig.sum()
            if total <= 0:
                continue
            cum = (torch.cumsum(eig, 0) / total).numpy()
            needed = np.searchsorted(cum, np.asarray(shares) - 1e-12, side="left") + 1
            out[g] = np.minimum(needed, dim) / dim
        return out


def retrieve_sharded(
    embeddings: Any,
    labels: Sequence[Hashable],
    is_query: Sequence[bool] | None = None,
    is_gallery: Sequence[bool] | None = None,
    *,
    group: Any = None,
    top_n: int = 10,
    distance: str = "euclidean",
    sequence_ids: Sequence[Hashable] | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    categories: Sequence[Hashable] | None = None,
    progress: bool | None = None,
) -> ShardedRetrievalResult:
    """:func:`oml_viz.retrieve` on the shards of all processes of ``group``, concatenated in rank order.

    Every process calls it with its own shard (a shard may hold no queries or no gallery items,
    or be empty). The other arguments mean what they mean for ``retrieve`` and must be the same on
    every process. The result, identical on every process, equals ``retrieve`` on the
    concatenation: ids are global (rank r's rows start after the rows of ranks 0..r-1).
    ``batch_size`` is the number of queries each process sends per step. Bad input on any
    process raises the same ``ValueError`` on every process. See ``docs/scaling.md``.
    """
    rank, world = D.group_info(group, _WHO)
    settings = (int(top_n) if isinstance(top_n, (int, np.integer)) else top_n, distance, batch_size,
                sequence_ids is None, categories is None)
    shard, error = None, None
    try:
        top_n = check_positive_int("top_n", top_n)
        distance = check_choice("distance", distance, DISTANCES)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        search_device = resolve_device(device)  # may differ per process (cuda:0, cuda:1...)
        shard = _check_local(embeddings, labels, is_query, is_gallery, sequence_ids, categories, distance)
    except (ValueError, TypeError) as exc:
        error = str(exc)
    meta = {
        "error": error,
        "settings": settings,
        "n": None if shard is None else shard.raw.shape[0],
        "dim": None if shard is None else shard.raw.shape[1],
        "kinds": None if shard is None else _kinds(np.asarray(shard.labels)),
    }
    metas = D.all_gather_objects(meta, group)
    _check_agreement(metas)

    # the small per-item arrays, global and identical on every process
    parts = D.all_gather_objects(
        (shard.labels, shard.is_query, shard.is_gallery, shard.sequence, shard.categories), group
    )
    counts = [m["n"] for m in metas]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    labels_all = _concat([p[0] for p in parts])
    query_mask = np.concatenate([p[1] for p in parts])
    gallery_mask = np.concatenate([p[2] for p in parts])
    if not query_mask.any():
        raise ValueError("is_query selects no item on any process: at least one query is needed")
    if not gallery_mask.any():
        raise ValueError("is_gallery selects no item on any process: at least one gallery item is needed")
    label_codes, _ = as_codes("labels", labels_all, n)
    if sequence_ids is None:
        seq_codes = np.arange(n, dtype=np.int64)
    else:
        seq_codes, _ = as_codes("sequence_ids", _concat([p[3] for p in parts]), n, missing_unique=True)
    cats_all = None if categories is None else _concat([p[4] for p in parts])

    query_ids = np.flatnonzero(query_mask).astype(np.int64)
    k = min(top_n, int(gallery_mask.sum()))
    comm = D.comm_device(group)
    lo = int(offsets[rank])
    local_gallery = np.flatnonzero(shard.is_gallery).astype(np.int64)
    local_queries = np.flatnonzero(shard.is_query).astype(np.int64)
    dim = shard.raw.shape[1]

    # queries per process per step, the same on every process: the step's buffers (gathered query
    # vectors, every shard's top-k lists) fit _STEP_BYTES; the engine's search chunks its scores itself
    chunk = batch_size or max(1, _STEP_BYTES // (world * (dim * 4 + (world + 1) * k * 12)))
    q_counts = [int(np.count_nonzero(p[1])) for p in parts]
    q_offsets = np.concatenate([[0], np.cumsum(q_counts)]).astype(np.int64)
    n_steps = max(-(-c // chunk) for c in q_counts)

    out_ids = np.empty((len(query_ids), k), dtype=np.int64)
    out_dist = np.empty((len(query_ids), k), dtype=np.float32)
    searcher = _ShardSearch(shard.vectors[torch.as_tensor(local_gallery)], local_gallery + lo, seq_codes,
                            world * chunk, k, distance, search_device)
    show = progress if progress is not None else len(query_ids) * n >= 2e8
    for step in tqdm(range(n_steps), desc="sharded retrieval", unit="step",
                     disable=not show or rank != 0, leave=False):
        begin = step * chunk
        sizes = [max(0, min(chunk, c - begin)) for c in q_counts]
        mine = local_queries[begin : begin + sizes[rank]]
        sent = shard.vectors[torch.as_tensor(mine)].to(comm) if len(mine) else \
            torch.zeros(0, dim, device=comm)
        gathered = D.all_gather_rows(sent, group, counts=sizes)
        rows = np.concatenate([q_offsets[r] + begin + np.arange(sizes[r]) for r in range(world)]).astype(np.int64)
        queries = torch.cat([g.to(search_device) for g in gathered])
        ids, dist = searcher(queries, query_ids[rows])
        all_ids = D.all_gather_same(torch.as_tensor(ids).to(comm), group)
        all_dist = D.all_gather_same(torch.as_tensor(dist).to(comm), group)
        out_ids[rows], out_dist[rows] = _merge(
            torch.cat([t.cpu() for t in all_ids], 1).numpy(), torch.cat([t.cpu() for t in all_dist], 1).numpy(), k
        )

    valid = out_ids >= 0
    is_relevant = valid & (label_codes[np.where(valid, out_ids, 0)] == label_codes[query_ids, None])
    return ShardedRetrievalResult(
        query_ids=query_ids,
        retrieved_ids=out_ids,
        distances=out_dist,
        is_relevant=is_relevant,
        n_gt=_count_ground_truth(label_codes, seq_codes, gallery_mask, query_ids),
        top_n=top_n,
        distance=distance,
        labels=np.array(labels_all, copy=True),
        is_query=query_mask,
        is_gallery=gallery_mask,
        categories=cats_all,
        _label_codes=label_codes,
        _seq_codes=seq_codes,
        _device=search_device,
        _group=group,
        _offset=lo,
        _local_raw=shard.raw,
        _local_vectors=shard.vectors,
        _chunk=chunk,
    )


def _check_agreement(metas: list[dict]) -> None:
    """Same settings, embedding width and label kinds on every process (same error everywhere)."""
    errors = [f"rank {r}: {m['error']}" for r, m in enumerate(metas) if m["error"]]
    if errors:
        raise ValueError(f"{_WHO}: bad input on " + "; ".join(errors))
    settings = [m["settings"] for m in metas]
    if any(s != settings[0] for s in settings):
        names = ("top_n", "distance", "batch_size", "sequence_ids is None", "categories is None")
        diff = [name for i, name in enumerate(names) if len({repr(s[i]) for s in settings}) > 1]
        raise ValueError(f"{_WHO}: every process must pass the same {', '.join(diff)}; got "
                         + ", ".join(f"rank {r}: {s}" for r, s in enumerate(settings)))
    dims = [m["dim"] for m in metas]
    if len(set(dims)) > 1:
        raise ValueError(f"{_WHO}: embeddings have different widths across processes: "
                         + ", ".join(f"rank {r}: D={d}" for r, d in enumerate(dims)))
    kinds = [tuple(m["kinds"]) for m in metas if m["n"]]
    union = sorted({k for ks in kinds for k in ks})
    if len(union) > 1 and len(set(kinds)) > 1:
        shown = ", ".join(f"rank {r}: {'/'.join(m['kinds']) or 'none'}" for r, m in enumerate(metas))
        raise ValueError(f"{_WHO}: labels have mixed types across processes ({shown}); pass labels of "
                         "one type (e.g. all ints or all strings) on every process")


class _ShardSearch:
    """Top-k of gathered query chunks in this process's gallery shard, via the engine's ``search``.

    One buffer holds the gallery shard followed by the current query chunk, so a step copies only
    its queries (``search`` takes all vectors in one tensor, addressed by ids).
    """

    def __init__(self, gallery: torch.Tensor, gallery_global: np.ndarray, seq_codes: np.ndarray,
                 max_queries: int, k: int, distance: str, device: torch.device) -> None:
        self.n_gallery, dim = gallery.shape
        self.buffer = torch.empty(self.n_gallery + max_queries, dim, dtype=torch.float32, device=device)
        self.buffer[: self.n_gallery] = gallery.to(device)
        self.gallery_global, self.seq_codes = gallery_global, seq_codes
        self.gallery_seq = seq_codes[gallery_global]
        self.k, self.distance, self.device = k, distance, device

    def __call__(self, queries: torch.Tensor, query_global: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(global ids, distances) of each query's top k in the shard, padded with -1 / inf to k."""
        m, g, k = len(queries), self.n_gallery, self.k
        ids = np.full((m, k), -1, dtype=np.int64)
        dist = np.full((m, k), np.inf, dtype=np.float32)
        if m == 0 or g == 0:
            return ids, dist
        self.buffer[g : g + m] = queries
        # sequence codes renumbered to this call's items: small exclusion tables, same partition
        _, seq = np.unique(np.concatenate([self.gallery_seq, self.seq_codes[query_global]]), return_inverse=True)
        kk = min(k, g)
        found, found_dist = search(
            self.buffer[: g + m], g + np.arange(m, dtype=np.int64), np.arange(g, dtype=np.int64),
            seq.astype(np.int64), k=kk, distance=self.distance, device=self.device, batch_size=None, progress=False,
        )
        ok = found >= 0
        ids[:, :kk] = np.where(ok, self.gallery_global[np.where(ok, found, 0)], -1)
        dist[:, :kk] = np.where(ok, found_dist, np.inf)
        return ids, dist


def _merge(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row's candidates by (distance, global id); padding (-1, inf) last."""
    tie = np.where(ids >= 0, ids, np.iinfo(np.int64).max)
    order = np.lexsort((tie, dist + 0.0), axis=1)[:, :k] if ids.size else np.zeros((len(ids), k), np.int64)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)
