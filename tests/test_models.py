"""Backbones: shapes, causality, padding, and that they learn on a real slice."""

import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit

MODELS = ["sasrec", "gru4rec"]


def tiny(name, **extra):
    """A small model over 30 items in eval mode (dropout off)."""
    cfg = load_config("beauty", "quick", {"model.hidden_dim": 16, "train.loss": extra.pop("loss", "bce"), **extra},
                      model=name)
    set_seed(0)
    return build_model(cfg, n_items=30).eval()


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name):
    model = tiny(name)
    seq = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    seq_len = torch.tensor([3, 2])
    assert model(seq, seq_len).shape == (2, 4, 16)
    assert model.full_sort_predict(seq, seq_len).shape == (2, 31)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("layer_norm", ["post", "pre"])
def test_causal(name, layer_norm):
    model = tiny(name, **{"model.layer_norm": layer_norm})
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[1, 2, 3, 9, 7]])
    n = torch.tensor([5])
    out_a, out_b = model(a, n), model(b, n)
    torch.testing.assert_close(out_a[:, :3], out_b[:, :3])
    assert not torch.allclose(out_a[:, 3:], out_b[:, 3:])


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_prediction(name):
    model = tiny(name)
    short = model.full_sort_predict(torch.tensor([[3, 4, 5]]), torch.tensor([3]))
    padded = model.full_sort_predict(torch.tensor([[3, 4, 5, 0, 0, 0]]), torch.tensor([3]))
    torch.testing.assert_close(short, padded)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_loss_is_finite_and_differentiable(loss):
    model = tiny("sasrec", loss=loss).train()
    batch = {
        "item_seq": torch.tensor([[1, 2, 3], [4, 5, 0]]),
        "target": torch.tensor([[2, 3, 6], [5, 7, 0]]),
        "seq_len": torch.tensor([3, 2]),
        "negative": torch.tensor([[9, 9, 9], [9, 9, 9]]),
    }
    value = model.calculate_loss(batch)
    value.backward()
    assert torch.isfinite(value)
    assert model.item_embedding.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def beauty_slice():
    """Leave-one-out split of the first 1,500 Beauty users (a real slice)."""
    return leave_one_out(load_dataset("beauty", max_users=1500), max_len=50)


def popularity_ndcg(split):
    """Validation NDCG@10 of a most-popular-in-training scorer (a floor every model must beat)."""
    counts = torch.bincount(torch.from_numpy(split.train_target[split.train_target > 0]),
                            minlength=split.n_items + 1).float()

    class Popularity(torch.nn.Module):
        def full_sort_predict(self, item_seq, seq_len):
            return counts.expand(len(item_seq), -1)

    return evaluate(Popularity(), split, "valid")["ndcg@10"]


def train_slice(split, name, loss, epochs):
    """Train a quick-profile backbone on ``split``; return its TrainResult."""
    cfg = load_config("beauty", "quick", {"train.loss": loss, "train.epochs": epochs,
                                           "train.patience": epochs}, model=name)
    generator = set_seed(0)
    model = build_model(cfg, split.n_items)
    return fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_learns_beyond_popularity_with_ce(beauty_slice, name):
    result = train_slice(beauty_slice, name, "ce", epochs=6)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_valid["ndcg@10"] > popularity_ndcg(beauty_slice)


def test_bce_loss_falls_and_ranking_improves(beauty_slice):
    # BCE with one negative converges slowly (tens of epochs on full data): over a few epochs
    # on a slice we ask for a falling loss and a validation NDCG far above chance.
    result = train_slice(beauty_slice, "sasrec", "bce", epochs=4)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    chance = 10 / beauty_slice.n_items
    assert result.best_valid["recall@10"] > 3 * chance
