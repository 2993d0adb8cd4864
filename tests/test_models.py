"""Backbones: shapes, causality, padding, and that they learn on a real slice."""

import math

import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
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


def chance_ndcg10(n_items):
    """Expected NDCG@10 of a uniformly random ranking of ``n_items`` candidates."""
    return sum(1 / math.log2(r + 1) for r in range(1, 11)) / n_items


def train_slice(split, name, loss, epochs):
    """Train a quick-profile backbone on ``split``; return its TrainResult."""
    cfg = load_config("beauty", "quick", {"train.loss": loss, "train.epochs": epochs,
                                           "train.patience": epochs}, model=name)
    generator = set_seed(0)
    model = build_model(cfg, split.n_items)
    return fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)


# On a 1,500-user slice, most-popular is a strong scorer (N@10 .0174) that a few CPU epochs do
# not beat (SASRec/CE peaks at .0177 after 4); the full runs in results/ compare with it on
# full data. Here: the loss falls every epoch and the ranking is far above chance.
# BCE (one negative per position) learns more slowly: measured 7x chance after 3 epochs.
@pytest.mark.parametrize("name,loss,times_chance", [("sasrec", "ce", 10), ("gru4rec", "ce", 10),
                                                    ("sasrec", "bce", 5)])
def test_loss_falls_and_ranking_beats_chance(beauty_slice, name, loss, times_chance):
    result = train_slice(beauty_slice, name, loss, epochs=3)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    assert result.best_valid["ndcg@10"] > times_chance * chance_ndcg10(beauty_slice.n_items)


def test_popularity_scores_training_counts(beauty_slice):
    from rasr_lib.models.pop import Popularity

    pop = Popularity.from_split(beauty_slice)
    seq = torch.from_numpy(beauty_slice.valid_input[:4])
    scores = pop.full_sort_predict(seq, torch.from_numpy(beauty_slice.valid_len[:4]))
    assert scores.shape == (4, beauty_slice.n_items + 1)
    assert scores[0, 0] == 0
    # every training interaction is counted once: the first item of each row plus all targets
    assert float(pop.counts.sum()) == float((beauty_slice.train_target > 0).sum() + (beauty_slice.train_len > 0).sum())


def test_training_batches_carry_the_owning_user(beauty_slice):
    from rasr_lib.training import iterate_train_batches

    batch = next(iterate_train_batches(beauty_slice, 32, torch.Generator().manual_seed(0), False,
                                       torch.device("cpu")))
    users = batch["user"]
    assert users.shape == (batch["item_seq"].size(0),)
    expected = torch.from_numpy(beauty_slice.train_input[users.numpy(), : batch["item_seq"].size(1)])
    assert torch.equal(batch["item_seq"], expected)


def test_zoo_table_lists_every_cli_model_with_its_class():
    from rasr_lib.config import MODEL_DEFAULTS
    from rasr_lib.models import zoo_table

    table = zoo_table()
    assert table["model"].tolist() == list(MODEL_DEFAULTS)
    assert table["about"].str.len().gt(20).all()
    assert set(table["loss"]) <= {"bce", "ce"}
    assert table.set_index("model").loc["bert4rec", "loss"] == "ce"
