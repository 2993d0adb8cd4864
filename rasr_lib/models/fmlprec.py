"""FMLP-Rec (Zhou et al., WWW 2022): learnable frequency-domain filters in place of self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.models.base import SequentialRecommender, init_normal_weights
from rasr_lib.losses import full_softmax_cross_entropy


class FilterLayer(nn.Module):
    """Learnable filter layer (paper §4.2): FFT over positions, x learnable complex weight, inverse FFT.

    Followed by dropout, a residual connection and LayerNorm. The weight has one complex
    coefficient per frequency and hidden unit, so the sequence length is fixed to ``max_len``.
    """

    def __init__(self, max_len: int, hidden_dim: int, dropout: float):
        super().__init__()
        self.max_len = max_len
        # N(0, 0.02) real and imaginary parts, as the authors' code initialises the filter.
        self.complex_weight = nn.Parameter(torch.randn(1, max_len // 2 + 1, hidden_dim, 2) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-12)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Filter FloatTensor[N, max_len, D] along the sequence axis; same shape out ([N, 1, D] if ``last_only``)."""
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # [N, max_len // 2 + 1, D] complex
        spectrum = spectrum * torch.view_as_complex(self.complex_weight)
        filtered = torch.fft.irfft(spectrum, n=x.size(1), dim=1, norm="ortho")
        if last_only:  # the last block feeds only the last position onwards: skip the others' LN/FFN
            x, filtered = x[:, -1:], filtered[:, -1:]
        return self.norm(x + self.dropout(filtered))


class FeedForward(nn.Module):
    """Point-wise feed-forward layer (paper §4.2) with dropout, residual and LayerNorm."""

    def __init__(self, hidden_dim: int, inner_dim: int, dropout: float, activation: str):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_dim, inner_dim)
        self.dense_2 = nn.Linear(inner_dim, hidden_dim)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform FloatTensor[..., D] position by position; same shape out."""
        return self.norm(x + self.dropout(self.dense_2(self.act(self.dense_1(x)))))


class FMLPRec(SequentialRecommender):
    """FMLP-Rec: Zhou, Yu, Zhao & Wen, "Filter-enhanced MLP is All You Need for Sequential
    Recommendation", The Web Conference (WWW) 2022.

    Item + learned position embeddings -> LayerNorm -> dropout -> ``num_layers`` x (learnable
    filter layer -> point-wise FFN), scored by inner product with the item table.
    Published defaults (paper's implementation details and the authors' code): 2 blocks, hidden 64, FFN 4 x 64 = 256,
    GELU, dropout 0.5, max_len 50, N(0, 0.02) init, Adam lr 1e-3, batch 256, BCE with one
    negative. DR4SR's backbone uses the same sizes (2 filter layers, dropout 0.5, d = 64), and so
    do we (``MODEL_DEFAULTS["fmlprec"]``).

    The filter is a circular convolution over the whole padded sequence, so it is NOT causal.
    As in the authors' code (and DR4SR's), every training row is therefore expanded into all its
    prefixes; each prefix is LEFT-padded to ``max_len`` (where the padding sits changes the FFT)
    and only the state at the last position (always index ``max_len - 1``) is used. Position
    ``t`` of :meth:`forward` is the state of the prefix ``item_seq[:, :t + 1]``, so the shared
    per-position losses apply unchanged and later items never leak into earlier predictions.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_layers: int = 2,
        inner_dim: int = 256,
        dropout: float = 0.5,
        activation: str = "gelu",
        loss: str = "bce",
    ):
        super().__init__(n_items, hidden_dim, loss)
        self.max_len = max_len
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.emb_norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.filters = nn.ModuleList(FilterLayer(max_len, hidden_dim, dropout) for _ in range(num_layers))
        self.ffns = nn.ModuleList(FeedForward(hidden_dim, inner_dim, dropout, activation) for _ in range(num_layers))
        self.apply(init_normal_weights)

    def encode_left_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """State at the last position of LongTensor[N, max_len] (left-padded), FloatTensor[N, D]."""
        positions = torch.arange(self.max_len, device=padded.device)
        x = self.item_embedding(padded) + self.position_embedding(positions)[None]
        x = self.dropout(self.emb_norm(x))
        last = len(self.filters) - 1
        for i, (filter_layer, ffn) in enumerate(zip(self.filters, self.ffns)):
            # Only the last position is read out, and after the last filter nothing mixes positions
            # again: run the last block's LayerNorm/FFN on that position alone (same result, ~2x faster).
            x = ffn(filter_layer(x, last_only=i == last))
        return x[:, -1]

    def left_pad_prefixes(self, item_seq: torch.Tensor, rows: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Prefixes ``item_seq[rows[n], :ends[n] + 1]`` (last ``max_len`` items), left-padded: LongTensor[N, max_len].

        ``item_seq`` is LongTensor[B, W]; ``rows``/``ends`` are LongTensor[N]. One gather, no loop.
        """
        cols = torch.arange(self.max_len, device=item_seq.device)
        # Column j of a left-padded prefix ending at position e holds item e - (max_len - 1) + j.
        source = ends[:, None] - (self.max_len - 1) + cols[None, :]  # [N, max_len]
        items = item_seq[rows[:, None], source.clamp(min=0)]
        return torch.where(source >= 0, items, torch.zeros_like(items))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Per-position prefix states of LongTensor[B, W] (right-padded): FloatTensor[B, W, D], 0 on padding."""
        batch, width = item_seq.shape
        cols = torch.arange(width, device=item_seq.device)
        rows, ends = torch.nonzero(cols[None, :] < seq_len[:, None], as_tuple=True)
        states = self.encode_left_padded(self.left_pad_prefixes(item_seq, rows, ends))
        out = states.new_zeros(batch, width, states.size(-1))
        out[rows, ends] = states
        return out

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """State of each whole history (its last real position), FloatTensor[B, D]; one prefix per row."""
        rows = torch.arange(item_seq.size(0), device=item_seq.device)
        ends = (seq_len - 1).clamp(min=0)
        return self.encode_left_padded(self.left_pad_prefixes(item_seq, rows, ends))

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss of every prefix ``item_seq[:t + 1]`` with a target (BCE or CE); scalar.

        Each supervised position of each row becomes one left-padded prefix scored at its last
        position (the authors' prefix-expanded training set, built here on the fly).
        """
        item_seq, target = batch["item_seq"], batch["target"]
        rows, ends = torch.nonzero(target > 0, as_tuple=True)
        hidden = self.encode_left_padded(self.left_pad_prefixes(item_seq, rows, ends))  # [N, D]
        positive = target[rows, ends]
        weights = self.item_weights()
        if self.loss == "bce":
            pos = (hidden * weights[positive]).sum(-1)
            neg = (hidden * weights[batch["negative"][rows, ends]]).sum(-1)
            return F.binary_cross_entropy_with_logits(
                torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            ) * 2.0
        return full_softmax_cross_entropy(hidden, weights, positive)  # PAD excluded


def build(cfg, n_items: int, split=None) -> FMLPRec:
    """FMLP-Rec from the shared ``cfg.model`` sizes, ``cfg.data.max_len`` and ``cfg.train.loss``."""
    m = cfg.model
    return FMLPRec(
        n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
        inner_dim=m.inner_dim, dropout=m.dropout, activation=m.activation, loss=cfg.train.loss,
    )
