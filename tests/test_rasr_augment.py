"""Invariants of RaSR's dual augmentation (semantic insert/substitute, relational replace)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr.augment import (
    AugmentConfig,
    augment_dataset,
    n_edits,
    relational_targets,
    sample_neighbours,
    semantic_table,
    training_parts,
)
from rasr_lib.rasr.graphs import GraphConfig, RelationGraph, build_relation_graph

# Same toy data as tests/test_rasr_graphs.py: training parts 1 2 3 2 | 2 3 4 | 3 1 2.
SEQS = [[1, 2, 3, 2, 4, 5], [2, 3, 4, 1, 5], [3, 1, 2, 5, 4]]


def make_ds(seqs, n_items=5):
    """A SeqDataset from a list of item lists."""
    return SeqDataset.from_lists(seqs, n_items)


def random_embeddings(n_items: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    """Unit-norm float32[n_items + 1, dim] with a zero padding row."""
    emb = np.random.default_rng(seed).standard_normal((n_items + 1, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[0] = 0
    return emb


def toy_graph(mode: str = "position") -> RelationGraph:
    """Graph of the toy data (window 2) with 3-dimensional random embeddings."""
    return build_relation_graph(make_ds(SEQS), random_embeddings(5, dim=3),
                                GraphConfig(window=2, temporal_mode=mode, semantic_k=4))


@pytest.fixture(scope="module")
def slice_setup():
    """500 random sequences (lengths 3..39) over 300 items with a random-embedding graph."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(3, 40, size=500)
    seqs = [list(rng.integers(1, 301, size=n)) for n in lengths]
    ds = make_ds(seqs, n_items=300)
    graph = build_relation_graph(ds, random_embeddings(300, seed=1), GraphConfig(semantic_k=20))
    return ds, graph


def test_n_edits():
    np.testing.assert_array_equal(n_edits(np.array([1, 2, 5, 6, 15, 50]), 0.2), [1, 1, 1, 2, 3, 10])
    np.testing.assert_array_equal(n_edits(np.array([3, 4]), 1.0), [3, 4])


def test_relational_targets_by_hand():
    # Rows without self: C row 3 = {1: 1, 2: 1, 4: 1}; T (position) row 3 = {1: .8, 2: .512, 4: .64}.
    # rows-normalised: 1: 1/3 + .8/1.952, 2: 1/3 + .512/1.952, 4: 1/3 + .64/1.952 -> 1.
    for norm in ("rows", "none"):
        np.testing.assert_array_equal(relational_targets(toy_graph("position"), norm), [0, 2, 3, 1, 0, 0])
    # recency: T row 3 = {1: .8, 2: 1, 4: 1}, a tie between 2 and 4 that goes to the smaller id.
    np.testing.assert_array_equal(relational_targets(toy_graph("recency"), "rows"), [0, 2, 3, 2, 0, 0])


def test_relational_targets_exclude_self():
    ds = make_ds([[2, 2, 2, 2, 3, 1, 5], [2, 3, 4, 4]])  # training parts 2 2 2 2 3 | 2 3: C[2,2] = 3
    graph = build_relation_graph(ds, random_embeddings(5, dim=3), GraphConfig(semantic_k=2))
    assert graph.C[2, 2] == 3 and graph.C[2, 3] == 2
    assert relational_targets(graph, "none")[2] == 3


def test_relational_variant_equals_hand_argmax():
    cfg = AugmentConfig(n_semantic=0, n_relational=1, relational_rate=1.0)
    aug = augment_dataset(make_ds(SEQS), toy_graph("position"), cfg, seed=0)
    # best = [0, 2, 3, 1, 0, 0]: 1 2 3 2 -> 2 3 1 3; 2 3 4 -> 3 1 4 (4 has no successor); 3 1 2 -> 1 2 3.
    assert [s.tolist() for s in aug.sequences()] == [[2, 3, 1, 3], [3, 1, 4], [1, 2, 3]]
    np.testing.assert_array_equal(aug.source_user, [0, 1, 2])
    assert aug.kind_names().tolist() == ["relational"] * 3


def test_duplicates_and_unchanged_variants_are_dropped():
    # Two relational variants at rate 1 are identical: the second is dropped. A sequence of
    # items without successors (4 4 4) is never changed: both its variants are dropped.
    ds = make_ds(SEQS + [[4, 4, 4, 1, 2]])
    graph = build_relation_graph(ds, random_embeddings(5, dim=3), GraphConfig(temporal_mode="position"))
    np.testing.assert_array_equal(relational_targets(graph)[4], 0)
    cfg = AugmentConfig(n_semantic=0, n_relational=2, relational_rate=1.0)
    aug = augment_dataset(ds, graph, cfg, seed=3)
    assert aug.n_candidates == 8
    assert aug.n_variants == 3
    np.testing.assert_array_equal(aug.source_user, [0, 1, 2])
    assert aug.stats()["n_dropped_duplicates"] == 5


def test_sampling_is_proportional_to_similarity():
    # Item 1's neighbours 2, 3, 4, 5 with cosines .6, .3, .1, -.2: p = .6, .3, .1, 0.
    index = np.zeros((6, 4), dtype=np.int64)
    sims = np.zeros((6, 4), dtype=np.float32)
    index[1], sims[1] = [2, 3, 4, 5], [0.6, 0.3, 0.1, -0.2]
    graph = RelationGraph(C=None, T=None, S_index=index, S_sim=sims, cfg=GraphConfig())
    table = semantic_table(graph, topk=4, temperature=1.0)
    j, ok = sample_neighbours(np.ones(40_000, dtype=np.int64), *table, np.random.default_rng(0))
    assert ok.all()
    freq = np.bincount(j, minlength=6) / len(j)
    np.testing.assert_allclose(freq[2:5], [0.6, 0.3, 0.1], atol=0.01)
    assert freq[5] == 0 and freq[1] == 0
    # A low temperature approaches the argmax; an item without neighbours is never edited.
    cold = semantic_table(graph, 4, 0.01)
    j, _ = sample_neighbours(np.ones(1000, dtype=np.int64), *cold, np.random.default_rng(1))
    assert set(j.tolist()) == {2}
    j, ok = sample_neighbours(np.array([3, 3]), *table, np.random.default_rng(0))
    assert ok.tolist() == [False, False] and j.tolist() == [3, 3]


def _invariants(ds, aug, max_len):
    """Ids in range, no padding, no empty variant, source rows valid."""
    assert aug.items.dtype == np.int64 and aug.offsets.dtype == np.int64
    assert aug.items.min() >= 1 and aug.items.max() <= ds.n_items
    assert aug.lengths.min() >= 1
    assert aug.source_user.min() >= 0 and aug.source_user.max() < ds.n_users
    assert np.all(np.diff(aug.source_user) >= 0)
    off, items, users = training_parts(ds, max_len)
    return {int(u): items[off[r]:off[r + 1]] for r, u in enumerate(users)}


def test_substitution_keeps_length_and_uses_top_k(slice_setup):
    ds, graph = slice_setup
    cfg = AugmentConfig(n_semantic=2, n_relational=0, insert_prob=0.0, semantic_topk=5, semantic_rate=0.2)
    aug = augment_dataset(ds, graph, cfg, seed=0)
    src = _invariants(ds, aug, cfg.max_len)
    assert aug.n_variants > 900
    for v in range(aug.n_variants):
        s, a = src[int(aug.source_user[v])], aug.sequence(v)
        assert len(a) == len(s)
        changed = np.flatnonzero(a != s)
        assert 1 <= len(changed) <= math.ceil(0.2 * len(s))
        for t in changed:
            assert a[t] in graph.S_index[s[t], :5]


def test_insertions_come_from_top_k_neighbours(slice_setup):
    ds, graph = slice_setup
    cfg = AugmentConfig(n_semantic=2, n_relational=0, insert_prob=1.0, semantic_topk=3, semantic_rate=0.3)
    aug = augment_dataset(ds, graph, cfg, seed=1)
    src = _invariants(ds, aug, cfg.max_len)
    for v in range(aug.n_variants):
        s, a = src[int(aug.source_user[v])], aug.sequence(v)
        added = len(a) - len(s)
        assert added == math.ceil(0.3 * len(s) - 1e-9)
        q = 0
        for item in a:  # inserted items sit right before the item they resemble
            if q < len(s) and item == s[q]:
                q += 1
            else:
                assert item in graph.S_index[s[q], :3]
        assert q == len(s)


def test_mixed_variants_invariants_and_determinism(slice_setup):
    ds, graph = slice_setup
    cfg = AugmentConfig()
    first = augment_dataset(ds, graph, cfg, seed=11)
    src = _invariants(ds, first, cfg.max_len)
    counts = np.bincount(first.source_user, minlength=ds.n_users)
    assert counts.max() <= 4 and first.n_variants <= 4 * ds.n_users
    for v in range(first.n_variants):
        s, a = src[int(first.source_user[v])], first.sequence(v)
        assert len(s) <= len(a) <= len(s) + math.ceil(0.2 * len(s) - 1e-9)
        if first.kind[v] == 1:
            assert len(a) == len(s)
    again = augment_dataset(ds, graph, cfg, seed=11)
    other = augment_dataset(ds, graph, cfg, seed=12)
    np.testing.assert_array_equal(first.offsets, again.offsets)
    np.testing.assert_array_equal(first.items, again.items)
    np.testing.assert_array_equal(first.kind, again.kind)
    assert not (len(first.items) == len(other.items) and np.array_equal(first.items, other.items))


def test_max_len_limits_the_edited_window():
    ds = make_ds([list(range(1, 13)) + [1, 2]], n_items=12)  # one training part 1..12
    graph = build_relation_graph(ds, random_embeddings(12), GraphConfig(semantic_k=4))
    cfg = AugmentConfig(n_semantic=0, n_relational=1, relational_rate=1.0, max_len=4)
    aug = augment_dataset(ds, graph, cfg, seed=0)
    best = relational_targets(graph)
    assert aug.sequence(0).tolist() == [int(best[i]) or i for i in (9, 10, 11, 12)]
