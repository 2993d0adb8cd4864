"""Leave-one-out split: hand-checked pieces, truncation and history matrices."""

import numpy as np
import pytest

from rasr_lib.data import SeqDataset, leave_one_out


def make_dataset(seqs, n_items):
    """A SeqDataset from a list of item lists."""
    return SeqDataset.from_lists(seqs, n_items)


def test_leave_one_out_pieces():
    ds = make_dataset([[1, 2, 3, 4, 5], [6, 7, 8]], n_items=8)
    split = leave_one_out(ds, max_len=4)
    # user 0: train 1 2 3 (inputs 1 2, targets 2 3), valid 1 2 3 -> 4, test 1 2 3 4 -> 5
    assert split.train_input[0].tolist() == [1, 2, 0, 0]
    assert split.train_target[0].tolist() == [2, 3, 0, 0]
    assert split.train_len.tolist() == [2, 0]
    assert split.valid_input[0].tolist() == [1, 2, 3, 0]
    assert split.valid_target.tolist() == [4, 7]
    assert split.test_input[0].tolist() == [1, 2, 3, 4]
    assert split.test_target.tolist() == [5, 8]
    assert split.test_input[1].tolist() == [6, 7, 0, 0]
    assert split.test_len.tolist() == [4, 2]


def test_truncation_keeps_last_items():
    ds = make_dataset([list(range(1, 11))], n_items=10)
    split = leave_one_out(ds, max_len=3)
    assert split.test_input[0].tolist() == [7, 8, 9]
    assert split.valid_input[0].tolist() == [6, 7, 8]
    assert split.train_input[0].tolist() == [5, 6, 7]
    assert split.train_target[0].tolist() == [6, 7, 8]


def test_history_matrix_excludes_target():
    ds = make_dataset([[1, 2, 3, 4, 5], [6, 7, 8]], n_items=8)
    split = leave_one_out(ds, max_len=50)
    valid = split.history_matrix("valid").toarray()
    test = split.history_matrix("test").toarray()
    assert np.flatnonzero(valid[0]).tolist() == [1, 2, 3]
    assert np.flatnonzero(test[0]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(test[1]).tolist() == [6, 7]


def test_too_short_user_is_a_clear_error():
    ds = make_dataset([[1, 2]], n_items=2)
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out(ds)
