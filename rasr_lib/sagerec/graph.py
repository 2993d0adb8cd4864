"""SAGERec §4.2: the global semantic item graph (cosine top-k, threshold tau, undirected).

The graph is built once, before training, from frozen text embeddings of the items
(:func:`rasr_lib.rasr.embeddings.encode_items`, cached on disk) and never changes during
training; the model only re-weights and drops its edges (§4.3). It is held as index arrays of
undirected edges, so memory is O(|E|): no dense ``|V| x |V|`` matrix is ever formed.

Readings where the paper is silent (listed on the book's deviations page):

- **tau** is not given. The paper counts "approximately 3.6 x 10^4 edges" on Beauty's 12,101
  items, which is k * |V| = 36,303 top-k entries: the threshold removes (almost) nothing. The
  default is therefore ``tau = 0`` (only dissimilar neighbours are dropped).
- **Undirected**: edge (i, j) exists when j is in i's top-k *or* i is in j's (the union), so a
  degree can exceed k. Its cosine weight is the same either way.
- **Encoder**: the paper uses SBERT all-MiniLM-L12-v2; the offline encoder shared with RaSR is
  all-MiniLM-L6-v2 (same family and prompt format, 6 instead of 12 layers).
- **Random graph** (Table 5 D): the same number of undirected edges, drawn uniformly among
  item pairs without self-loops or repeats, each with weight 1.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rasr_lib.config import ExperimentConfig
from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr.embeddings import encode_items
from rasr_lib.rasr.graphs import semantic_topk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemGraph:
    """Undirected item graph over items ``1..n_items``; item 0 (padding) has no edge.

    Each undirected edge is stored once with ``src < dst``; ``weight`` is its cosine
    similarity (semantic graph) or 1 (random graph).
    """

    n_items: int  # catalogue size (ids 1..n_items)
    src: np.ndarray  # int64[M]: smaller endpoint of each undirected edge
    dst: np.ndarray  # int64[M]: larger endpoint
    weight: np.ndarray  # float32[M]: fixed edge weight (cosine, or 1 for the random graph)
    kind: str = "semantic"  # semantic | random

    @property
    def n_edges(self) -> int:
        """Number of undirected edges M."""
        return int(len(self.src))

    def degree(self) -> np.ndarray:
        """Unweighted degree of every item, int64[n_items + 1] (row 0 = padding = 0)."""
        return np.bincount(np.concatenate([self.src, self.dst]), minlength=self.n_items + 1)

    def adjacency(self, weighted: bool = True) -> sp.csr_matrix:
        """Symmetric adjacency A, float32 CSR [n_items+1, n_items+1], no self-loops.

        ``weighted``: entries are the edge weights (cosines); otherwise 1.
        """
        n = self.n_items + 1
        data = self.weight if weighted else np.ones(self.n_edges, dtype=np.float32)
        rows = np.concatenate([self.src, self.dst])
        cols = np.concatenate([self.dst, self.src])
        vals = np.concatenate([data, data]).astype(np.float32)
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)

    def stats(self) -> dict:
        """Nodes, undirected edges, isolated items and mean degree (plain Python numbers)."""
        deg = self.degree()[1:]
        return {
            "kind": self.kind,
            "n_nodes": int(self.n_items),
            "n_edges": self.n_edges,
            "n_isolated": int(np.count_nonzero(deg == 0)),
            "mean_degree": float(deg.mean()) if len(deg) else 0.0,
            "max_degree": int(deg.max()) if len(deg) else 0,
            "mean_weight": float(self.weight.mean()) if self.n_edges else 0.0,
        }


def normalized_adjacency(adj: sp.spmatrix) -> sp.csr_matrix:
    """SAGERec §4.3: A_hat = D^-1/2 A D^-1/2 (float32 CSR); rows of isolated items stay empty."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg, dtype=np.float32)
    inv_sqrt[deg > 0] = 1.0 / np.sqrt(deg[deg > 0])
    scale = sp.diags(inv_sqrt)
    return sp.csr_matrix(scale @ adj @ scale, dtype=np.float32)


def _undirected(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_items: int, kind: str) -> ItemGraph:
    """Union of directed pairs as undirected edges (src < dst), self-loops dropped, max weight kept."""
    keep = (rows != cols) & (rows > 0) & (cols > 0)
    lo, hi, vals = np.minimum(rows, cols)[keep], np.maximum(rows, cols)[keep], vals[keep]
    key = lo * (n_items + 1) + hi
    order = np.lexsort((-vals, key))  # by key, the largest weight first
    key, vals = key[order], vals[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, vals = key[first], vals[first]
    return ItemGraph(n_items=n_items, src=(key // (n_items + 1)).astype(np.int64),
                     dst=(key % (n_items + 1)).astype(np.int64), weight=vals.astype(np.float32), kind=kind)


def semantic_graph(emb: np.ndarray, k: int = 3, tau: float = 0.0, chunk: int = 2048) -> ItemGraph:
    """SAGERec §4.2: edge (i, j) iff S_ij >= tau and j in Top-k(i), made undirected.

    ``emb`` is float32[n_items + 1, d] with row 0 (padding) zero; S is the cosine similarity,
    computed ``chunk`` rows at a time by :func:`~rasr_lib.rasr.graphs.semantic_topk`.
    """
    n_items = emb.shape[0] - 1
    index, sims = semantic_topk(emb, k=k, chunk=chunk, exclude_self=True)
    rows = np.repeat(np.arange(n_items + 1, dtype=np.int64), index.shape[1])
    cols, vals = index.ravel(), sims.ravel()
    keep = (cols > 0) & (vals >= tau)
    return _undirected(rows[keep], cols[keep], vals[keep], n_items, "semantic")


def random_graph(n_items: int, n_edges: int, seed: int) -> ItemGraph:
    """SAGERec Table 5 (D): ``n_edges`` distinct undirected edges drawn uniformly, weight 1."""
    max_edges = n_items * (n_items - 1) // 2
    if n_edges > max_edges:
        raise ValueError(f"{n_edges} edges do not fit among {n_items} items (at most {max_edges})")
    rng = np.random.default_rng(seed)
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n_edges:
        need = n_edges - len(keys)
        a = rng.integers(1, n_items + 1, size=2 * need + 16)
        b = rng.integers(1, n_items + 1, size=2 * need + 16)
        a, b = a[a != b], b[a != b]
        new = np.minimum(a, b) * (n_items + 1) + np.maximum(a, b)
        new = new[~np.isin(new, keys)]
        _, first = np.unique(new, return_index=True)
        keys = np.concatenate([keys, new[np.sort(first)][:need]])  # first draws kept, in draw order
    keys = np.sort(keys)
    return ItemGraph(n_items=n_items, src=keys // (n_items + 1), dst=keys % (n_items + 1),
                     weight=np.ones(n_edges, dtype=np.float32), kind="random")


def graph_for(cfg: ExperimentConfig, ds: SeqDataset, progress: bool = False) -> ItemGraph | None:
    """The graph a SAGERec run uses (``cfg.sagerec``); None for ``graph = "none"`` (Table 5 C).

    Items are encoded with :func:`encode_items` (cached under ``runs_dir()/embeddings``); the
    random graph (Table 5 D) gets as many edges as the semantic one and ``cfg.seed``.
    """
    s = cfg.sagerec
    if s.graph == "none":
        return None
    tic = time.perf_counter()
    emb = encode_items(ds, progress=progress, device=cfg.device)
    graph = semantic_graph(emb, k=s.top_k, tau=s.tau)
    if s.graph == "random":
        graph = random_graph(ds.n_items, graph.n_edges, seed=cfg.seed)
    logger.info("%s: SAGERec %s graph in %.2f s: %s", ds.name, s.graph, time.perf_counter() - tic,
                graph.stats())
    return graph
