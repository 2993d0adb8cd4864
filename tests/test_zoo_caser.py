"""Caser: shapes, the L-item window, the user table, and that it learns on a real slice."""

import math
from types import SimpleNamespace

import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.models.caser import Caser
from rasr_lib.models.pop import Popularity
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit


def tiny(loss="bce", n_users=4, **extra):
    """A small Caser (d = 8, L = 3) over 30 items and ``n_users`` users, in eval mode."""
    cfg = load_config("beauty", "quick", {"model.hidden_dim": 8, "caser.L": 3, "train.loss": loss, **extra},
                      model="caser")
    set_seed(0)
    return build_model(cfg, n_items=30, split=SimpleNamespace(n_users=n_users)).eval()


def test_build_needs_the_split():
    cfg = load_config("beauty", "quick", model="caser")
    with pytest.raises(ValueError, match="split"):
        build_model(cfg, n_items=30)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_shapes_and_finite_loss_with_gradients(loss):
    model = tiny(loss)
    assert isinstance(model, Caser) and model.needs_user
    seq, seq_len, user = torch.tensor([[1, 2, 3, 4], [4, 5, 0, 0]]), torch.tensor([4, 2]), torch.tensor([0, 1])
    assert model(seq, seq_len, user).shape == (2, 4, 16)  # [z ; P_u]: 2d
    assert model.full_sort_predict(seq, seq_len, user=user).shape == (2, 31)
    model.train()
    batch = {"item_seq": seq, "target": torch.tensor([[2, 3, 4, 6], [5, 7, 0, 0]]), "seq_len": seq_len,
             "user": torch.tensor([0, -1]), "negative": torch.full((2, 4), 9)}
    value = model.calculate_loss(batch)
    value.backward()
    assert torch.isfinite(value)
    for param in (model.item_embedding.weight, model.user_embedding.weight, model.W2.weight,
                  model.conv_v.weight, model.conv_h[2].weight, model.fc1.weight):
        assert param.grad.abs().sum() > 0
    if loss == "bce":
        assert model.b2.weight.grad.abs().sum() > 0
    # the synthetic row (user -1) trains the shared unknown-user row, no real user's row
    assert model.user_embedding.weight.grad[-1].abs().sum() > 0
    assert model.user_embedding.weight.grad[1:-1].abs().sum() == 0


def test_each_position_sees_only_its_last_L_items():
    model = tiny()  # L = 3
    user, n = torch.tensor([2]), torch.tensor([6])
    a = model(torch.tensor([[1, 2, 3, 4, 5, 6]]), n, user)
    later = model(torch.tensor([[1, 2, 3, 4, 9, 9]]), n, user)  # change positions 4, 5
    torch.testing.assert_close(a[:, :4], later[:, :4])
    assert not torch.allclose(a[:, 4:], later[:, 4:])
    older = model(torch.tensor([[7, 2, 3, 4, 5, 6]]), n, user)  # position 0 is outside windows 3..5
    torch.testing.assert_close(a[:, 3:], older[:, 3:])
    assert not torch.allclose(a[:, :3], older[:, :3])


def test_prediction_uses_the_last_L_items_left_padded():
    model = tiny()
    user = torch.tensor([1, 1])
    seq, n = torch.tensor([[1, 2, 3, 4, 5], [4, 5, 0, 0, 0]]), torch.tensor([5, 2])
    assert torch.equal(model.last_windows(seq, n), torch.tensor([[3, 4, 5], [0, 4, 5]]))
    states = model(seq, n, user)
    torch.testing.assert_close(model.last_state(seq, n, user), states[torch.arange(2), n - 1])
    scores = model.full_sort_predict(seq, n, user=user)
    expected = states[torch.arange(2), n - 1] @ model.W2.weight.T + model.b2.weight.T
    torch.testing.assert_close(scores, expected)


def test_user_table_and_unknown_user():
    model = tiny(n_users=4)
    seq, n = torch.tensor([[1, 2, 3]] * 4), torch.tensor([3] * 4)
    scores = model.full_sort_predict(seq, n, user=torch.tensor([0, 1, -1, 99]))
    assert not torch.allclose(scores[0], scores[1])  # users have their own P_u
    torch.testing.assert_close(scores[2], scores[3])  # -1 and unknown rows share one vector
    torch.testing.assert_close(model.full_sort_predict(seq[:1], n[:1]), scores[2:3])  # no user given
    assert model.user_embedding.num_embeddings == 5


@pytest.fixture(scope="module")
def beauty_slice():
    """Leave-one-out split of the first 3,000 Beauty users (most-popular N@10 is .013 here)."""
    return leave_one_out(load_dataset("beauty", max_users=3000), max_len=50)


def test_learns_to_popularity_level(beauty_slice):
    """BCE (the paper's loss, 3 negatives), 3 epochs at lr 3e-3: the loss falls every epoch,
    the ranking is far above chance, and validation N@10 reaches most-popular's level.

    Caser does NOT clearly beat most-popular on Beauty slices in a few epochs: measured best
    N@10 .0128-.0137 against popularity's .0130 (3,000 users; BCE or CE, lr 1e-3..5e-3, up to
    8 epochs, with or without the user table), and the same picture on 6,000 users (.0098 vs
    .0090). Its published full-Beauty level (N@10 ~.018 vs popularity ~.008) needs full data and
    many epochs, so this test asks for >= 90 % of popularity, not more.
    """
    cfg = load_config("beauty", "quick", {"train.loss": "bce", "train.epochs": 3, "train.patience": 3,
                                          "train.lr": 3e-3}, model="caser")
    generator = set_seed(0)
    model = build_model(cfg, beauty_slice.n_items, split=beauty_slice)
    result = fit(model, beauty_slice, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    chance = sum(1 / math.log2(r + 1) for r in range(1, 11)) / beauty_slice.n_items
    assert result.best_valid["ndcg@10"] > 10 * chance
    pop = evaluate(Popularity.from_split(beauty_slice), beauty_slice, "valid", cfg.eval)["ndcg@10"]
    assert result.best_valid["ndcg@10"] >= 0.9 * pop
