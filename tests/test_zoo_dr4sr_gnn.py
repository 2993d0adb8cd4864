"""DR4SR's GNN backbone: the item-transition graph (hand-checked, training rows only), shapes,
causality, and that it learns on a real Beauty slice."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rasr_lib.config import load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.data.schema import SeqDataset
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.models.dr4sr_gnn import build_transition_graph
from rasr_lib.models.pop import Popularity
from rasr_lib.runtime import set_seed
from rasr_lib.training import fit


@pytest.fixture
def toy_split():
    """One user 1 2 3 4 5: training sequence 1 2 3, validation target 4, test target 5."""
    return leave_one_out(SeqDataset.from_lists([[1, 2, 3, 4, 5]], n_items=5), max_len=50)


def dense(split, norm):
    """The normalised graph as a dense float64[n + 1, n + 1] array."""
    index, values = build_transition_graph(split, split.n_items, window=2, norm=norm)
    n = split.n_items + 1
    return sp.coo_matrix((values, (index[0], index[1])), shape=(n, n)).toarray()


def test_build_needs_split():
    cfg = load_config("beauty", "quick", model="dr4sr_gnn")
    with pytest.raises(ValueError, match="training split"):
        build_model(cfg, n_items=5)


def test_graph_hand_checked_dr4sr_norm(toy_split):
    # Pairs of 1 2 3: (1,2) and (2,3) weight 1, (1,3) weight 1/2; A = W + W^T + I on items 1..5.
    # Non-zeros per row: items 1-3 have 3, items 4 and 5 only their self-loop, padding none.
    # D^-1 A + A D^-1: A_ij (1/3 + 1/3) among items 1-3, and 1 + 1 = 2 on the lone self-loops.
    a = dense(toy_split, "dr4sr")
    expected = np.zeros((6, 6))
    expected[1:4, 1:4] = np.array([[1, 1, 0.5], [1, 1, 1], [0.5, 1, 1]]) * 2 / 3
    expected[4, 4] = expected[5, 5] = 2.0
    np.testing.assert_allclose(a, expected, rtol=1e-6)


def test_graph_hand_checked_sym_norm(toy_split):
    a = dense(toy_split, "sym")
    deg = np.array([0, 2.5, 3.0, 2.5, 1.0, 1.0])  # weighted degrees, self-loops included
    assert a[1, 2] == pytest.approx(1 / np.sqrt(2.5 * 3.0))
    assert a[1, 3] == pytest.approx(0.5 / 2.5)
    assert a[4, 4] == pytest.approx(1.0)
    np.testing.assert_allclose(a, a.T)
    assert np.all(a[0] == 0) and deg[0] == 0


def test_graph_uses_training_rows_only(toy_split):
    # 3 -> 4 (validation target) and 4 -> 5 (test target) occur only outside the training rows.
    a = dense(toy_split, "dr4sr")
    assert a[3, 4] == a[4, 3] == a[4, 5] == a[5, 4] == a[3, 5] == 0


def tiny(split, **extra):
    """A small dr4sr_gnn on ``split`` in eval mode."""
    cfg = load_config("beauty", "quick", {"model.hidden_dim": 16, **extra}, model="dr4sr_gnn")
    set_seed(0)
    return build_model(cfg, split.n_items, split=split).eval()


@pytest.fixture
def small_split():
    """A few toy users over 12 items."""
    seqs = [[1, 2, 3, 4, 5, 6], [2, 3, 2, 7, 8, 9], [5, 6, 7, 1, 2, 3, 4], [10, 11, 12, 1, 2]]
    return leave_one_out(SeqDataset.from_lists(seqs, n_items=12), max_len=50)


def test_propagation_is_layer_mean(small_split):
    model = tiny(small_split)
    n = small_split.n_items + 1
    adj = torch.sparse_coo_tensor(model.graph_index, model.graph_values, (n, n), check_invariants=True).to_dense()
    e0 = model.item_embedding.weight
    expected = (e0 + adj @ e0 + adj @ (adj @ e0)) / 3  # gnn_layers = 2 (DR4SR gnn.yaml)
    torch.testing.assert_close(model.propagated(), expected)
    assert torch.all(model.propagated()[0] == 0)


def test_shapes_causality_and_loss(small_split):
    model = tiny(small_split)
    seq, seq_len = torch.tensor([[1, 2, 3, 4, 5], [4, 5, 0, 0, 0]]), torch.tensor([5, 2])
    assert model(seq, seq_len).shape == (2, 5, 16)
    assert model.full_sort_predict(seq, seq_len).shape == (2, 13)
    changed = seq.clone()
    changed[0, 3:] = torch.tensor([9, 7])
    out_a, out_b = model(seq, seq_len), model(changed, seq_len)
    torch.testing.assert_close(out_a[0, :3], out_b[0, :3])
    assert not torch.allclose(out_a[0, 3:], out_b[0, 3:])
    model.train()
    batch = {"item_seq": seq, "target": torch.tensor([[2, 3, 4, 5, 10], [5, 7, 0, 0, 0]]),
             "seq_len": seq_len, "negative": torch.full((2, 5), 11)}
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    # item 6 is not in the batch: its gradient comes through its graph neighbours 1, 5 and 7
    assert model.item_embedding.weight.grad[6].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu(small_split):
    model = tiny(small_split).cuda()
    seq, seq_len = torch.tensor([[1, 2, 3]], device="cuda"), torch.tensor([3], device="cuda")
    assert model.full_sort_predict(seq, seq_len).device.type == "cuda"


# Measured: valid N@10 .0106/.0114/.0132 over 3 epochs against most-popular .0110.
def test_learns_on_beauty_slice():
    """Loss falls each epoch and validation N@10 beats most-popular on a real 5,000-user slice."""
    split = leave_one_out(load_dataset("beauty", max_users=5000), max_len=20)
    cfg = load_config("beauty", "quick", {"train.loss": "ce", "train.epochs": 3, "train.patience": 3,
                                           "train.batch_size": 128, "data.max_len": 20},
                      model="dr4sr_gnn")
    generator = set_seed(0)
    model = build_model(cfg, split.n_items, split=split)
    result = fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), generator, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses == sorted(losses, reverse=True)
    popularity = evaluate(Popularity.from_split(split), split, "valid", cfg.eval)["ndcg@10"]
    assert result.best_valid["ndcg@10"] > popularity
