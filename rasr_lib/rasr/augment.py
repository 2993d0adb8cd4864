"""RaSR dual augmentation (method section, after Eq. 4): semantic and relational sequence variants.

For every training sequence (the training part ``seq[:-2]`` of a user) RaSR makes at most four
variants: two *semantic* ones, which at chosen positions t insert or substitute an item j drawn
with probability ``∝ S[i_t, j]`` (Eq. 4), and two *relational* ones, which replace ``i_t`` by
``argmax_k (C + T)[i_t, k]`` (Eq. 3). Variants equal to their source or to an earlier variant of
the same source are dropped, hence "at most" four.

Everything is vectorised over all sequences at once (flat CSR arrays, one numpy Generator);
there is no Python loop over sequences or interactions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr.graphs import HOLDOUT, RelationGraph

logger = logging.getLogger(__name__)

RELATION_NORMS = ("rows", "none")


@dataclass(frozen=True)
class AugmentConfig:
    """How RaSR's dual augmentation edits the training sequences."""

    n_semantic: int = 2  # semantic variants per training sequence (paper: 2)
    n_relational: int = 2  # relational variants per training sequence (paper: 2)
    semantic_topk: int = 10  # candidates j of i_t: the first semantic_topk entries of the graph's S lists
    insert_prob: float = 0.5  # per edited position: probability to insert j before i_t, else replace i_t
    semantic_rate: float = 0.2  # fraction of positions edited per semantic variant (ceil, at least 1)
    relational_rate: float = 0.2  # fraction of positions replaced per relational variant (ceil, at least 1)
    temperature: float = 1.0  # p(j) ∝ max(S[i_t, j], 0) ** (1/temperature); 1: p ∝ S (paper); ->0: argmax
    relation_norm: str = "rows"  # rows: C and T each row-normalised, then added | none: raw C + T
    max_len: int = 50  # edit only the last max_len items of each training part (0 = all)


@dataclass(frozen=True)
class AugmentedSet:
    """Augmented sequences (CSR, items 1..n_items, no padding) with their source and kind."""

    KINDS: ClassVar[tuple[str, ...]] = ("semantic", "relational")

    offsets: np.ndarray  # int64[n_variants + 1]: row starts into items
    items: np.ndarray  # int64[n_aug_interactions]: item ids 1..n_items
    source_user: np.ndarray  # int64[n_variants]: row of the source user in the original SeqDataset
    kind: np.ndarray  # int8[n_variants]: index into KINDS (0 semantic, 1 relational)
    n_items: int  # catalogue size
    n_candidates: int  # variants made before de-duplication
    cfg: AugmentConfig  # the settings that produced the set
    seed: int  # the seed of the numpy Generator

    @property
    def n_variants(self) -> int:
        """Number of augmented sequences kept."""
        return int(len(self.offsets) - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Length of every variant, int64[n_variants]."""
        return np.diff(self.offsets)

    def sequence(self, v: int) -> np.ndarray:
        """Item ids of variant ``v``."""
        return self.items[self.offsets[v] : self.offsets[v + 1]]

    def sequences(self) -> list[np.ndarray]:
        """All variants as a list of arrays (views)."""
        return np.split(self.items, self.offsets[1:-1])

    def kind_names(self) -> np.ndarray:
        """Kind of every variant as strings, str[n_variants]."""
        return np.asarray(self.KINDS)[self.kind]

    def stats(self) -> dict:
        """Counts and lengths of the augmented set (plain Python numbers)."""
        out = {
            "n_variants": self.n_variants,
            "n_candidates": self.n_candidates,
            "n_dropped_duplicates": self.n_candidates - self.n_variants,
            "n_sources": int(len(np.unique(self.source_user))),
            "avg_len": round(float(self.lengths.mean()), 3) if self.n_variants else 0.0,
        }
        for code, name in enumerate(self.KINDS):
            out[f"n_{name}"] = int(np.count_nonzero(self.kind == code))
        return out


# --------------------------------------------------------------------------- CSR helpers


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Row starts int64[n + 1] of rows with the given lengths."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather(items: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate slices ``items[starts[r]:starts[r]+lengths[r]]``: (offsets int64[n+1], items)."""
    offsets = _offsets(lengths)
    index = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return offsets, items[index]


def _row_of(offsets: np.ndarray) -> np.ndarray:
    """Row id of every flat element, int64[offsets[-1]]."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def _rows_equal(off_a: np.ndarray, items_a: np.ndarray, off_b: np.ndarray, items_b: np.ndarray) -> np.ndarray:
    """bool[n]: whether row r of CSR a equals row r of CSR b (same length and same items)."""
    len_a, len_b = np.diff(off_a), np.diff(off_b)
    equal = len_a == len_b
    rows = np.flatnonzero(equal)
    lengths = len_a[rows]
    sub = _offsets(lengths)
    row_rep = np.repeat(rows, lengths)
    within = np.arange(sub[-1], dtype=np.int64) - np.repeat(sub[:-1], lengths)
    mismatch = items_a[off_a[row_rep] + within] != items_b[off_b[row_rep] + within]
    equal[row_rep[mismatch]] = False
    return equal


def n_edits(lengths: np.ndarray, rate: float) -> np.ndarray:
    """Positions edited per sequence: ``ceil(rate * L)``, at least 1, at most L; int64[n]."""
    want = np.ceil(rate * lengths - 1e-9).astype(np.int64)
    return np.minimum(np.maximum(want, 1), lengths)


def choose_positions(offsets: np.ndarray, n_pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool[offsets[-1]]: ``n_pick[r]`` distinct positions of each row r, uniformly at random."""
    lengths = np.diff(offsets)
    row = _row_of(offsets)
    order = np.lexsort((rng.random(len(row)), row))  # rows stay contiguous, shuffled inside
    rank = np.empty(len(row), dtype=np.int64)
    rank[order] = np.arange(len(row), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return rank < np.repeat(n_pick, lengths)


# --------------------------------------------------------------------------- the two operators


def training_parts(ds: SeqDataset, max_len: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training parts ``seq[:-2]`` (last ``max_len`` items if > 0) of users with at least one item.

    Returns (offsets int64[n+1], items int64[N], users int64[n]: source row in ``ds``).
    """
    ends = ds.offsets[1:] - HOLDOUT
    starts = ds.offsets[:-1]
    if max_len > 0:
        starts = np.maximum(starts, ends - max_len)
    lengths = np.maximum(ends - starts, 0)
    users = np.flatnonzero(lengths > 0)
    offsets, items = _gather(ds.items, starts[users], lengths[users])
    return offsets, items, users.astype(np.int64)


def semantic_table(graph: RelationGraph, topk: int, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Semantic sampling table: (neighbours int64[n+1, k], cumulative weights float64[n+1, k]).

    Weights are ``max(S, 0) ** (1/temperature)`` over each item's top-k neighbours (self
    excluded in the graph); a row of all-zero weights means the item is never edited.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k = min(topk, graph.S_index.shape[1])
    if k < topk:
        logger.warning("semantic_topk=%d but the graph keeps only %d neighbours; using %d", topk, k, k)
    index = graph.S_index[:, :k]
    sims = np.where(index > 0, graph.S_sim[:, :k].astype(np.float64), 0.0)
    sims = np.clip(sims, 0.0, None)
    top = sims.max(axis=1, keepdims=True)
    weights = np.where(top > 0, (sims / np.where(top > 0, top, 1.0)) ** (1.0 / temperature), 0.0)
    return index, np.cumsum(weights, axis=1)


def sample_neighbours(
    x: np.ndarray, index: np.ndarray, cum: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one neighbour j ∝ weight for each item in x int64[m]: (j int64[m], has_neighbour bool[m])."""
    total = cum[x, -1] if cum.shape[1] else np.zeros(len(x))
    u = rng.random(len(x)) * total
    col = np.minimum((cum[x] <= u[:, None]).sum(axis=1), max(cum.shape[1] - 1, 0))
    ok = total > 0
    j = np.where(ok, index[x, col] if index.shape[1] else 0, x)
    return j.astype(np.int64), ok


def relational_targets(graph: RelationGraph, norm: str = "rows") -> np.ndarray:
    """Relational operator table: ``argmax_k (C + T)[i, k]``, self excluded, int64[n_items+1] (0 = empty row).

    ``norm="rows"`` row-normalises C and T separately (each row sums to 1) before adding, so the
    two relations weigh equally; ``"none"`` adds the raw matrices, which is Eq. (3) literally
    (row-normalising the *sum* would not change the argmax). Ties go to the smallest item id.
    """
    if norm not in RELATION_NORMS:
        raise ValueError(f"unknown relation_norm {norm!r}; choose from {RELATION_NORMS}")

    def prepare(mat: sp.csr_matrix) -> sp.csr_matrix:
        mat = sp.csr_matrix(mat, dtype=np.float64, copy=True)
        mat = (mat - sp.diags(mat.diagonal(), format="csr")).tocsr()
        mat.eliminate_zeros()
        if norm == "rows":
            sums = np.asarray(mat.sum(axis=1)).ravel()
            mat = sp.diags(np.where(sums > 0, 1.0 / np.where(sums > 0, sums, 1.0), 0.0)) @ mat
        return sp.csr_matrix(mat)

    score = (prepare(graph.C) + prepare(graph.T)).tocsr()
    score.eliminate_zeros()
    score.sort_indices()
    n = score.shape[0]
    best = np.zeros(n, dtype=np.int64)
    counts = np.diff(score.indptr)
    rows = np.flatnonzero(counts > 0)
    if len(rows) == 0:
        return best
    row_max = np.maximum.reduceat(score.data, score.indptr[rows])
    row_of = np.repeat(np.arange(n), counts)
    full_max = np.zeros(n)
    full_max[rows] = row_max
    hits = np.flatnonzero(score.data == full_max[row_of])
    hit_rows, first = np.unique(row_of[hits], return_index=True)
    best[hit_rows] = score.indices[hits[first]]
    return best


def semantic_variant(
    offsets: np.ndarray, items: np.ndarray, table: tuple[np.ndarray, np.ndarray], cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One semantic variant of every row: insert (before i_t) or substitute j ∝ S[i_t, j] at chosen t."""
    pick = choose_positions(offsets, n_edits(np.diff(offsets), cfg.semantic_rate), rng)
    where = np.flatnonzero(pick)
    j, ok = sample_neighbours(items[where], *table, rng)
    insert = rng.random(len(where)) < cfg.insert_prob
    out = items.copy()
    sub = ok & ~insert
    out[where[sub]] = j[sub]
    ins = ok & insert
    if not ins.any():
        return offsets.copy(), out
    added = np.bincount(_row_of(offsets)[where[ins]], minlength=len(offsets) - 1)
    new_offsets = offsets + np.concatenate([[0], np.cumsum(added)])
    return new_offsets, np.insert(out, where[ins], j[ins])


def relational_variant(
    offsets: np.ndarray, items: np.ndarray, best: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One relational variant of every row: i_t replaced by argmax_k (C+T)[i_t, k] at chosen t."""
    pick = choose_positions(offsets, n_edits(np.diff(offsets), cfg.relational_rate), rng)
    out = items.copy()
    target = best[items[pick]]
    out[pick] = np.where(target > 0, target, items[pick])
    return offsets.copy(), out


def augment_dataset(
    ds: SeqDataset, graph: RelationGraph, cfg: AugmentConfig | None = None, seed: int = 0
) -> AugmentedSet:
    """RaSR dual augmentation: up to n_semantic + n_relational variants of every training part ``seq[:-2]``.

    Variants identical to their source or to an earlier variant of the same source are dropped.
    Output rows are ordered by source user, then semantic before relational.
    """
    cfg = cfg or AugmentConfig()
    if not 0.0 <= cfg.insert_prob <= 1.0:
        raise ValueError(f"insert_prob must be in [0, 1], got {cfg.insert_prob}")
    if graph.n_items != ds.n_items:
        raise ValueError(f"graph has {graph.n_items} items, dataset {ds.n_items}")
    tic = time.perf_counter()
    rng = np.random.default_rng(seed)
    src_off, src_items, users = training_parts(ds, cfg.max_len)
    table = semantic_table(graph, cfg.semantic_topk, cfg.temperature)
    best = relational_targets(graph, cfg.relation_norm)
    sets = [(src_off, src_items)]
    kinds = [-1]
    for _ in range(cfg.n_semantic):
        sets.append(semantic_variant(src_off, src_items, table, cfg, rng))
        kinds.append(0)
    for _ in range(cfg.n_relational):
        sets.append(relational_variant(src_off, src_items, best, cfg, rng))
        kinds.append(1)
    # A variant survives unless it equals its source or an earlier variant (equality is transitive).
    keep = np.ones((len(sets), len(users)), dtype=bool)
    keep[0] = False
    for b in range(1, len(sets)):
        for a in range(b):
            keep[b] &= ~_rows_equal(*sets[a], *sets[b])
    row, set_id = np.nonzero(keep.T)  # ordered by source row, then by set
    base_row = np.cumsum([0] + [len(o) - 1 for o, _ in sets])[:-1]
    base_item = np.cumsum([0] + [len(i) for _, i in sets])[:-1]
    all_starts = np.concatenate([o[:-1] + b for (o, _), b in zip(sets, base_item)])
    all_lengths = np.concatenate([np.diff(o) for o, _ in sets])
    all_items = np.concatenate([i for _, i in sets])
    glob = base_row[set_id] + row
    offsets, items = _gather(all_items, all_starts[glob], all_lengths[glob])
    out = AugmentedSet(
        offsets=offsets,
        items=items,
        source_user=users[row],
        kind=np.asarray(kinds, dtype=np.int8)[set_id],
        n_items=ds.n_items,
        n_candidates=int((len(sets) - 1) * len(users)),
        cfg=cfg,
        seed=seed,
    )
    logger.info("%s: %d augmented sequences from %d sources (%d duplicates dropped) in %.2f s",
                ds.name, out.n_variants, len(users), out.n_candidates - out.n_variants,
                time.perf_counter() - tic)
    return out
