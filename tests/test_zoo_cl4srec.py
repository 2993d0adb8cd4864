"""CL4SRec: the three augmentations, the contrastive term, SASRec's causality, and that it learns."""

import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.models.base import SequentialRecommender
from rasr_lib.models.cl4srec import augment, info_nce, item_crop, item_mask, item_reorder
from rasr_lib.models.pop import Popularity
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit

N_ITEMS = 30
MASK = N_ITEMS + 1


def tiny(**extra):
    """A small CL4SRec over 30 items in eval mode (dropout off)."""
    cfg = load_config("beauty", "quick", {"model.hidden_dim": 16, **extra}, model="cl4srec")
    set_seed(0)
    return build_model(cfg, n_items=N_ITEMS).eval()


def random_batch(rows=64, width=12, seed=0):
    """Right-padded rows of random items 1..N_ITEMS with lengths 1..width: (LongTensor[B, L], [B])."""
    g = torch.Generator().manual_seed(seed)
    seq_len = torch.randint(1, width + 1, (rows,), generator=g)
    seq = torch.randint(1, N_ITEMS + 1, (rows, width), generator=g)
    seq[torch.arange(width)[None] >= seq_len[:, None]] = 0
    return seq, seq_len


def check_padding(view, length):
    """Real positions hold an item or [mask]; everything after ``length`` is padding."""
    real = torch.arange(view.size(1))[None] < length[:, None]
    assert (view[~real] == 0).all()
    assert ((view[real] >= 1) & (view[real] <= MASK)).all()


def test_crop_keeps_a_continuous_run():
    seq, n = random_batch()
    view, length = item_crop(seq, n, 0.2)
    assert torch.equal(length, (n * 0.2).floor().long().clamp(min=1))
    check_padding(view, length)
    for row in range(len(n)):  # test-side loop: compare with the original row
        run = view[row, : length[row]].tolist()
        original = seq[row, : n[row]].tolist()
        assert any(original[s : s + len(run)] == run for s in range(n[row] - len(run) + 1))


def test_mask_replaces_gamma_share_and_keeps_the_rest():
    seq, n = random_batch()
    view = item_mask(seq, n, 0.7, MASK)
    check_padding(view, n)
    masked = view == MASK
    assert torch.equal(masked.sum(1), (n * 0.7).floor().long())
    assert torch.equal(view[~masked], seq[~masked])


def test_reorder_permutes_only_a_window():
    seq, n = random_batch()
    view = item_reorder(seq, n, 0.5)
    check_padding(view, n)
    assert torch.equal(view.sort(1).values, seq.sort(1).values)  # same multiset per row
    changed = (view != seq).sum(1)
    assert (changed <= (n * 0.5).floor().long()).all()  # at most the window moves
    assert changed.sum() > 0


def test_augment_lengths_ids_and_all_three_operators():
    seq, n = random_batch(rows=200)
    torch.manual_seed(1)
    view, length = augment(seq, n, 0.2, 0.7, 0.2, MASK)
    assert ((length >= 1) & (length <= n)).all()
    check_padding(view, length)
    assert (length < n).any()  # some rows cropped
    assert (view == MASK).any()  # some rows masked


def test_augment_is_deterministic_under_the_global_seed():
    seq, n = random_batch()
    torch.manual_seed(5)
    a = augment(seq, n, 0.2, 0.7, 0.2, MASK)
    torch.manual_seed(5)
    b = augment(seq, n, 0.2, 0.7, 0.2, MASK)
    torch.manual_seed(6)
    c = augment(seq, n, 0.2, 0.7, 0.2, MASK)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_info_nce_matches_the_pairwise_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    z = torch.cat([z1, z2])
    expected = 0.0
    for i in range(8):  # test-side reference: anchor i, positive its pair, 2B - 2 negatives
        j = (i + 4) % 8
        others = [k for k in range(8) if k != i]
        expected += -(z[i] @ z[j]) + torch.logsumexp(torch.stack([z[i] @ z[k] for k in others]), 0)
    torch.testing.assert_close(info_nce(z1, z2, 1.0), expected / 8)


def test_shapes_and_mask_item_never_scores():
    model = tiny()
    seq, n = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]), torch.tensor([3, 2])
    assert model(seq, n).shape == (2, 4, 16)
    assert model.full_sort_predict(seq, n).shape == (2, N_ITEMS + 1)
    assert model.item_embedding.weight.shape == (N_ITEMS + 2, 16)


def test_causal():
    model = tiny()
    a, b, n = torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[1, 2, 3, 9, MASK]]), torch.tensor([5])
    out_a, out_b = model(a, n), model(b, n)
    torch.testing.assert_close(out_a[:, :3], out_b[:, :3])
    assert not torch.allclose(out_a[:, 3:], out_b[:, 3:])


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_contrastive_term_is_positive_and_differentiable(pooling):
    model = tiny(**{"cl4srec.pooling": pooling}).train()
    seq, n = random_batch(rows=16, seed=2)
    torch.manual_seed(0)
    cl = model.contrastive_loss(seq, n)
    assert torch.isfinite(cl) and cl > 0
    cl.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_loss_adds_the_weighted_contrastive_term_in_training_only(loss):
    model = tiny(**{"train.loss": loss})
    seq, n = random_batch(rows=8, width=5, seed=3)
    batch = {"item_seq": seq, "target": seq.roll(-1, 1).clamp(min=0), "seq_len": n,
             "negative": torch.full_like(seq, 7)}
    batch["target"][torch.arange(8), n - 1] = 9
    batch["target"][seq == 0] = 0
    base = SequentialRecommender.calculate_loss(model, batch)
    torch.testing.assert_close(model.calculate_loss(batch), base)  # eval: no contrastive term
    model.train()
    torch.manual_seed(0)
    total = model.calculate_loss(batch)
    torch.manual_seed(0)
    expected = SequentialRecommender.calculate_loss(model, batch) + 0.1 * model.contrastive_loss(seq, n)
    torch.testing.assert_close(total, expected)
    total.backward()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_learns_and_beats_popularity(one_thread, pooling):
    # 1,500 Beauty users: most-popular N@10 .0184. Few CPU epochs are a tight budget, so this
    # uses CE, batch 64 (24 steps/epoch), lr 2e-3 and dropout 0.2. Measured after 4 epochs: the
    # last state .0195, above popularity; the mean of the states (the default, DR4SR's code)
    # .0120 here, and 6-10 epochs or other rates stay under popularity on this slice (it
    # overfits first), while on full Beauty the mean gives test N@10 .0367 against the last
    # state's .0279 (results/beauty/cl4srec-*). So the slice asks the mean for less.
    split = leave_one_out(load_dataset("beauty", max_users=1500), max_len=50)
    cfg = load_config("beauty", "quick", {
        "train.loss": "ce", "train.epochs": 4, "train.patience": 4, "train.batch_size": 64,
        "train.lr": 2e-3, "model.dropout": 0.2, "cl4srec.pooling": pooling}, model="cl4srec")
    popularity = evaluate(Popularity.from_split(split), split, "valid", cfg.eval)["ndcg@10"]
    generator = set_seed(0)
    model = build_model(cfg, split.n_items, split=split)
    result = fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    best = result.best_valid["ndcg@10"]
    if pooling == "last":
        assert best > popularity
    else:
        assert best > 0.6 * popularity and best > 10 * (1 / split.n_items)  # far above chance
