"""Backbones behind one interface: ``forward``, ``calculate_loss``, ``full_sort_predict``."""

from __future__ import annotations

from rasr_lib.config import ExperimentConfig
from rasr_lib.models.base import SequentialRecommender
from rasr_lib.models.gru4rec import GRU4Rec
from rasr_lib.models.sasrec import SASRec

MODELS = {"sasrec": SASRec, "gru4rec": GRU4Rec}


def build_model(cfg: ExperimentConfig, n_items: int) -> SequentialRecommender:
    """Instantiate the backbone named by ``cfg.model.name`` for a catalogue of ``n_items``."""
    m, loss = cfg.model, cfg.train.loss
    if m.name == "sasrec":
        return SASRec(
            n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
            num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout,
            activation=m.activation, layer_norm=m.layer_norm, loss=loss,
        )
    if m.name == "gru4rec":
        return GRU4Rec(
            n_items, hidden_dim=m.hidden_dim, num_layers=m.num_layers, inner_dim=m.inner_dim,
            dropout=m.dropout, loss=loss,
        )
    raise ValueError(f"unknown model {m.name!r}; choose from {sorted(MODELS)}")


__all__ = ["MODELS", "GRU4Rec", "SASRec", "SequentialRecommender", "build_model"]
