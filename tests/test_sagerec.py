"""SAGERec: the semantic graph (hand-computed), edge MLP, propagation, causality, cold items, a run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import fake_embeddings
from rasr_lib.config import config_hash, load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.models import SASRec, build_model
from rasr_lib.models.base import SequentialRecommender
from rasr_lib.runtime import set_seed
from rasr_lib.sagerec import graph as graph_module
from rasr_lib.sagerec.graph import ItemGraph, normalized_adjacency, random_graph, semantic_graph
from rasr_lib.sagerec.model import SAGERec, normalize_entries
from rasr_lib.training import fit, iterate_train_batches

# A hand-made cosine matrix of 6 items (positive definite, unit diagonal); the embeddings are the
# rows of its Cholesky factor, so their cosines are exactly these numbers.
PAIRS = {(1, 2): 0.9, (1, 3): 0.8, (1, 4): 0.1, (2, 3): 0.7, (2, 4): 0.2, (3, 4): 0.3,
         (4, 5): 0.6, (4, 6): 0.1, (5, 6): 0.2}


pytestmark = pytest.mark.usefixtures("one_thread")


def six_items() -> np.ndarray:
    """float32[7, 6] embeddings whose cosines are PAIRS (0 elsewhere); row 0 = padding = 0."""
    sim = np.eye(6)
    for (i, j), s in PAIRS.items():
        sim[i - 1, j - 1] = sim[j - 1, i - 1] = s
    return np.vstack([np.zeros(6), np.linalg.cholesky(sim)]).astype(np.float32)


def edges(graph: ItemGraph) -> list[tuple[int, int]]:
    return list(zip(graph.src.tolist(), graph.dst.tolist()))


def test_semantic_graph_top2_threshold_symmetric():
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    # Top-2 lists: 1:{2,3} 2:{1,3} 3:{1,2} 4:{5,3} 5:{4,6<tau} 6:{5<tau,4<tau}.
    # 3-4 enters only through 4's list (the union makes it undirected); 6 is isolated.
    assert edges(graph) == [(1, 2), (1, 3), (2, 3), (3, 4), (4, 5)]
    np.testing.assert_allclose(graph.weight, [0.9, 0.8, 0.7, 0.3, 0.6], atol=1e-6)
    assert graph.stats() == {"kind": "semantic", "n_nodes": 6, "n_edges": 5, "n_isolated": 1,
                             "mean_degree": 10 / 6, "max_degree": 3, "mean_weight": pytest.approx(0.66)}
    adj = graph.adjacency().toarray()
    np.testing.assert_array_equal(adj, adj.T)
    assert np.all(np.diag(adj) == 0) and np.all(adj[0] == 0)


def test_normalisation_by_hand():
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    # Binary A: degrees 1:2 2:2 3:3 4:2 5:1 6:0.
    a_bin = normalized_adjacency(graph.adjacency(weighted=False)).toarray()
    assert a_bin[1, 2] == pytest.approx(1 / math.sqrt(2 * 2))
    assert a_bin[1, 3] == pytest.approx(1 / math.sqrt(2 * 3))
    assert a_bin[3, 4] == pytest.approx(1 / math.sqrt(3 * 2))
    assert a_bin[4, 5] == pytest.approx(1 / math.sqrt(2 * 1))
    assert a_bin[6].sum() == 0 and a_bin[1, 4] == 0
    # Cosine-weighted A: degrees 1:1.7 2:1.6 3:1.8 4:0.9 5:0.6.
    a_cos = normalized_adjacency(graph.adjacency()).toarray()
    assert a_cos[1, 2] == pytest.approx(0.9 / math.sqrt(1.7 * 1.6), rel=1e-5)
    assert a_cos[3, 4] == pytest.approx(0.3 / math.sqrt(1.8 * 0.9), rel=1e-5)
    assert a_cos[5, 4] == pytest.approx(0.6 / math.sqrt(0.6 * 0.9), rel=1e-5)
    np.testing.assert_allclose(a_cos, a_cos.T, atol=1e-7)


def test_semantic_graph_top3():
    graph = semantic_graph(six_items(), k=3, tau=0.15)
    # Top-3 lists above 0.15: 1:{2,3} 2:{1,3,4} 3:{1,2,4} 4:{5,3,2} 5:{4,6} 6:{5}.
    assert edges(graph) == [(1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (4, 5), (5, 6)]
    assert graph.stats()["n_isolated"] == 0


def test_random_graph_has_the_edge_count_and_no_self_loops():
    graph = random_graph(50, 120, seed=3)
    assert graph.n_edges == 120 and graph.kind == "random"
    assert np.all(graph.src < graph.dst) and graph.src.min() >= 1 and graph.dst.max() <= 50
    assert len(set(edges(graph))) == 120
    assert edges(graph) == edges(random_graph(50, 120, seed=3))
    assert edges(graph) != edges(random_graph(50, 120, seed=4))
    with pytest.raises(ValueError, match="do not fit"):
        random_graph(4, 7, seed=0)


def tiny_model(graph: ItemGraph | None, **kwargs) -> SAGERec:
    torch.manual_seed(0)
    n_items = graph.n_items if graph is not None else 6
    return SAGERec(n_items, graph, max_len=8, hidden_dim=8, num_heads=2, inner_dim=8, **kwargs).eval()


def test_edge_mlp_in_unit_interval_and_differentiable():
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    model = tiny_model(graph)
    emb = model.item_embedding.weight
    src, dst = model.edge_src, model.edge_dst
    w = model.edge_mlp(emb, src, dst)
    assert w.shape == (5,) and bool(((w > 0) & (w < 1)).all())
    # Equals the paper's concatenated formula, averaged over both orders of each pair.
    mlp = model.edge_mlp

    def direct(a, b):
        return torch.sigmoid(mlp.lin2(torch.relu(mlp.lin1(torch.cat([emb[a], emb[b]], 1))))).squeeze(1)

    torch.testing.assert_close(w, (direct(src, dst) + direct(dst, src)) / 2)
    w.sum().backward()
    assert mlp.lin1.weight.grad.abs().sum() > 0 and emb.grad[1:6].abs().sum() > 0


def dense_normalised(graph: ItemGraph, weight: torch.Tensor) -> torch.Tensor:
    """D^-1/2 A D^-1/2 as a dense [n+1, n+1] tensor, A_ij = weight of edge (i, j)."""
    n = graph.n_items + 1
    dense = torch.zeros(n, n)
    src, dst = torch.as_tensor(graph.src), torch.as_tensor(graph.dst)
    dense[src, dst] = weight
    dense[dst, src] = weight
    deg = dense.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    return inv[:, None] * dense * inv[None, :]


@pytest.mark.parametrize("edge_learning", [False, True])
@pytest.mark.parametrize("adj_norm", ["renorm", "scale"])
def test_one_propagation_equals_the_dense_formula(edge_learning, adj_norm):
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    model = tiny_model(graph, edge_learning=edge_learning, adj_norm=adj_norm)
    emb = model.item_embedding.weight.detach()
    cosine = torch.as_tensor(graph.weight)
    if not edge_learning:  # Table 5 (B): D^-1/2 S D^-1/2 either way
        a_hat = dense_normalised(graph, cosine)
    else:
        w = model.edge_mlp(emb, model.edge_src, model.edge_dst).detach()
        if adj_norm == "renorm":  # re-weight, then normalise
            a_hat = dense_normalised(graph, w)
        else:  # normalise the binary graph, then re-weight
            w_dense = torch.zeros(7, 7)
            w_dense[model.edge_src, model.edge_dst] = w
            w_dense[model.edge_dst, model.edge_src] = w
            a_hat = dense_normalised(graph, torch.ones(graph.n_edges)) * w_dense
    with torch.no_grad():
        torch.testing.assert_close(model.item_table(), emb + a_hat @ emb)


def test_training_dropout_thins_the_graph_symmetrically():
    graph = random_graph(40, 150, seed=0)
    model = tiny_model(graph, edge_dropout=0.5, node_dropout=0.0).train()
    torch.manual_seed(1)
    rows, cols, vals = model.adjacency()
    kept = set(zip(rows.tolist(), cols.tolist()))
    assert 0 < len(kept) < 300 and kept == {(c, r) for r, c in kept}  # whole undirected edges dropped
    # Renormalised on the kept edges: values are those of D^-1/2 A D^-1/2 of the thinned graph.
    w = model.edge_mlp(model.item_embedding.weight, model.edge_src, model.edge_dst)
    weight = dict(zip(zip(model.edge_src.tolist(), model.edge_dst.tolist()), w.tolist()))
    raw = torch.tensor([weight[(min(r, c), max(r, c))] for r, c in zip(rows.tolist(), cols.tolist())])
    torch.testing.assert_close(vals, normalize_entries(rows, cols, raw, 41))
    # Node dropout: an item sends either all of its messages or none of them.
    model = tiny_model(graph, edge_dropout=0.0, node_dropout=0.5).train()
    torch.manual_seed(1)
    rows, cols, _ = model.adjacency()
    senders = set(cols.tolist())
    full = [(r, c) for a, b in edges(graph) for r, c in ((a, b), (b, a))]
    assert set(zip(rows.tolist(), cols.tolist())) == {(r, c) for r, c in full if c in senders}
    assert 10 < len(senders) < 30  # about half of the 40 items send nothing this step


@pytest.mark.parametrize("graph_kind", ["semantic", "none"])
def test_causal_mask(graph_kind):
    graph = semantic_graph(six_items(), k=2, tau=0.25) if graph_kind == "semantic" else None
    model = tiny_model(graph)
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[1, 2, 3, 6, 6]])
    n = torch.tensor([5])
    with torch.no_grad():
        out_a, out_b = model(a, n), model(b, n)
    torch.testing.assert_close(out_a[:, :3], out_b[:, :3])
    assert not torch.allclose(out_a[:, 3:], out_b[:, 3:])


def test_cold_item_gets_its_neighbours_signal():
    # Item 6 is "cold" (think: never in a training sequence); its only edge goes to item 5.
    graph = ItemGraph(n_items=6, src=np.array([1, 4, 5]), dst=np.array([2, 5, 6]),
                      weight=np.array([0.9, 0.6, 0.8], dtype=np.float32))
    model = tiny_model(graph, edge_learning=False)
    emb = model.item_embedding.weight.detach()
    with torch.no_grad():
        table = model.item_weights()
    # Degrees: 5 -> 0.6 + 0.8 = 1.4, 6 -> 0.8, so A_hat[6, 5] = 0.8 / sqrt(0.8 * 1.4).
    torch.testing.assert_close(table[6], emb[6] + 0.8 / math.sqrt(0.8 * 1.4) * emb[5])
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(table[6], table[5], dim=0)) > float(cos(emb[6], emb[5], dim=0)) + 0.3
    torch.testing.assert_close(table[3], emb[3])  # an item without edges keeps its embedding
    # Without the graph (Table 5 C) and in SASRec the scoring table is the raw embedding.
    plain = tiny_model(None)
    torch.testing.assert_close(plain.item_weights(), plain.item_embedding.weight)
    sasrec = SASRec(6, max_len=8, hidden_dim=8, inner_dim=8)
    assert sasrec.item_weights() is sasrec.item_embedding.weight


def test_loss_reaches_the_edge_mlp_and_scores_use_the_table():
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    model = tiny_model(graph).train()
    batch = {"item_seq": torch.tensor([[1, 2, 3], [4, 5, 0]]), "target": torch.tensor([[2, 3, 4], [5, 6, 0]]),
             "seq_len": torch.tensor([3, 2]), "negative": torch.tensor([[6, 6, 5], [1, 2, 0]])}
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.edge_mlp.lin1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(batch["item_seq"], batch["seq_len"])
        last = model(batch["item_seq"], batch["seq_len"])[torch.arange(2), batch["seq_len"] - 1]
        torch.testing.assert_close(scores, last @ model.item_table().T)
    assert scores.shape == (2, 7)


def test_ablation_switches_and_xavier_init():
    graph = semantic_graph(six_items(), k=2, tau=0.25)
    assert tiny_model(graph, edge_learning=False).edge_mlp is None
    assert tiny_model(graph, position=False).position_embedding is None
    assert (tiny_model(graph).emb_scale, tiny_model(graph, emb_scale=False).emb_scale) == (math.sqrt(8), 1.0)
    model = tiny_model(graph)
    with torch.no_grad():
        assert float(model.item_embedding.weight[0].abs().sum()) == 0.0
        bound = math.sqrt(6 / (7 + 8))  # Xavier-uniform bound of the [7, 8] item table
        assert float(model.item_embedding.weight.abs().max()) <= bound
        assert float(model.edge_mlp.lin1.bias.abs().sum()) == 0.0


def test_config_defaults_and_hash():
    cfg = load_config("beauty", "full", model="sagerec")
    assert (cfg.model.hidden_dim, cfg.model.layer_norm, cfg.model.activation) == (50, "pre", "relu")
    assert (cfg.train.batch_size, cfg.train.valid_metric, cfg.train.emb_l2) == (128, "ndcg@10", 1e-5)
    assert (cfg.sagerec.top_k, cfg.sagerec.edge_dropout, cfg.sagerec.node_dropout) == (3, 0.2, 0.5)
    assert config_hash(replace(cfg, sagerec=replace(cfg.sagerec, edge_learning=False))) != config_hash(cfg)
    sasrec = load_config("beauty", "full")
    assert config_hash(replace(sasrec, sagerec=replace(sasrec.sagerec, top_k=9))) == config_hash(sasrec)
    assert config_hash(sasrec) == "514894dfd8"  # the hash of the published SASRec/BCE full run
    assert config_hash(replace(sasrec, train=replace(sasrec.train, emb_l2=1e-5))) != config_hash(sasrec)
    with pytest.raises(ValueError, match="sagerec.graph"):
        load_config("beauty", "quick", {"sagerec.graph": "knn"}, model="sagerec")
    with pytest.raises(ValueError, match="item graph"):
        build_model(cfg, 10)


@pytest.fixture(scope="module")
def small_split():
    """The first 300 Beauty users, leave-one-out."""
    return leave_one_out(load_dataset("beauty", max_users=300), max_len=50)


def test_negatives_can_avoid_the_rows_items(small_split):
    generator = torch.Generator().manual_seed(0)
    batches = iterate_train_batches(small_split, 64, generator, True, torch.device("cpu"), exclude_history=True)
    for batch in batches:
        seen = torch.cat([batch["item_seq"], batch["target"]], 1)
        assert not (batch["negative"].unsqueeze(2) == seen.unsqueeze(1)).any()


class Constant(SequentialRecommender):
    """Scores every item 0 whatever its weights: the validation metric never improves."""

    def forward(self, item_seq, seq_len):
        return self.item_embedding(item_seq) * 0.0


@pytest.mark.parametrize("signal", ["loss", "metric"])
def test_plateau_decay_and_embedding_l2(small_split, signal):
    cfg = load_config("beauty", "quick", {"train.epochs": 3, "train.patience": 10,
                                          "train.lr_decay_patience": 1, "train.lr_decay_on": signal})
    model = Constant(small_split.n_items, 8)
    result = fit(model, small_split, cfg.train, cfg.eval, torch.device("cpu"), set_seed(0), progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert result.history[0]["loss"] == pytest.approx(2 * math.log(2))
    if signal == "loss":  # BCE of score 0 on a positive and a negative: 2 ln 2, every epoch
        assert [h["valid_loss"] for h in result.history] == pytest.approx([2 * math.log(2)] * 3)
    plain = replace(cfg.train, lr_decay_patience=0, epochs=1, emb_l2=1e-4)
    model = Constant(small_split.n_items, 8)
    penalty = 1e-4 * float(model.item_embedding.weight.detach().pow(2).sum())
    result = fit(model, small_split, plain, cfg.eval, torch.device("cpu"), set_seed(0), progress=False)
    assert "lr" not in result.history[0]
    assert result.history[0]["loss"] == pytest.approx(2 * math.log(2) + penalty, rel=1e-2)


def test_step_decay_every_n_epochs_and_resume(small_split, tmp_path):
    cfg = load_config("beauty", "quick", {"train.epochs": 5, "train.patience": 10, "train.lr_step_every": 2})
    model = Constant(small_split.n_items, 8)
    result = fit(model, small_split, cfg.train, cfg.eval, torch.device("cpu"), set_seed(0), progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    plain = replace(cfg.train, lr_step_every=0, epochs=1)
    result = fit(Constant(small_split.n_items, 8), small_split, plain, cfg.eval, torch.device("cpu"), set_seed(0),
                 progress=False)
    assert "lr" not in result.history[0]
    with pytest.raises(ValueError, match="lr_step_factor"):
        load_config("beauty", "quick", {"train.lr_step_factor": 0.0})
    assert config_hash(load_config("beauty", "full")) == config_hash(  # unchanged default: old hashes stay
        load_config("beauty", "full", {"train.lr_step_factor": 0.1}))
    stepped = load_config("beauty", "full", {"train.lr_step_every": 3})
    assert config_hash(load_config("beauty", "full")) != config_hash(stepped)


def test_run_experiment_sagerec(tmp_path, monkeypatch):
    from rasr_lib.experiments.train_run import run_experiment

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(graph_module, "encode_items", fake_embeddings)
    cfg = load_config("beauty", "quick", {"data.max_users": 300, "device": "cpu"}, model="sagerec")
    result = run_experiment(cfg, progress=False)
    assert result["model"] == "sagerec" and result["epochs_run"] == 2
    assert [h["lr"] for h in result["history"]] == [1e-3, 1e-3]  # no plateau yet
    assert all(0 < h["valid_loss"] < 10 for h in result["history"])
    assert set(result["metrics"]["test"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert 0 <= result["metrics"]["test"]["ndcg@10"] <= result["metrics"]["test"]["recall@10"] <= 1
    n_items = result["data_stats"]["n_items"]
    stats = result["graph"]
    assert stats["n_nodes"] == n_items and 1.5 * n_items <= stats["n_edges"] <= 3 * n_items
    from rasr_lib.data import load_dataset, leave_one_out
    from rasr_lib.evaluation import cold_target_users

    cold = result["cold_start"]  # §5.8: users whose test target never trained
    assert cold["n_users"] == int(cold_target_users(leave_one_out(load_dataset("beauty", max_users=300)),
                                                    "test").sum()) > 0
    assert 0 <= cold["ndcg@10"] <= cold["recall@10"] <= 1
    assert not (tmp_path / "results").exists()  # the quick profile publishes nothing
    # §5.8 in ranks: the checkpoint's best weights give the committed numbers again
    import json

    from rasr_lib.experiments.cold_ranks import collect_cold_ranks

    run_experiment(cfg, publish=True, progress=False)  # finished: read back and published
    name = next((tmp_path / "results" / "beauty").glob("sagerec-*.json")).stem
    entry = collect_cold_ranks("beauty", progress=False)["runs"][name]
    assert len(entry["ranks"]) == cold["n_users"] and entry["reproduces_committed"]
    assert entry["metrics"]["ndcg@10"] == pytest.approx(cold["ndcg@10"], abs=1e-12)
    assert all(1 <= r <= n_items for r in entry["ranks"])
    path = tmp_path / "results" / "beauty" / f"{name}.json"
    tampered = json.loads(path.read_text())
    tampered["metrics"]["test"]["ndcg@20"] += 0.01
    path.write_text(json.dumps(tampered))
    assert not collect_cold_ranks("beauty", [name], force=True)["runs"][name]["reproduces_committed"]
    with pytest.raises(FileNotFoundError, match="no committed result"):
        collect_cold_ranks("beauty", ["sasrec-bce-full-seed0"])
    from rasr_lib.experiments.graph_strength import collect_graph_strength

    strength = collect_graph_strength("beauty", progress=False)["runs"][name]
    assert strength["learned"] and strength["adj_norm"] == "renorm"
    assert 0 < strength["weight"]["p5"] <= strength["weight"]["p50"] <= strength["weight"]["p95"] < 1
    assert 0 < strength["message_ratio"] < 10 and strength["a_hat"]["p50"] > 0


def test_renorm_exact_ignores_the_weights_overall_scale():
    from rasr_lib.sagerec.model import normalize_entries

    rows, cols = torch.tensor([0, 1, 1, 2, 0, 2]), torch.tensor([1, 0, 2, 1, 2, 0])
    vals = torch.tensor([0.9, 0.9, 0.5, 0.5, 0.7, 0.7])
    reference = normalize_entries(rows, cols, vals, 3)
    assert torch.allclose(normalize_entries(rows, cols, vals, 3, exact=True), reference)
    for scale in (1e-4, 1e-9, 1e-30):
        assert torch.allclose(normalize_entries(rows, cols, scale * vals, 3, exact=True), reference, rtol=1e-5)
    # the 1e-12 floor of "renorm": weights of 1e-9 give entries a thousand times too small
    assert normalize_entries(rows, cols, 1e-9 * vals, 3).max() < 1e-2 * reference.min()
    tiny = (1e-20 * vals).requires_grad_()
    normalize_entries(rows, cols, tiny, 3, exact=True).sum().backward()
    assert torch.isfinite(tiny.grad).all()
