"""Most-popular: the non-personalised reference every learned model must beat."""

from __future__ import annotations

import numpy as np
import torch

from rasr_lib.data.split import SplitData
from rasr_lib.models.base import SequentialRecommender


class Popularity(SequentialRecommender):
    """Scores every item by its number of occurrences in the training rows (inputs and targets)."""

    def __init__(self, counts: np.ndarray):
        super().__init__(len(counts) - 1, hidden_dim=1)
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.float32))

    @classmethod
    def from_split(cls, split: SplitData) -> Popularity:
        """Count each item over ``split``'s training inputs plus their final targets."""
        counts = np.bincount(split.train_input.ravel(), minlength=split.n_items + 1).astype(np.float64)
        rows = np.flatnonzero(split.train_len > 0)
        last = split.train_target[rows, split.train_len[rows] - 1]
        counts += np.bincount(last, minlength=split.n_items + 1)
        counts[0] = 0
        return cls(counts)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Training counts FloatTensor[B, n_items + 1], the same for every row."""
        return self.counts.to(item_seq.device).expand(item_seq.size(0), -1)
