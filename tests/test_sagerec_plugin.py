"""SAGERec's graph module under other backbones (§5.6): transparent, equal to SAGERec's, trainable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rasr_lib.config import MODEL_DEFAULTS, load_config
from rasr_lib.data.loaders import load_dataset
from rasr_lib.data.split import leave_one_out
from rasr_lib.models import build_model
from rasr_lib.models.gru4rec import GRU4Rec
from rasr_lib.runtime import set_seed
from rasr_lib.sagerec.graph import ItemGraph, semantic_graph
from rasr_lib.sagerec.model import SAGERec
from rasr_lib.sagerec.plugin import GraphEnhanced, SemanticGraph, add_semantic_graph
from rasr_lib.training import fit

N_ITEMS = 6


def small_graph() -> ItemGraph:
    """Path 1-2-3 plus edge 4-5 (item 6 isolated), cosine weights as given."""
    return ItemGraph(N_ITEMS, np.array([1, 2, 4]), np.array([2, 3, 5]), np.array([0.9, 0.5, 0.7], np.float32))


def test_propagated_table_equals_sagerecs_with_fixed_weights():
    torch.manual_seed(0)
    sage = SAGERec(N_ITEMS, small_graph(), hidden_dim=8, edge_learning=False).eval()
    module = SemanticGraph(small_graph(), 8, edge_learning=False).eval()
    table = sage.item_embedding.weight
    assert torch.allclose(module(table), sage.item_table(), atol=1e-6)
    # the dense formula E + D^-1/2 S D^-1/2 E
    s = torch.zeros(N_ITEMS + 1, N_ITEMS + 1)
    s[1, 2] = s[2, 1] = 0.9
    s[2, 3] = s[3, 2] = 0.5
    s[4, 5] = s[5, 4] = 0.7
    d = s.sum(1).clamp_min(1e-12).rsqrt()
    dense = table + (d[:, None] * s * d[None, :]) @ table
    assert torch.allclose(module(table), dense, atol=1e-6)


def test_wrapper_with_an_empty_graph_is_the_backbone_itself():
    torch.manual_seed(0)
    plain = GRU4Rec(N_ITEMS, hidden_dim=8, inner_dim=16).eval()
    empty = ItemGraph(N_ITEMS, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    torch.manual_seed(0)
    wrapped = GraphEnhanced(GRU4Rec(N_ITEMS, hidden_dim=8, inner_dim=16), SemanticGraph(empty, 8)).eval()
    seq, length = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 1]]), torch.tensor([3, 4])
    assert torch.allclose(plain.full_sort_predict(seq, length), wrapped.full_sort_predict(seq, length))


def test_isolated_cold_item_unchanged_and_linked_item_moves():
    torch.manual_seed(0)
    wrapped = GraphEnhanced(GRU4Rec(N_ITEMS, hidden_dim=8, inner_dim=16), SemanticGraph(small_graph(), 8)).eval()
    raw, propagated = wrapped.raw_item_table(), wrapped.item_embedding.weight
    assert torch.equal(raw[6], propagated[6])  # no neighbour: nothing to receive
    assert not torch.allclose(raw[3], propagated[3])  # a cold item with a neighbour is reached
    assert torch.equal(propagated[0], torch.zeros(8))


def test_loss_reaches_edge_mlp_and_raw_table():
    torch.manual_seed(0)
    wrapped = GraphEnhanced(GRU4Rec(N_ITEMS, hidden_dim=8, inner_dim=16), SemanticGraph(small_graph(), 8,
                                                                                         node_dropout=0.0))
    batch = {"item_seq": torch.tensor([[1, 2, 4]]), "target": torch.tensor([[2, 4, 5]]),
             "seq_len": torch.tensor([3]), "user": torch.tensor([0]), "negative": torch.tensor([[6, 6, 3]])}
    wrapped.calculate_loss(batch).backward()
    module = wrapped.backbone.item_embedding.parametrizations.weight[0]
    assert module.edge_mlp.lin1.weight.grad.abs().sum() > 0
    assert wrapped.backbone.item_embedding.parametrizations.weight.original.grad.abs().sum() > 0


def test_gru4rec_with_graph_trains_through_the_loop():
    ds = load_dataset("beauty", max_users=400)
    split = leave_one_out(ds)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(ds.n_items + 1, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[0] = 0
    graph = semantic_graph(emb, k=3, tau=0.0)
    cfg = load_config("beauty", "quick", {"model.semantic_graph": True, "train.loss": "ce",
                                          "train.epochs": 2}, model="gru4rec")
    model = build_model(cfg, ds.n_items, graph=graph, split=split)
    assert isinstance(model, GraphEnhanced)
    result = fit(model, split, cfg.train, cfg.eval, torch.device("cpu"), set_seed(0), progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[1] < losses[0]
    assert result.best_valid["ndcg@10"] > 0
    again = add_semantic_graph(GRU4Rec(ds.n_items), graph, cfg)
    assert isinstance(again.backbone.item_embedding.parametrizations.weight[0], SemanticGraph)


@pytest.fixture(scope="module")
def slice_and_graph():
    """300 Beauty users and a random-embedding semantic graph over their items."""
    ds = load_dataset("beauty", max_users=300)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(ds.n_items + 1, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[0] = 0
    return leave_one_out(ds), semantic_graph(emb, k=3, tau=0.0)


@pytest.mark.parametrize("name", [m for m in MODEL_DEFAULTS if m != "sagerec"])
def test_every_backbone_takes_the_graph_module(slice_and_graph, name):
    """One training step and one scoring pass of each zoo model with model.semantic_graph (§5.6)."""
    from rasr_lib.training import iterate_train_batches

    split, graph = slice_and_graph
    # a tiny GCE-GNN chunk forces its checkpointed path, which must see one table per step
    cfg = load_config("beauty", "quick", {"model.semantic_graph": True, "gcegnn.gcegnn_chunk": 16}, model=name)
    set_seed(0)
    model = build_model(cfg, split.n_items, graph=graph, split=split)
    batch = next(iterate_train_batches(split, 32, torch.Generator().manual_seed(0), model.loss == "bce",
                                       torch.device("cpu")))
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.raw_item_table().grad is not None
    model.eval()
    seq, length = torch.from_numpy(split.valid_input[:4]), torch.from_numpy(split.valid_len[:4])
    kwargs = {"user": torch.arange(4)} if model.needs_user else {}
    assert model.full_sort_predict(seq, length, **kwargs).shape == (4, split.n_items + 1)
