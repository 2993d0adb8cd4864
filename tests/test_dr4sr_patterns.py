"""DR4SR pattern mining, sequence->pattern pairs and pattern rows (DR4SR Sec. 3.1)."""

from __future__ import annotations

import numpy as np
import pytest

from rasr_lib.data import DataError, load_dataset
from rasr_lib.dr4sr import (
    count_patterns,
    is_ordered_sublist,
    mine_patterns,
    pattern_pairs,
    pattern_training_rows,
    training_sequences,
    windowed_subsequences,
)
from rasr_lib.dr4sr.patterns import _positions


def test_slide_example_window3_minfreq2():
    """DR4SR slide 16: window 3, min frequency 2, sequence 1 2 3 4 5 -> 12, 13, 23, 123 (+ shifts)."""
    pats = set(mine_patterns([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], max_span=3, min_frequency=2))
    # the slide lists the first window's patterns; every later window adds its own
    assert {(1, 2), (1, 3), (2, 3), (1, 2, 3)} <= pats
    assert pats == {
        (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (3, 5), (4, 5),
        (1, 2, 3), (2, 3, 4), (3, 4, 5),
    }
    # wider than the span: first and last item more than 3 positions apart
    for excluded in [(1, 4), (1, 2, 4), (1, 2, 3, 4), (2, 5), (1, 5)]:
        assert excluded not in pats


def test_single_window_of_slide():
    """The first window alone, [1, 2, 3], gives exactly the slide's four patterns."""
    pats = mine_patterns([[1, 2, 3], [1, 2, 3]], max_span=3, min_frequency=2)
    assert pats == [(1, 2), (1, 3), (2, 3), (1, 2, 3)]


def test_frequency_counts_sequences_not_occurrences():
    """A pattern repeated inside one sequence counts once towards min_frequency."""
    seqs = [[1, 2, 1, 2, 1, 2], [3, 4, 5]]
    assert count_patterns(seqs)[(1, 2)] == 1
    assert mine_patterns(seqs, min_frequency=2) == []
    assert (1, 2) in mine_patterns(seqs + [[7, 1, 2]], min_frequency=2)
    assert mine_patterns(seqs + [[7, 1, 2]], min_frequency=3) == []


def test_span_boundary_inclusive():
    """Span counts positions first..last inclusively: 5 positions pass max_span=5, 6 do not."""
    five = [[1, 9, 9, 9, 2], [1, 8, 8, 8, 2]]  # 1 and 2 are 5 positions apart, inclusive
    assert mine_patterns(five, max_span=5) == [(1, 2)]
    assert mine_patterns(five, max_span=4) == []
    six = [[1, 9, 9, 9, 9, 2], [1, 8, 8, 8, 8, 2]]
    assert mine_patterns(six, max_span=5) == []
    assert mine_patterns(six, max_span=6) == [(1, 2)]
    # max_span=2: adjacent pairs only
    assert mine_patterns([[1, 2, 3], [1, 2, 3]], max_span=2) == [(1, 2), (2, 3)]


def test_span_uses_any_occurrence():
    """One occurrence inside the span suffices even when others are wider."""
    seqs = [[1, 7, 7, 7, 7, 7, 1, 2], [1, 2]]
    assert mine_patterns(seqs, max_span=5) == [(1, 2)]


def test_repeated_items_and_lengths():
    """Patterns may repeat an item; min_length/max_length bound the pattern length."""
    seqs = [[1, 1, 3], [1, 1, 4]]
    assert mine_patterns(seqs) == [(1, 1)]
    seqs = [[1, 2, 3, 4, 5]] * 2
    assert len(mine_patterns(seqs)) == 2**5 - 5 - 1  # every subset of size >= 2
    assert len(mine_patterns(seqs, max_length=2)) == 10
    assert len(mine_patterns(seqs, min_length=4)) == 5 + 1
    # starts 0, 1: 15 each (any non-empty subset of the next 4); starts 2, 3, 4: 7, 3, 1
    assert len(windowed_subsequences([1, 2, 3, 4, 5, 6], max_span=5)) == 41


def test_numpy_miner_matches_set_reference():
    """The vectorised miner equals the per-sequence-set reference on random data."""
    rng = np.random.default_rng(5)
    seqs = _random_sequences(rng, 150, 10, 12) + [np.array([3, 3, 3, 3, 3, 3])]
    for max_span, min_freq, min_len, max_len in [(5, 2, 2, None), (4, 3, 1, None), (5, 2, 3, 4)]:
        counts = count_patterns(seqs, max_span, min_len, max_len)
        expected = sorted((p for p, c in counts.items() if c >= min_freq), key=lambda p: (len(p), p))
        got = mine_patterns(seqs, max_span, min_freq, min_len, max_len)
        assert got == expected and len(got) > 100


def test_is_ordered_sublist():
    """DR4SR's is_sublist: in order, gaps allowed, anywhere in the sequence."""
    pos = _positions([5, 1, 2, 5, 3])
    assert is_ordered_sublist((1, 3), pos)
    assert is_ordered_sublist((5, 5, 3), pos)
    assert not is_ordered_sublist((3, 1), pos)
    assert not is_ordered_sublist((5, 5, 5), pos)
    assert not is_ordered_sublist((4,), pos)


def _contained(pattern, seq, max_span=None):
    """Brute force: some increasing positions match ``pattern`` (within ``max_span`` if given)."""
    from itertools import combinations

    n = len(seq)
    for idx in combinations(range(n), len(pattern)):
        if all(seq[i] == p for i, p in zip(idx, pattern)):
            if max_span is None or idx[-1] - idx[0] + 1 <= max_span:
                return True
    return False


def _random_sequences(rng, n, n_items, max_len):
    return [rng.integers(1, n_items + 1, size=rng.integers(2, max_len + 1)).tolist() for _ in range(n)]


def test_pairs_contained_at_most_ten_and_exhaustive():
    """Each pair's pattern is contained in its source; up to 10 per source; none missed."""
    rng = np.random.default_rng(3)
    seqs = _random_sequences(rng, 40, 6, 10)
    pats = mine_patterns(seqs, max_span=5, min_frequency=2)
    for max_span in (None, 5):
        src, pairs = pattern_pairs(seqs, pats, max_pairs=10, seed=0, max_span=max_span)
        assert len(src) == len(pairs)
        assert np.all(np.diff(src) >= 0)
        for s in range(len(seqs)):
            got = [p for i, p in zip(src.tolist(), pairs) if i == s]
            n_contained = sum(_contained(p, seqs[s], max_span) for p in pats)
            assert len(got) == min(10, n_contained)
            assert len(set(got)) == len(got)
            assert all(_contained(p, seqs[s], max_span) for p in got)


def test_pairs_no_span_vs_span():
    """DR4SR's check has no span: a pattern spread wider than 5 still pairs with the sequence."""
    seq = [1, 9, 9, 9, 9, 9, 2]
    src, pairs = pattern_pairs([seq], [(1, 2), (2, 1)], seed=0)
    assert src.tolist() == [0] and pairs == [(1, 2)]
    src, pairs = pattern_pairs([seq], [(1, 2), (2, 1)], seed=0, max_span=5)
    assert src.tolist() == [] and pairs == []


def test_pairs_deterministic_under_seed():
    """Same seed -> same pairs; another seed -> another random selection."""
    seqs = [[1, 2, 3, 4, 5, 6, 7]] * 3
    pats = mine_patterns(seqs, max_span=5, min_frequency=2)  # 56 patterns, all contained
    a = pattern_pairs(seqs, pats, seed=7)
    b = pattern_pairs(seqs, pats, seed=7)
    c = pattern_pairs(seqs, pats, seed=8)
    assert a[0].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert a[0].tolist() == b[0].tolist() and a[1] == b[1]
    assert a[1] != c[1]
    assert a[1][:10] != a[1][10:20]  # each source draws its own shuffle
    gen = pattern_pairs(seqs, pats, seed=np.random.default_rng(7))
    assert gen[1] == a[1]


def test_pattern_training_rows():
    """Input p[:-1], target p[1:], right-padded int64; over-long rows keep their last steps."""
    pats = [(1, 2), (3, 4, 5, 6), (7,), (1, 2, 3, 4, 5, 6)]
    item_seq, target, seq_len = pattern_training_rows(pats, max_len=4)
    assert item_seq.dtype == target.dtype == seq_len.dtype == np.int64
    assert item_seq.tolist() == [[1, 0, 0, 0], [3, 4, 5, 0], [2, 3, 4, 5]]
    assert target.tolist() == [[2, 0, 0, 0], [4, 5, 6, 0], [3, 4, 5, 6]]
    assert seq_len.tolist() == [1, 3, 4]
    empty = pattern_training_rows([], max_len=3)
    assert [a.shape for a in empty] == [(0, 3), (0, 3), (0,)]


def test_training_sequences_hold_out_two():
    """Mining input is ``seq[:-2]`` of every user, untruncated."""
    from rasr_lib.data.schema import SeqDataset

    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    ds = SeqDataset("toy", offsets=np.array([0, 4, 9]), items=items, n_items=9)
    assert [s.tolist() for s in training_sequences(ds)] == [[1, 2], [5, 6, 7]]


def test_matches_seq2pat_on_random_and_beauty():
    """Cross-check with seq2pat (the miner DR4SR used) when it is installed."""
    seq2pat = pytest.importorskip("sequential.seq2pat")
    rng = np.random.default_rng(0)
    cases = [_random_sequences(rng, 200, 12, 12)]
    try:
        beauty = load_dataset("beauty")
    except DataError:  # data not present: the random case still runs
        beauty = None
    if beauty is not None:
        cases.append([s.tolist() for s in training_sequences(beauty)[:500]])
    for seqs in cases:
        for max_span, min_frequency in [(5, 2), (3, 3)]:
            ours = set(mine_patterns(seqs, max_span=max_span, min_frequency=min_frequency))
            miner = seq2pat.Seq2Pat(sequences=seqs, n_jobs=1, max_span=max_span)
            theirs = {tuple(p[:-1]) for p in miner.get_patterns(min_frequency=min_frequency)}
            assert len(ours) > 0
            assert ours == theirs


def test_lazy_shuffle_is_a_permutation():
    """The chunked Fisher-Yates visits every candidate exactly once, in a seeded order."""
    from rasr_lib.dr4sr.patterns import _lazy_shuffle

    values = np.arange(100, 300)
    a = list(_lazy_shuffle(values, np.random.default_rng(1), chunk=8))
    b = list(_lazy_shuffle(values, np.random.default_rng(1), chunk=8))
    assert sorted(a) == values.tolist() and a == b and a != values.tolist()
    assert values.tolist() == list(range(100, 300))  # input untouched
