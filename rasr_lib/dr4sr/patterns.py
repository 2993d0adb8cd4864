"""DR4SR pre-training data: rule-based pattern mining, sequence->pattern pairs, pattern rows.

DR4SR (``1.Build_pretraining_dataset.py``) mines patterns with the ``seq2pat`` package:
``Seq2Pat(sequences, max_span=5).get_patterns(min_frequency=2)`` on every user's full
training sequence ``seq[:-2]``. A pattern is an ordered subsequence (gaps allowed) of length
>= 2 whose first and last items lie at most ``max_span`` positions apart, counted inclusively
(seq2pat adds the constraint ``1 <= span(index) <= max_span - 1``). Its frequency is the number
of sequences that contain it at least once in such a window; a pattern repeated inside one
sequence counts once. This module re-implements that miner exactly (identical output to
seq2pat 2.0.0 on full Beauty, Toys and Sports; cross-checked in ``tests/test_dr4sr_patterns.py``):
every occurrence starts at some position ``i`` and takes any subset of the next
``max_span - 1`` items, so each position contributes at most ``2**(max_span-1) - 1``
candidates, de-duplicated per sequence (:func:`windowed_subsequences`, the readable
reference) and counted with numpy (:func:`mine_patterns`, 1-2 s on full Beauty).

The mined patterns are then used twice (DR4SR Sec. 3.1):

- :func:`pattern_pairs`: for each training sequence, up to ``max_pairs`` (10) patterns that are
  ordered sub-lists of it, in a random order: the (source -> target) pairs that pre-train the
  regenerator;
- :func:`pattern_training_rows`: each pattern as an extra training row for the backbone
  (input ``p[:-1]``, target ``p[1:]``), the ``patterns.pth`` part of DR4SR's merged data.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np

from rasr_lib.data.schema import SeqDataset

logger = logging.getLogger(__name__)

HOLDOUT = 2  # items at the end of each sequence kept out (validation + test targets)
Pattern = tuple  # tuple[int, ...]: item ids in order


def training_sequences(ds: SeqDataset, holdout: int = HOLDOUT) -> list[np.ndarray]:
    """Training part ``seq[:-holdout]`` of every user, untruncated (DR4SR's ``seq2pat_data``)."""
    starts, ends = ds.offsets[:-1], ds.offsets[1:] - holdout
    return [ds.items[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def _as_list(seq) -> list[int]:
    """A sequence of item ids as a list of Python ints (numpy arrays, lists, tuples)."""
    return seq.tolist() if isinstance(seq, np.ndarray) else [int(x) for x in seq]


def windowed_subsequences(
    seq: Sequence[int], max_span: int = 5, min_length: int = 2, max_length: int | None = None
) -> set[Pattern]:
    """All distinct ordered subsequences of ``seq`` spanning at most ``max_span`` positions.

    The span is counted inclusively: positions ``i_1 < ... < i_k`` qualify when
    ``i_k - i_1 + 1 <= max_span`` (seq2pat's ``max_span``). Lengths lie in
    ``[min_length, max_length]`` (``max_length=None``: no cap beyond ``max_span``).
    Example: ``[1, 2, 3, 4, 5]`` with ``max_span=3`` gives 12, 13, 23, 24, 34, 35, 45 and
    123, 234, 345.
    """
    if max_span < 1:
        raise ValueError(f"max_span must be >= 1, got {max_span}")
    items = _as_list(seq)
    top = max_span if max_length is None else min(max_length, max_span)
    lo = max(min_length, 1)
    out: set[Pattern] = set()
    n = len(items)
    for i in range(n):
        head = (items[i],)
        tail = items[i + 1 : i + max_span]
        if lo <= 1:
            out.add(head)
        for r in range(max(lo - 1, 1), min(top - 1, len(tail)) + 1):
            out.update(head + comb for comb in combinations(tail, r))
    return out


def count_patterns(
    sequences: Iterable[Sequence[int]],
    max_span: int = 5,
    min_length: int = 2,
    max_length: int | None = None,
) -> Counter:
    """Support of every windowed subsequence: number of sequences containing it (once each).

    The readable reference (one Python set per sequence); :func:`mine_patterns` computes the
    same supports with numpy and is the one to use on full datasets.
    """
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(windowed_subsequences(seq, max_span, min_length, max_length))
    return counts


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a C-contiguous int matrix and how often each occurs (byte-wise sort)."""
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq.view(rows.dtype).reshape(-1, rows.shape[1]), counts


def mine_patterns(
    sequences: Iterable[Sequence[int]],
    max_span: int = 5,
    min_frequency: int = 2,
    min_length: int = 2,
    max_length: int | None = None,
) -> list[Pattern]:
    """DR4SR's rule-based patterns: windowed subsequences in >= ``min_frequency`` sequences.

    Same result as ``Seq2Pat(sequences, max_span=max_span).get_patterns(min_frequency)`` with
    the frequency column stripped (as DR4SR does), for integer ``min_frequency``. Vectorised:
    for each pattern length ``L`` and each choice of ``L - 1`` later offsets inside the window,
    one numpy row ``(sequence, items...)`` per start position; distinct rows de-duplicate
    occurrences within a sequence, and distinct item rows then count supporting sequences.
    Returns tuples sorted by (length, items), so the output is deterministic.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    if max_span < 1:
        raise ValueError(f"max_span must be >= 1, got {max_span}")
    start = time.perf_counter()
    arrays = [np.asarray(s if isinstance(s, np.ndarray) else _as_list(s), dtype=np.int64) for s in sequences]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    dtype = np.int32 if items.size == 0 or (items.max() < 2**31 and len(arrays) < 2**31) else np.int64
    seq_id = np.repeat(np.arange(len(arrays), dtype=dtype), lengths)
    pos = np.arange(len(items), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    remaining = np.repeat(lengths, lengths) - pos - 1  # items after each position in its sequence
    items = items.astype(dtype)
    top = max_span if max_length is None else min(max_length, max_span)
    patterns: list[Pattern] = []
    n_candidates = 0
    for length in range(max(min_length, 1), top + 1):
        blocks = []
        for offs in combinations(range(1, max_span), length - 1):
            first = np.flatnonzero(remaining >= (offs[-1] if offs else 0))
            cols = [seq_id[first], items[first]] + [items[first + o] for o in offs]
            blocks.append(np.stack(cols, axis=1))
        if not blocks:
            continue
        per_seq, _ = _unique_rows(np.concatenate(blocks))
        cand, support = _unique_rows(per_seq[:, 1:])
        n_candidates += len(cand)
        keep = cand[support >= min_frequency]
        patterns.extend(map(tuple, keep.tolist()))  # rows in lexicographic byte order
    patterns.sort(key=lambda p: (len(p), p))
    logger.info(
        "mined %d patterns (max_span=%d, min_frequency=%d) from %d candidates in %.1fs",
        len(patterns), max_span, min_frequency, n_candidates, time.perf_counter() - start,
    )
    return patterns


def is_ordered_sublist(pattern: Sequence[int], positions: dict[int, list[int]]) -> bool:
    """Whether ``pattern`` is an ordered sub-list (gaps allowed, no span limit) of a sequence.

    ``positions`` maps each item of the sequence to its sorted positions. Greedy earliest
    matching, like DR4SR's ``is_sublist``.
    """
    cur = -1
    for item in pattern:
        pos = positions.get(item)
        if pos is None:
            return False
        k = bisect.bisect_right(pos, cur)
        if k == len(pos):
            return False
        cur = pos[k]
    return True


def _positions(items: list[int]) -> dict[int, list[int]]:
    """Item -> sorted positions in ``items``."""
    out: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        out.setdefault(item, []).append(i)
    return out


def _lazy_shuffle(values: np.ndarray, rng: np.random.Generator, chunk: int = 64):
    """Yield ``values`` in a uniformly random order, shuffling only as far as it is consumed.

    A forward Fisher-Yates shuffle run in chunks of growing size (the swap targets of a chunk
    are drawn in one call): a consumer that stops after a few hits never pays for shuffling a
    long candidate list.
    """
    values = np.array(values, copy=True)
    n, t = len(values), 0
    while t < n:
        m = min(chunk, n - t)
        targets = rng.integers(np.arange(t, t + m), n).tolist()
        for i, j in zip(range(t, t + m), targets):
            values[i], values[j] = values[j], values[i]
            yield int(values[i])
        t += m
        chunk *= 2


def pattern_pairs(
    train_sequences: Sequence[Sequence[int]],
    patterns: Sequence[Pattern],
    max_pairs: int = 10,
    seed: int | np.random.Generator = 0,
    max_span: int | None = None,
) -> tuple[np.ndarray, list[Pattern]]:
    """DR4SR's (sequence -> pattern) pairs: up to ``max_pairs`` contained patterns per sequence.

    DR4SR shuffles the whole pattern list for each sequence and keeps the first ``max_pairs``
    that are ordered sub-lists of it: a uniformly random ordered selection of the contained
    patterns. This draws the same distribution with a seeded ``np.random.Generator``:

    - ``max_span=None`` (default), DR4SR's own check (``is_sublist``: in order, anywhere in
      the sequence, no span limit): only the patterns whose first item occurs in the sequence
      are candidates (index by first item), visited in random order until ``max_pairs`` hits;
    - ``max_span=k``: the pattern must also fit in ``k`` consecutive positions (the mining
      constraint); the contained patterns are then exactly the sequence's windowed
      subsequences that were mined, and ``max_pairs`` of them are drawn.

    Returns (source_index int64[P]: index into ``train_sequences`` of each pair's source,
    list of P pattern tuples), grouped by source in increasing source order.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    patterns = [p if isinstance(p, tuple) else tuple(_as_list(p)) for p in patterns]
    firsts = np.array([p[0] for p in patterns], dtype=np.int64)
    order = np.argsort(firsts, kind="stable")
    heads, starts = np.unique(firsts[order], return_index=True)
    by_first = dict(zip(heads.tolist(), np.split(order, starts[1:]))) if len(order) else {}
    pattern_id = {p: k for k, p in enumerate(patterns)} if max_span is not None else {}
    src_out: list[int] = []
    pat_out: list[Pattern] = []
    for s, seq in enumerate(train_sequences):
        items = _as_list(seq)
        if max_span is not None:
            # contained patterns = the sequence's windowed subsequences that were mined
            subs = windowed_subsequences(items, max_span, min_length=1)
            found = sorted(pattern_id[p] for p in subs if p in pattern_id)
            hits = [found[j] for j in rng.permutation(len(found))[:max_pairs].tolist()]
        else:
            pos = _positions(items)
            blocks = [by_first[i] for i in sorted(pos) if i in by_first]
            candidates = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
            hits = []
            for k in _lazy_shuffle(candidates, rng):
                if is_ordered_sublist(patterns[k], pos):
                    hits.append(k)
                    if len(hits) == max_pairs:
                        break
        src_out.extend([s] * len(hits))
        pat_out.extend(patterns[k] for k in hits)
    return np.asarray(src_out, dtype=np.int64), pat_out


def pattern_training_rows(
    patterns: Sequence[Pattern], max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patterns as extra next-item training rows: input ``p[:-1]``, target ``p[1:]``.

    Returns (input int64[P, max_len], target int64[P, max_len], length int64[P]), right-padded
    with 0 like ``SplitData.train_input/train_target/train_len``. Rows longer than ``max_len``
    keep their last ``max_len`` steps (DR4SR's ``truncate_or_pad``); patterns of fewer than two
    items give no transition and are skipped.
    """
    kept = [_as_list(p) for p in patterns if len(p) >= 2]
    n = len(kept)
    item_seq = np.zeros((n, max_len), dtype=np.int64)
    target = np.zeros((n, max_len), dtype=np.int64)
    seq_len = np.zeros(n, dtype=np.int64)
    for r, p in enumerate(kept):
        steps = min(len(p) - 1, max_len)
        item_seq[r, :steps] = p[-steps - 1 : -1]
        target[r, :steps] = p[-steps:]
        seq_len[r] = steps
    return item_seq, target, seq_len
