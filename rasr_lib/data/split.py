"""Leave-one-out split and the padded arrays that training and evaluation consume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rasr_lib.data.schema import SeqDataset


def last_items_padded(
    items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64[n, max_len] matrix of the last ``max_len`` items of each slice, plus lengths."""
    ends = np.asarray(ends, dtype=np.int64)
    starts = np.maximum(np.asarray(starts, dtype=np.int64), ends - max_len)
    lengths = np.clip(ends - starts, 0, None)
    cols = np.arange(max_len, dtype=np.int64)
    valid = cols[None, :] < lengths[:, None]
    index = np.where(valid, starts[:, None] + cols[None, :], 0)
    out = np.where(valid, items[index], 0)
    return out.astype(np.int64), lengths


@dataclass(frozen=True)
class SplitData:
    """Leave-one-out split of a :class:`SeqDataset` (RaSR/DR4SR protocol).

    Per user with sequence ``s``: training sequence ``s[:-2]`` (inputs ``s[:-3]``, targets
    ``s[1:-2]``, every position supervised), validation history ``s[:-2]`` with target ``s[-2]``,
    test history ``s[:-1]`` with target ``s[-1]``. Histories keep their last ``max_len`` items.
    All arrays are right-padded with ``0``.
    """

    dataset: SeqDataset
    max_len: int
    train_input: np.ndarray  # int64[n_train, max_len]
    train_target: np.ndarray  # int64[n_train, max_len], 0 where no target
    train_len: np.ndarray  # int64[n_train]
    train_user: np.ndarray  # int64[n_train]: row of the owning user (-1 for synthetic rows)
    valid_input: np.ndarray  # int64[n_users, max_len]
    valid_len: np.ndarray  # int64[n_users]
    valid_target: np.ndarray  # int64[n_users]
    test_input: np.ndarray  # int64[n_users, max_len]
    test_len: np.ndarray  # int64[n_users]
    test_target: np.ndarray  # int64[n_users]

    @property
    def n_items(self) -> int:
        """Catalogue size (ids 1..n_items)."""
        return self.dataset.n_items

    @property
    def n_users(self) -> int:
        """Number of users evaluated."""
        return self.dataset.n_users

    def history_matrix(self, part: str) -> sp.csr_matrix:
        """CSR bool[n_users, n_items + 1]: items each user saw before the ``part`` target."""
        ds = self.dataset
        cut = 2 if part == "valid" else 1
        lengths = np.maximum(ds.lengths - cut, 0)
        position = np.arange(ds.n_interactions) - np.repeat(ds.offsets[:-1], ds.lengths)
        keep = position < np.repeat(lengths, ds.lengths)
        rows = np.repeat(np.arange(ds.n_users), ds.lengths)[keep]
        data = np.ones(len(rows), dtype=bool)
        shape = (ds.n_users, ds.n_items + 1)
        mat = sp.csr_matrix((data, (rows, ds.items[keep])), shape=shape)
        mat.sum_duplicates()
        return mat

    def eval_arrays(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input int64[n_users, max_len], length int64[n_users], target int64[n_users]) of a part."""
        if part == "valid":
            return self.valid_input, self.valid_len, self.valid_target
        if part == "test":
            return self.test_input, self.test_len, self.test_target
        raise ValueError(f"unknown evaluation part {part!r}; expected 'valid' or 'test'")


def leave_one_out(dataset: SeqDataset, max_len: int = 50) -> SplitData:
    """Split every user leave-one-out; users need at least 3 interactions (2 for evaluation)."""
    lengths = dataset.lengths
    if dataset.n_users and lengths.min() < 3:
        bad = int(np.argmin(lengths))
        raise ValueError(
            f"{dataset.name}: user row {bad} has {lengths[bad]} interactions; "
            "leave-one-out needs at least 3"
        )
    starts, ends = dataset.offsets[:-1], dataset.offsets[1:]
    items = dataset.items
    train_input, train_len = last_items_padded(items, starts, ends - 3, max_len)
    train_target, _ = last_items_padded(items, starts + 1, ends - 2, max_len)
    valid_input, valid_len = last_items_padded(items, starts, ends - 2, max_len)
    test_input, test_len = last_items_padded(items, starts, ends - 1, max_len)
    return SplitData(
        dataset=dataset,
        max_len=max_len,
        train_input=train_input,
        train_target=train_target,
        train_len=train_len,
        train_user=np.arange(dataset.n_users, dtype=np.int64),
        valid_input=valid_input,
        valid_len=valid_len,
        valid_target=items[ends - 2].astype(np.int64),
        test_input=test_input,
        test_len=test_len,
        test_target=items[ends - 1].astype(np.int64),
    )
