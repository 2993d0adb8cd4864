"""RaSR Eqs. (3)-(4): the multi-relation item graph (co-occurrence C, temporal T, semantic S).

All matrices are ``scipy.sparse`` CSR float32 of shape ``[n_items + 1, n_items + 1]`` (row and
column 0 are padding and stay empty). C and T are built from the *training part* of every
sequence only, ``seq[:-2]`` (the validation and test targets never contribute), with numpy on
the CSR arrays of :class:`~rasr_lib.data.schema.SeqDataset`: no Python loop over interactions.
S is kept as the top-k cosine neighbours of every item, computed in row blocks so that no dense
``|V| x |V|`` matrix is ever held.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from rasr_lib.data.schema import SeqDataset

logger = logging.getLogger(__name__)

TEMPORAL_MODES = ("recency", "position", "distance")
HOLDOUT = 2  # items at the end of each sequence kept out of the graph (validation + test targets)


@dataclass(frozen=True)
class GraphConfig:
    """How the multi-relation graph (RaSR Eqs. 3-4) is built."""

    window: int = 2  # co-occurrence window: directed pairs (i_k, i_{k+d}), d = 1..window-1 (2 = Eq. 3)
    decay: float = 0.8  # temporal decay lambda of Eq. (3)
    temporal_mode: str = "recency"  # recency: lambda^(pairs after) | position: lambda^k (literal) | distance
    semantic_k: int = 20  # semantic neighbours kept per item (cosine top-k, self excluded)
    chunk: int = 2048  # rows per block of the chunked similarity matmul


def training_pairs(ds: SeqDataset, distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs (i_k, i_{k+d}) at one distance d inside each training part ``seq[:-2]``.

    Returns (src int64[P], dst int64[P], pos int64[P], train_len int64[P]): the two item ids,
    the 0-based position k-1 of the first item and the training length of its sequence.
    """
    lengths = ds.lengths
    train_len = np.maximum(lengths - HOLDOUT, 0)
    pos = np.arange(ds.n_interactions, dtype=np.int64) - np.repeat(ds.offsets[:-1], lengths)
    tl = np.repeat(train_len, lengths)
    first = np.flatnonzero(pos + distance < tl)
    return ds.items[first], ds.items[first + distance], pos[first], tl[first]


def _csr(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int) -> sp.csr_matrix:
    """Sum duplicate (row, col) entries into a float32 CSR matrix [n, n] with sorted indices."""
    mat = sp.csr_matrix((data.astype(np.float32), (rows, cols)), shape=(n, n), dtype=np.float32)
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


def cooccurrence_matrix(ds: SeqDataset, window: int = 2) -> sp.csr_matrix:
    """RaSR Eq. (3): co-occurrence matrix C, float32 CSR [n_items+1, n_items+1].

    ``C[i, j]`` counts the ordered pairs ``(i_k, i_{k+d}) = (i, j)`` with ``1 <= d <= window-1``
    over the training parts ``seq[:-2]``; ``window=2`` counts adjacent pairs, exactly Eq. (3).
    Directed and unweighted; repeats ``i_k = i_{k+d}`` land on the diagonal.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2 (2 = adjacent pairs), got {window}")
    rows, cols = [], []
    for d in range(1, window):
        src, dst, _, _ = training_pairs(ds, d)
        rows.append(src)
        cols.append(dst)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return _csr(rows, cols, np.ones(len(rows), dtype=np.float32), ds.n_items + 1)


def temporal_matrix(
    ds: SeqDataset, decay: float = 0.8, mode: str = "recency", window: int = 2
) -> sp.csr_matrix:
    """RaSR Eq. (3): temporal matrix T, float32 CSR [n_items+1, n_items+1], over training parts.

    Every adjacent pair ``(i_k, i_{k+1})`` (k 1-based, L = training length) adds a weight:

    - ``position``: ``decay**k``, Eq. (3) read literally (late transitions of long sequences vanish);
    - ``recency``: ``decay**(L-1-k)``, the number of pairs after this one, so the latest
      transition weighs 1 (the reading that "balances recent interactions");
    - ``distance``: every window pair ``(i_k, i_{k+d})``, ``1 <= d <= window-1``, adds ``decay**d``
      (``window=2`` gives ``decay * C``).

    A weight below float32's range (``decay**k`` for k beyond about 465 at 0.8) is 0 and not
    stored, so T's non-zeros are a subset of C's: equal on Beauty, not on ML-1M's long sequences.
    """
    if mode not in TEMPORAL_MODES:
        raise ValueError(f"unknown temporal mode {mode!r}; choose from {TEMPORAL_MODES}")
    n = ds.n_items + 1
    if mode == "distance":
        if window < 2:
            raise ValueError(f"window must be >= 2 (2 = adjacent pairs), got {window}")
        parts = [training_pairs(ds, d) for d in range(1, window)]
        rows = np.concatenate([p[0] for p in parts])
        cols = np.concatenate([p[1] for p in parts])
        data = np.concatenate([np.full(len(p[0]), decay**d) for d, p in zip(range(1, window), parts)])
        return _csr(rows, cols, data, n)
    src, dst, pos, tl = training_pairs(ds, 1)
    k = pos + 1  # 1-based index of the pair, as in Eq. (3)
    exponent = k if mode == "position" else (tl - 1) - k
    data = np.power(np.float64(decay), exponent.astype(np.float64))
    return _csr(src, dst, data, n)


def semantic_topk(
    emb: np.ndarray, k: int = 20, chunk: int = 2048, exclude_self: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """RaSR Eq. (4): top-k cosine neighbours of every item, (int64[n+1, k], float32[n+1, k]).

    ``emb`` is float32[n_items+1, d] with row 0 (padding) zero. Neighbours are sorted by
    decreasing cosine; padding and (with ``exclude_self``) the item itself are never neighbours;
    rows of zero vectors (padding) get index 0 and similarity 0. Computed ``chunk`` rows at a
    time, so memory is O(chunk * n). ``k`` is capped at the number of candidates.
    """
    emb_t = torch.as_tensor(np.ascontiguousarray(emb, dtype=np.float32))
    n = emb_t.shape[0]
    norms = emb_t.norm(dim=1)
    valid = norms > 0
    unit = emb_t / norms.clamp_min(1e-12)[:, None]
    k = int(min(k, int(valid.sum()) - (1 if exclude_self else 0)))
    index = np.zeros((n, max(k, 0)), dtype=np.int64)
    sims = np.zeros((n, max(k, 0)), dtype=np.float32)
    if k <= 0:
        return index, sims
    invalid_cols = torch.nonzero(~valid).flatten()
    with torch.no_grad():
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = unit[start:stop] @ unit.T  # [rows, n]
            block[:, invalid_cols] = -torch.inf
            if exclude_self:
                rows = torch.arange(stop - start)
                block[rows, rows + start] = -torch.inf
            val, idx = torch.topk(block, k, dim=1, largest=True, sorted=True)
            index[start:stop] = idx.numpy()
            sims[start:stop] = val.numpy()
    dead = ~valid.numpy()
    index[dead] = 0
    sims[dead] = 0.0
    return index, sims


def topk_to_csr(index: np.ndarray, sims: np.ndarray, n: int) -> sp.csr_matrix:
    """Top-k lists (int64[n, k], float32[n, k]) as a float32 CSR [n, n]; index-0 entries dropped."""
    rows = np.repeat(np.arange(index.shape[0], dtype=np.int64), index.shape[1])
    cols, data = index.ravel(), sims.ravel()
    keep = cols > 0
    mat = sp.csr_matrix((data[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n, n))
    mat.sum_duplicates()
    return mat


def semantic_matrix(emb: np.ndarray, k: int = 20, chunk: int = 2048) -> sp.csr_matrix:
    """RaSR Eq. (4): semantic matrix S restricted to each item's top-k cosine neighbours, CSR [n+1, n+1]."""
    index, sims = semantic_topk(emb, k=k, chunk=chunk)
    return topk_to_csr(index, sims, emb.shape[0])


@dataclass(frozen=True)
class RelationGraph:
    """RaSR's multi-relation graph: C and T (Eq. 3) as CSR, S (Eq. 4) as top-k lists."""

    C: sp.csr_matrix  # float32[n_items+1, n_items+1]: co-occurrence counts (training parts)
    T: sp.csr_matrix  # float32[n_items+1, n_items+1]: decayed transition weights
    S_index: np.ndarray  # int64[n_items+1, k]: semantic neighbours, best first (0 = none)
    S_sim: np.ndarray  # float32[n_items+1, k]: their cosine similarities
    cfg: GraphConfig  # how the graph was built

    @property
    def n_items(self) -> int:
        """Catalogue size (ids 1..n_items)."""
        return int(self.C.shape[0] - 1)

    @property
    def S(self) -> sp.csr_matrix:
        """S as a float32 CSR [n_items+1, n_items+1] with the top-k entries of each row."""
        return topk_to_csr(self.S_index, self.S_sim, self.n_items + 1)

    def stats(self) -> dict:
        """Edges and covered items of each relation (plain Python numbers)."""
        def rows_with_edges(m: sp.csr_matrix) -> int:
            return int(np.count_nonzero(np.diff(m.indptr)))

        return {
            "n_items": self.n_items,
            "C_nnz": int(self.C.nnz),
            "C_total": float(self.C.sum()),
            "C_items_with_out_edges": rows_with_edges(self.C),
            "T_nnz": int(self.T.nnz),
            "T_total": float(self.T.sum()),
            "S_k": int(self.S_index.shape[1]),
            "S_mean_top1": float(self.S_sim[1:, 0].mean()) if self.S_sim.shape[1] else 0.0,
        }


def build_relation_graph(ds: SeqDataset, emb: np.ndarray, cfg: GraphConfig | None = None) -> RelationGraph:
    """RaSR Eqs. (3)-(4): C, T and top-k S of ``ds`` (training parts) and ``emb`` float32[n_items+1, d]."""
    cfg = cfg or GraphConfig()
    if emb.shape[0] != ds.n_items + 1:
        raise ValueError(f"embeddings have {emb.shape[0]} rows, expected n_items + 1 = {ds.n_items + 1}")
    tic = time.perf_counter()
    cooc = cooccurrence_matrix(ds, window=cfg.window)
    temporal = temporal_matrix(ds, decay=cfg.decay, mode=cfg.temporal_mode, window=cfg.window)
    tac = time.perf_counter()
    s_index, s_sim = semantic_topk(emb, k=cfg.semantic_k, chunk=cfg.chunk)
    toc = time.perf_counter()
    logger.info("%s: C (%d nnz) and T (%d nnz) in %.2f s, semantic top-%d in %.2f s",
                ds.name, cooc.nnz, temporal.nnz, tac - tic, s_index.shape[1], toc - tac)
    return RelationGraph(C=cooc, T=temporal, S_index=s_index, S_sim=s_sim, cfg=cfg)
