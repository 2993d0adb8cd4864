"""SAGERec's semantic graph module under any backbone (§5.6: GRU4Rec, BERT4Rec, CL4SRec + graph).

The module is a *parametrization* of the backbone's item table (``torch.nn.utils.parametrize``):
every read of ``backbone.item_embedding.weight`` returns E + A_hat E, with A_hat re-weighted by
the edge MLP from the raw E (§4.3). The backbone's own code (its input lookup, its output
scoring, its objective) is untouched, so one wrapper serves every model in the zoo. Under
``parametrize.cached()`` the propagation, and its edge and node dropout draw, happen once per
training step, as in :class:`~rasr_lib.sagerec.model.SAGERec`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from rasr_lib.models.base import SequentialRecommender
from rasr_lib.sagerec.graph import ItemGraph
from rasr_lib.sagerec.model import ADJ_NORMS, EdgeMLP, propagate, register_graph_buffers, step_adjacency


class SemanticGraph(nn.Module):
    """Parametrization E -> E + A_hat E of an item table FloatTensor[n_items + 1, d] (§4.3)."""

    def __init__(
        self, graph: ItemGraph, hidden_dim: int, edge_learning: bool = True, edge_dropout: float = 0.2,
        node_dropout: float = 0.5, gcn_layers: int = 1, adj_norm: str = "renorm",
    ):
        super().__init__()
        if adj_norm not in ADJ_NORMS:
            raise ValueError(f"adj_norm must be one of {ADJ_NORMS}, got {adj_norm!r}")
        for name, p in (("edge_dropout", edge_dropout), ("node_dropout", node_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.n_items = graph.n_items
        self.edge_dropout, self.node_dropout = edge_dropout, node_dropout
        self.gcn_layers, self.adj_norm = gcn_layers, adj_norm
        register_graph_buffers(self, graph, edge_learning)
        self.edge_mlp = EdgeMLP(hidden_dim) if edge_learning else None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Propagated table FloatTensor[N, d] from the raw table ``weight`` FloatTensor[N, d]."""
        if weight.size(0) < self.n_items + 1:
            raise ValueError(f"item table has {weight.size(0)} rows, the graph {self.n_items + 1}")
        head = weight[: self.n_items + 1]  # extra rows (a [mask] token) are left as they are
        rows, cols, vals = step_adjacency(self, head)
        out = propagate(head, rows, cols, vals, self.gcn_layers)
        return torch.cat([out, weight[self.n_items + 1 :]]) if weight.size(0) > head.size(0) else out


class GraphEnhanced(SequentialRecommender):
    """A backbone whose item table is propagated over the semantic graph (SAGERec §5.6).

    Delegates ``forward``, ``calculate_loss`` and ``full_sort_predict`` to ``backbone``, each
    under one cached propagation. ``item_embedding`` is the backbone's (its ``.weight`` is the
    propagated table; the raw one is ``raw_item_table()``).
    """

    def __init__(self, backbone: SequentialRecommender, module: SemanticGraph):
        nn.Module.__init__(self)  # no table of its own: the backbone's is reused
        self.backbone = backbone
        self.n_items, self.hidden_dim, self.loss = backbone.n_items, backbone.hidden_dim, backbone.loss
        self.needs_user = backbone.needs_user
        parametrize.register_parametrization(backbone.item_embedding, "weight", module)

    @property
    def item_embedding(self) -> nn.Embedding:
        """The backbone's embedding module (``.weight`` reads the propagated table)."""
        return self.backbone.item_embedding

    def raw_item_table(self) -> torch.Tensor:
        """The learned table before propagation, FloatTensor[rows, D]."""
        return self.backbone.item_embedding.parametrizations.weight.original

    def item_weights(self) -> torch.Tensor:
        """The backbone's output table, propagated."""
        return self.backbone.item_weights()

    def prepare(self, *args, **kwargs) -> dict | None:
        """The backbone's stage before training, with the graph in place."""
        return self.backbone.prepare(*args, **kwargs)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Backbone states FloatTensor[B, L, D] over the propagated table."""
        with parametrize.cached():
            return self.backbone(item_seq, seq_len)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor, **kwargs) -> torch.Tensor:
        """Backbone scores FloatTensor[B, n_items + 1] with one propagation."""
        with parametrize.cached():
            return self.backbone.full_sort_predict(item_seq, seq_len, **kwargs)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone loss with one propagation (one dropout draw) for the whole step."""
        with parametrize.cached():
            return self.backbone.calculate_loss(batch)


def add_semantic_graph(backbone: SequentialRecommender, graph: ItemGraph, cfg) -> GraphEnhanced:
    """Wrap ``backbone`` with the semantic graph module configured by ``cfg.sagerec``."""
    s = cfg.sagerec
    module = SemanticGraph(graph, backbone.hidden_dim, edge_learning=s.edge_learning,
                           edge_dropout=s.edge_dropout, node_dropout=s.node_dropout,
                           gcn_layers=s.gcn_layers, adj_norm=s.adj_norm)
    return GraphEnhanced(backbone, module)
