"""DR4SR's "GNN" backbone: LightGCN-style propagation over an item-transition graph, then SASRec."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from rasr_lib.models.gcegnn import training_sequences, windowed_pairs
from rasr_lib.models.sasrec import SASRec

GNN_NORMS = ("dr4sr", "sym")


def build_transition_graph(split, n_items: int, window: int = 2, norm: str = "dr4sr"):
    """DR4SR's item-transition graph from the TRAINING rows, normalised; returns (index, values).

    Ordered pairs of items 1..``window`` positions apart get weight 1/distance (summed over all
    occurrences); then A = W + W^T + I over items 1..n_items (the padding node 0 stays isolated).
    ``norm="dr4sr"``: D^-1 A + A D^-1 with D the number of non-zeros per row (DR4SR's
    ``model/gnn.py``); ``norm="sym"``: D^-1/2 A D^-1/2 with weighted degrees (LightGCN).
    ``index`` is int64[2, E] (row, col), ``values`` float32[E], for an (n_items + 1)^2 matrix.
    """
    if norm not in GNN_NORMS:
        raise ValueError(f"unknown gnn_norm {norm!r}; choose from {GNN_NORMS}")
    seqs, lengths = training_sequences(split)
    src, dst, dist = windowed_pairs(seqs, lengths, window)
    size = n_items + 1
    w = sp.coo_matrix((1.0 / dist, (src, dst)), shape=(size, size)).tocsr()
    eye = sp.diags(np.r_[0.0, np.ones(n_items)])  # self-loops on real items only
    a = (w + w.T + eye).tocsr()
    a.sum_duplicates()
    a.eliminate_zeros()
    if norm == "dr4sr":
        deg = np.diff(a.indptr).astype(np.float64)  # non-zeros per row, self-loop included
        inv = sp.diags(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0))
        a = (inv @ a + a @ inv).tocoo()
    else:
        deg = np.asarray(a.sum(1)).ravel()
        inv = sp.diags(np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0))
        a = (inv @ a @ inv).tocoo()
    index = np.vstack([a.row, a.col]).astype(np.int64)
    return index, a.data.astype(np.float32)


class DR4SRGNN(SASRec):
    """The "GNN" backbone of DR4SR (Yin et al., "Dataset Regeneration for Sequential
    Recommendation", KDD 2024; code USTC-StarTeam/DR4SR ``model/gnn.py``, ``configs/gnn.yaml``).

    This is NOT GCE-GNN (that is :class:`rasr_lib.models.gcegnn.GCEGNN`): RaSR's Table 1 labels a
    row "GCE-GNN", but DR4SR, whose code RaSR follows, only has this model, so either may be
    behind RaSR's numbers. Item embeddings are propagated over a fixed item-transition graph,
    E_k = A_hat E_{k-1}, for ``gnn_layers`` layers and averaged over layers 0..gnn_layers
    (LightGCN); the averaged embeddings plus learned positions enter DR4SR's causal post-LN
    SASRec; scores are inner products with the RAW item table (as DR4SR's ``BaseModel``).

    Graph (DR4SR ``_build_graph``): in every training sequence, the next item gets weight 1 and
    the one after it 1/2; A = W + W^T + I; A_hat = D^-1 A + A D^-1 with D the non-zero count
    per row (not the symmetric D^-1/2 A D^-1/2 LightGCN uses, which is ``gnn_norm="sym"``).

    DR4SR defaults (configs/gnn.yaml + basemodel.yaml), which we use: d = 64, 2 propagation
    layers, SASRec with 2 layers, 2 heads, FFN 128, dropout 0.5, GELU, BCE with one negative,
    Adam lr 1e-3, batch 256. Departures: the graph comes from our training rows (each user's
    s[:-2], plus any regenerated rows); DR4SR's "new" mode reads its training rows and drops
    each row's last input item, its "old" mode the validation histories minus their last item,
    both subsets of ours. LayerNorm eps is torch's 1e-5 (DR4SR 1e-12), and no key-padding
    mask (right padding under a causal mask never reaches real positions).
    """

    def __init__(self, n_items: int, index: np.ndarray, values: np.ndarray, gnn_layers: int = 2,
                 **sasrec_kwargs):
        super().__init__(n_items, **sasrec_kwargs)
        self.gnn_layers = gnn_layers
        n = n_items + 1
        adj = torch.sparse_coo_tensor(torch.as_tensor(index, dtype=torch.long),
                                      torch.as_tensor(values, dtype=torch.float32), (n, n),
                                      check_invariants=True).coalesce()
        # Fixed data rebuilt from the split at build time: kept out of checkpoints.
        self.register_buffer("graph_index", adj.indices(), persistent=False)
        self.register_buffer("graph_values", adj.values(), persistent=False)

    def propagated(self) -> torch.Tensor:
        """Layer-mean propagated item table FloatTensor[n_items + 1, D] (row 0 stays zero)."""
        n = self.n_items + 1
        adj = torch.sparse_coo_tensor(self.graph_index, self.graph_values, (n, n),
                                      is_coalesced=True, check_invariants=False)  # checked at init
        emb = self.item_embedding.weight
        layers = [emb]
        for _ in range(self.gnn_layers):  # a loop over layers
            emb = torch.sparse.mm(adj, emb)
            layers.append(emb)
        return torch.stack(layers).mean(0)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Causally encode LongTensor[B, L] (right-padded) into FloatTensor[B, L, D] from propagated embeddings."""
        length = item_seq.size(1)
        positions = torch.arange(length, device=item_seq.device)
        x = self.propagated()[item_seq] + self.position_embedding(positions)[None]
        x = self.dropout(x)
        causal = torch.triu(
            torch.full((length, length), float("-inf"), device=item_seq.device), diagonal=1
        )
        return self.final_norm(self.encoder(x, mask=causal, is_causal=True))


def build(cfg, n_items: int, split=None) -> DR4SRGNN:
    """DR4SR's GNN backbone sized by ``cfg.model`` and ``cfg.gcegnn.gnn_*``; its graph needs ``split``."""
    if split is None:
        raise ValueError("dr4sr_gnn needs the training split to build its item-transition graph: "
                         "build_model(cfg, n_items, split=split)")
    g, m = cfg.gcegnn, cfg.model
    index, values = build_transition_graph(split, n_items, g.gnn_window, g.gnn_norm)
    return DR4SRGNN(
        n_items, index, values, gnn_layers=g.gnn_layers, max_len=cfg.data.max_len,
        hidden_dim=m.hidden_dim, num_layers=m.num_layers, num_heads=m.num_heads,
        inner_dim=m.inner_dim, dropout=m.dropout, activation=m.activation,
        layer_norm=m.layer_norm, loss=cfg.train.loss,
    )
