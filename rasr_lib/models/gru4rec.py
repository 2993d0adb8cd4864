"""GRU4Rec (Hidasi et al., ICLR 2016) in DR4SR's configuration."""

from __future__ import annotations

import torch
from torch import nn

from rasr_lib.models.base import SequentialRecommender


class GRU4Rec(SequentialRecommender):
    """Item embedding -> dropout -> multi-layer GRU -> linear back to the embedding size.

    DR4SR sizes: embedding 64, dropout 0.2, 2 GRU layers of width 256 (``inner_dim``).
    """

    def __init__(
        self,
        n_items: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        inner_dim: int = 256,
        dropout: float = 0.2,
        loss: str = "bce",
    ):
        super().__init__(n_items, hidden_dim, loss)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_dim, inner_dim, num_layers=num_layers, batch_first=True)
        self.project = nn.Linear(inner_dim, hidden_dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        for name, param in self.gru.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Run the GRU over LongTensor[B, L] (right-padded: padding never precedes a real item)."""
        x = self.dropout(self.item_embedding(item_seq))
        out, _ = self.gru(x)
        return self.project(out)
