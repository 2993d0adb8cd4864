"""DSSRec: shapes, causality, the intention head, a finite differentiable seq2seq term, learning on a slice."""

import math

import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.models import build_model
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit


def tiny(**extra):
    """A small DSSRec over 30 items (K = 4 intentions) in eval mode."""
    cfg = load_config("beauty", "quick", {"model.hidden_dim": 16, **extra}, model="dssrec")
    set_seed(0)
    return build_model(cfg, n_items=30).eval()


BATCH = {
    "item_seq": torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0], [7, 8, 9, 0]]),
    "target": torch.tensor([[2, 3, 4, 10], [6, 11, 0, 0], [8, 9, 12, 0]]),
    "seq_len": torch.tensor([4, 2, 3]),
    "user": torch.tensor([0, 1, 2]),
}


def test_shapes():
    model = tiny()
    seq, n = BATCH["item_seq"], BATCH["seq_len"]
    states = model(seq, n)
    assert states.shape == (3, 4, 16)
    assert model.full_sort_predict(seq, n).shape == (3, 31)
    assert model.intentions(states, n, future=False).shape == (3, 4, 16)


def test_causal():
    model = tiny()
    a, b, n = torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[1, 2, 3, 9, 7]]), torch.tensor([5])
    torch.testing.assert_close(model(a, n)[:, :3], model(b, n)[:, :3])
    assert not torch.allclose(model(a, n)[:, 3:], model(b, n)[:, 3:])


def test_intentions_ignore_padding():
    model = tiny()
    seq, n = torch.tensor([[3, 4, 5]]), torch.tensor([3])
    padded = torch.tensor([[3, 4, 5, 0, 0, 0]])
    short = model.intentions(model(seq, n), n, future=False)
    longer = model.intentions(model(padded, n), n, future=False)
    torch.testing.assert_close(short, longer)


@pytest.mark.parametrize("select", ["quantile", "best"])
def test_seq2seq_term_is_finite_and_differentiable(select):
    model = tiny(**{"dssrec.select": select}).train()
    torch.manual_seed(0)
    term = model.seq2seq_loss(BATCH)
    assert term.dim() == 0 and torch.isfinite(term) and term > 0
    term.backward()
    for p in (model.prototypes, model.beta_prefix, model.beta_future, model.item_embedding.weight,
              model.key_map.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # The training loss is next-item + ss_weight (1) * seq2seq; evaluation mode leaves the term out.
    from rasr_lib.models.base import SequentialRecommender

    with torch.no_grad():
        torch.manual_seed(1)
        expected = SequentialRecommender.calculate_loss(model, BATCH) + model.seq2seq_loss(BATCH)
        torch.manual_seed(1)
        torch.testing.assert_close(model.calculate_loss(BATCH), expected)
        model.eval()
        torch.testing.assert_close(model.calculate_loss(BATCH), SequentialRecommender.calculate_loss(model, BATCH))


def chance_ndcg10(n_items):
    """Expected NDCG@10 of a uniformly random ranking of ``n_items`` candidates."""
    return sum(1 / math.log2(r + 1) for r in range(1, 11)) / n_items


def test_learns_on_a_real_slice():
    from rasr_lib.evaluation import evaluate
    from rasr_lib.models.pop import Popularity

    split = leave_one_out(load_dataset("beauty", max_users=1500), 50)
    cfg = load_config("beauty", "quick", {"train.epochs": 3, "train.patience": 3, "train.batch_size": 128,
                                           "train.lr": 2e-3}, model="dssrec")
    generator = set_seed(0)
    model = build_model(cfg, split.n_items, split=split)
    result = fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    best = result.best_valid["ndcg@10"]
    # Most-popular (N@10 .018 on this slice) is not beaten in 3 CPU epochs (measured .0147; the
    # seq2seq term slows the start on so little data): far above chance, most of the way to popularity.
    pop = evaluate(Popularity.from_split(split), split, "valid", cfg.eval)["ndcg@10"]
    assert best > 10 * chance_ndcg10(split.n_items)
    assert best > 0.5 * pop
