"""BPR-MF: user-dependent scores, synthetic rows ignored, and that it learns on a real Beauty slice."""

import math

import numpy as np
import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.models import build_model
from rasr_lib.models.bpr import BPRMF
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit


def tiny(loss="bce"):
    """BPR-MF over 30 items and 4 users, d = 16."""
    set_seed(0)
    return BPRMF(n_items=30, n_users=4, hidden_dim=16, loss=loss)


def batch(users):
    """Two training rows owned by ``users`` (LongTensor[2]) with one negative per position."""
    return {
        "item_seq": torch.tensor([[1, 2, 3], [4, 5, 0]]),
        "target": torch.tensor([[2, 3, 6], [5, 7, 0]]),
        "seq_len": torch.tensor([3, 2]),
        "user": torch.tensor(users),
        "negative": torch.tensor([[9, 10, 11], [12, 13, 0]]),
    }


def test_shapes_and_scores_depend_on_the_user():
    model = tiny().eval()
    seq, seq_len = torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.tensor([3, 3])
    assert model(seq, seq_len).shape == (2, 3, 16)
    scores = model.full_sort_predict(seq, seq_len, user=torch.tensor([0, 1]))
    assert scores.shape == (2, 31)
    # same sequence, different users -> different scores; the sequence itself plays no part
    assert not torch.allclose(scores[0], scores[1])
    other = model.full_sort_predict(torch.tensor([[7, 8, 0]]), torch.tensor([2]), user=torch.tensor([0]))
    torch.testing.assert_close(other[0], scores[0])
    with pytest.raises(ValueError):
        model.full_sort_predict(seq, seq_len)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_loss_is_finite_and_reaches_only_the_batch_users(loss):
    model = tiny(loss).train()
    value = model.calculate_loss(batch([0, 2]))
    value.backward()
    assert torch.isfinite(value)
    grad = model.user_embedding.weight.grad.abs().sum(1)
    assert grad[0] > 0 and grad[2] > 0 and grad[1] == 0 and grad[3] == 0


def test_synthetic_rows_are_ignored():
    model = tiny().train()
    torch.manual_seed(1)
    only_real = model.calculate_loss({k: v[:1] for k, v in batch([1, -1]).items()})
    torch.manual_seed(1)
    mixed = model.calculate_loss(batch([1, -1]))  # row 2 is synthetic: same loss as row 1 alone
    torch.testing.assert_close(mixed, only_real)
    model.zero_grad()
    value = model.calculate_loss(batch([-1, -1]))
    value.backward()
    assert float(value.detach()) == 0.0
    assert model.item_embedding.weight.grad.abs().sum() == 0


def test_build_needs_the_split():
    cfg = load_config("beauty", "quick", model="bpr")
    with pytest.raises(ValueError):
        build_model(cfg, n_items=30)


def test_loss_falls_and_ranking_beats_chance():
    # 1,500 Beauty users (7,211 items); 10 epochs (~20 s), lr 1e-2 and L2 1e-4 so MF moves in
    # 60 steps. Measured: N@10 .0128 (20x chance). Most-popular (.018 here) is not reached on
    # this slice in a test's budget; the full-data runs compare with it.
    split = leave_one_out(load_dataset("beauty", max_users=1500), max_len=50)
    cfg = load_config("beauty", "quick", {"train.epochs": 10, "train.patience": 10, "train.lr": 1e-2,
                                           "train.weight_decay": 1e-4}, model="bpr")
    generator = set_seed(0)
    model = build_model(cfg, split.n_items, split=split)
    result = fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    chance = sum(1 / math.log2(r + 1) for r in range(1, 11)) / split.n_items
    assert result.best_valid["ndcg@10"] > 10 * chance
    assert np.isfinite(losses).all()
