"""RaSR Eqs. (3)-(4) on hand-computed examples: co-occurrence C, temporal T, semantic top-k S."""

from __future__ import annotations

import numpy as np
import pytest

from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr.graphs import (
    GraphConfig,
    build_relation_graph,
    cooccurrence_matrix,
    semantic_matrix,
    semantic_topk,
    temporal_matrix,
)

# Three full sequences over 5 items; the last two items of each are validation/test targets.
#   A = 1 2 3 2 | 4 5   training part 1 2 3 2
#   B = 2 3 4   | 1 5   training part 2 3 4
#   C = 3 1 2   | 5 4   training part 3 1 2
SEQS = [[1, 2, 3, 2, 4, 5], [2, 3, 4, 1, 5], [3, 1, 2, 5, 4]]


def make_ds(seqs, n_items=5):
    """A SeqDataset from a list of item lists."""
    return SeqDataset.from_lists(seqs, n_items)


def dense(entries: dict, n: int = 6) -> np.ndarray:
    """float32[n, n] with the given {(i, j): value} entries."""
    out = np.zeros((n, n), dtype=np.float32)
    for (i, j), v in entries.items():
        out[i, j] = v
    return out


# Adjacent training pairs: A (1,2) (2,3) (3,2); B (2,3) (3,4); C (3,1) (1,2).
C_WINDOW2 = {(1, 2): 2, (2, 3): 2, (3, 2): 1, (3, 4): 1, (3, 1): 1}
# Window 3 adds the distance-2 pairs: A (1,3) (2,2); B (2,4); C (3,2).
C_WINDOW3 = {(1, 2): 2, (1, 3): 1, (2, 2): 1, (2, 3): 2, (2, 4): 1, (3, 1): 1, (3, 2): 2, (3, 4): 1}
# position: lambda^k, k = 1-based index of the pair. A: .8, .64, .512; B: .8, .64; C: .8, .64.
T_POSITION = {(1, 2): 0.8 + 0.64, (2, 3): 0.64 + 0.8, (3, 2): 0.512, (3, 4): 0.64, (3, 1): 0.8}
# recency: lambda^(pairs after). A: .64, .8, 1; B: .8, 1; C: .8, 1.
T_RECENCY = {(1, 2): 0.64 + 1.0, (2, 3): 0.8 + 0.8, (3, 2): 1.0, (3, 4): 1.0, (3, 1): 0.8}
# distance: every window pair weighs lambda^d.
T_DISTANCE2 = {key: 0.8 * v for key, v in C_WINDOW2.items()}
T_DISTANCE3 = {(1, 2): 1.6, (1, 3): 0.64, (2, 2): 0.64, (2, 3): 1.6, (2, 4): 0.64,
               (3, 1): 0.8, (3, 2): 0.8 + 0.64, (3, 4): 0.8}


@pytest.mark.parametrize("window, expected", [(2, C_WINDOW2), (3, C_WINDOW3)])
def test_cooccurrence_by_hand(window, expected):
    mat = cooccurrence_matrix(make_ds(SEQS), window=window)
    assert mat.shape == (6, 6)
    assert mat.dtype == np.float32
    np.testing.assert_array_equal(mat.toarray(), dense(expected))


@pytest.mark.parametrize(
    "mode, window, expected",
    [
        ("position", 2, T_POSITION),
        ("recency", 2, T_RECENCY),
        ("recency", 3, T_RECENCY),  # window only matters in distance mode
        ("distance", 2, T_DISTANCE2),
        ("distance", 3, T_DISTANCE3),
    ],
)
def test_temporal_by_hand(mode, window, expected):
    mat = temporal_matrix(make_ds(SEQS), decay=0.8, mode=mode, window=window)
    assert mat.shape == (6, 6)
    assert mat.dtype == np.float32
    np.testing.assert_allclose(mat.toarray(), dense(expected), rtol=1e-6, atol=0)


def test_no_leakage_from_validation_and_test_items():
    # Same training parts, completely different last two items: C and T must not change.
    other = [s[:-2] + [5, 5] for s in SEQS]
    other[1] = SEQS[1][:-2] + [1, 1]
    for build in (lambda d: cooccurrence_matrix(d, window=3), lambda d: temporal_matrix(d, mode="position")):
        np.testing.assert_array_equal(build(make_ds(SEQS)).toarray(), build(make_ds(other)).toarray())
    cooc = cooccurrence_matrix(make_ds(SEQS), window=3).toarray()
    # Pairs that only exist through held-out items: (2,4) (4,5) in A, (4,1) (1,5) in B, (2,5) (5,4) in C.
    assert cooc[4, 5] == 0 and cooc[4, 1] == 0 and cooc[1, 5] == 0 and cooc[2, 5] == 0 and cooc[5, 4] == 0
    assert cooc[5].sum() == 0 and cooc[:, 5].sum() == 0  # item 5 is only ever held out


def test_short_sequences_contribute_nothing():
    ds = make_ds([[1, 2, 3], [4, 5, 1, 2]])  # training parts [1] and [4, 5]
    np.testing.assert_array_equal(cooccurrence_matrix(ds, window=3).toarray(), dense({(4, 5): 1}))
    np.testing.assert_allclose(temporal_matrix(ds, mode="recency").toarray(), dense({(4, 5): 1.0}))


def test_recency_weights_beyond_float32_leave_no_entry():
    # a 500-item training part: pairs (1, 2) and (2, 5) are 498 and 497 pairs from the end
    # (0.8**497 < float32's smallest subnormal) and never recur; pair (3, 4) is the last (weight 1)
    ds = make_ds([[1, 2] + [5] * 496 + [3, 4] + [5, 5]])
    cooc, temporal = cooccurrence_matrix(ds), temporal_matrix(ds, decay=0.8, mode="recency")
    assert cooc[1, 2] == cooc[2, 5] == 1 and temporal[1, 2] == temporal[2, 5] == 0 and temporal[3, 4] == 1.0
    assert temporal.nnz == cooc.nnz - 2 and cooc.multiply(temporal > 0).nnz == temporal.nnz


def test_invalid_arguments():
    with pytest.raises(ValueError, match="window"):
        cooccurrence_matrix(make_ds(SEQS), window=1)
    with pytest.raises(ValueError, match="temporal mode"):
        temporal_matrix(make_ds(SEQS), mode="exponential")


# Six items on the unit circle (angles in degrees) with different norms; row 0 is padding.
ANGLES = [0, 10, 30, 60, 100, 180]
NORMS = [1.0, 2.0, 0.5, 3.0, 1.0, 0.7]


def hand_embeddings() -> np.ndarray:
    """float32[7, 3]: items 1..6 at ANGLES (third coordinate 0), scaled by NORMS."""
    emb = np.zeros((7, 3), dtype=np.float32)
    rad = np.deg2rad(ANGLES)
    emb[1:, 0] = np.cos(rad) * NORMS
    emb[1:, 1] = np.sin(rad) * NORMS
    return emb


def test_semantic_topk_by_hand():
    index, sims = semantic_topk(hand_embeddings(), k=3, chunk=2048)
    assert index.dtype == np.int64 and sims.dtype == np.float32
    assert index.shape == (7, 3) and sims.shape == (7, 3)
    # Item 1 (0 deg): 2 (10 deg), 3 (30), 4 (60); item 4 (60 deg): 3 (30 apart), 5 (40), 2 (50).
    np.testing.assert_array_equal(index[1], [2, 3, 4])
    np.testing.assert_array_equal(index[4], [3, 5, 2])
    np.testing.assert_array_equal(index[6], [5, 4, 3])  # 180 deg: 80, 120, 150 apart
    np.testing.assert_allclose(sims[1], np.cos(np.deg2rad([10, 30, 60])), atol=1e-6)
    np.testing.assert_allclose(sims[6], np.cos(np.deg2rad([80, 120, 150])), atol=1e-6)
    np.testing.assert_array_equal(index[0], [0, 0, 0])  # padding row
    np.testing.assert_array_equal(sims[0], [0, 0, 0])
    assert not np.any(index[1:] == np.arange(1, 7)[:, None])  # self never a neighbour
    assert not np.any(index[1:] == 0)  # padding never a neighbour


def test_semantic_topk_chunking_and_self():
    emb = hand_embeddings()
    full = semantic_topk(emb, k=4, chunk=2048)
    small = semantic_topk(emb, k=4, chunk=2)
    np.testing.assert_array_equal(full[0], small[0])
    # The BLAS kernel a matmul takes depends on its shape and the CPU, so a cosine of 0 can come back
    # as 1.6e-9 in one chunking and 0 in another: equal up to float32 rounding, not bit for bit.
    np.testing.assert_allclose(full[1], small[1], rtol=0, atol=1e-6)
    index, sims = semantic_topk(emb, k=2, exclude_self=False)
    np.testing.assert_array_equal(index[1:, 0], np.arange(1, 7))
    np.testing.assert_allclose(sims[1:, 0], 1.0, atol=1e-6)
    index, _ = semantic_topk(emb, k=50)  # capped at the 5 other items
    assert index.shape == (7, 5)


def test_semantic_matrix_csr():
    mat = semantic_matrix(hand_embeddings(), k=2).toarray()
    assert mat.shape == (7, 7)
    assert np.count_nonzero(mat[1:]) == 12 and np.count_nonzero(mat[0]) == 0
    assert mat[1, 2] == pytest.approx(np.cos(np.deg2rad(10)), abs=1e-6)
    assert mat[1, 3] == pytest.approx(np.cos(np.deg2rad(30)), abs=1e-6)
    assert mat[1, 4] == 0  # third neighbour not kept with k=2


def test_build_relation_graph():
    ds = make_ds(SEQS, n_items=6)
    cfg = GraphConfig(window=3, decay=0.8, temporal_mode="distance", semantic_k=2)
    graph = build_relation_graph(ds, hand_embeddings(), cfg)
    assert graph.n_items == 6
    np.testing.assert_array_equal(graph.C.toarray(), dense(C_WINDOW3, n=7))
    np.testing.assert_allclose(graph.T.toarray(), dense(T_DISTANCE3, n=7), rtol=1e-6)
    np.testing.assert_array_equal(graph.S_index[1], [2, 3])
    assert graph.S.shape == (7, 7)
    assert graph.stats()["C_total"] == 11.0
    with pytest.raises(ValueError, match="rows"):
        build_relation_graph(make_ds(SEQS), hand_embeddings(), cfg)  # 5 items vs 7 rows
