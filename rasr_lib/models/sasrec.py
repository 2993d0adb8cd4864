"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence."""

from __future__ import annotations

import torch
from torch import nn

from rasr_lib.models.base import SequentialRecommender, init_normal_weights


class SASRec(SequentialRecommender):
    """SASRec with a post-LN (DR4SR code, torch default) or pre-LN (SAGERec paper) encoder.

    DR4SR sizes: d = 64, 2 layers, 2 heads, FFN 128, dropout 0.5, GELU, learned positions,
    no embedding LayerNorm. ``layer_norm="pre"`` adds the final LayerNorm pre-LN blocks need.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int = 128,
        dropout: float = 0.5,
        activation: str = "gelu",
        layer_norm: str = "post",
        loss: str = "bce",
    ):
        super().__init__(n_items, hidden_dim, loss)
        if layer_norm not in {"post", "pre"}:
            raise ValueError(f"layer_norm must be 'post' or 'pre', got {layer_norm!r}")
        self.max_len = max_len
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden_dim,
            nhead=num_heads,
            dim_feedforward=inner_dim,
            dropout=dropout,
            activation=activation,
            batch_first=True,
            norm_first=layer_norm == "pre",
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_dim) if layer_norm == "pre" else nn.Identity()
        self.apply(init_normal_weights)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Causally encode LongTensor[B, L] (right-padded, L <= max_len) into FloatTensor[B, L, D]."""
        length = item_seq.size(1)
        positions = torch.arange(length, device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions)[None]
        x = self.dropout(x)
        # Right padding + a causal mask: real positions never attend to padding, so no key mask.
        causal = torch.triu(
            torch.full((length, length), float("-inf"), device=item_seq.device), diagonal=1
        )
        return self.final_norm(self.encoder(x, mask=causal, is_causal=True))

