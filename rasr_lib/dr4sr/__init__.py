"""DR4SR, the baseline RaSR compares with: pattern mining, pre-training pairs, regeneration."""

from rasr_lib.dr4sr.patterns import (
    count_patterns,
    is_ordered_sublist,
    mine_patterns,
    pattern_pairs,
    pattern_training_rows,
    training_sequences,
    windowed_subsequences,
)

__all__ = [
    "count_patterns",
    "is_ordered_sublist",
    "mine_patterns",
    "pattern_pairs",
    "pattern_training_rows",
    "training_sequences",
    "windowed_subsequences",
]
