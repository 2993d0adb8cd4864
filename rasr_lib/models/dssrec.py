"""DSSRec (Ma et al., KDD 2020): next-item loss + disentangled sequence-to-sequence self-supervision."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.models.base import SequentialRecommender, init_normal_weights
from rasr_lib.models.s3rec import BertStyleEncoder


class DSSRec(SequentialRecommender):
    """DSS: Ma, Zhou, Yang, Cui, Wang & Zhu, "Disentangled Self-Supervision in Sequential
    Recommenders", KDD 2020.

    A causal Transformer encodes the sequence. Besides the next-item (seq2item) loss, each
    training row is cut at a random point t: the prefix x_1..x_t and the reversed future
    x_n..x_{t+1} are encoded by the same encoder, and an intention head turns each into K
    intention vectors (§3.2): p(k | i) = softmax_k(LN(h_i) . LN(c_k) / sqrt d) over K learned
    prototypes c_k ("intention clustering"), p(i) = softmax_i(key_i . query / sqrt d) with the
    query taken from the last position ("intention weighting"), and
    z_k = LN(beta_k + sum_i p(k | i) p(i) h_i). The seq2seq loss reconstructs the future in
    latent space: for every (row, k), InfoNCE of z_k(prefix) against z_k(future) with every
    other (row', k') future vector of the batch as negatives. Only pairs that share an
    intention are trained: the ``keep_share`` (lambda) lowest-loss (row, k) pairs of the batch
    (``select="quantile"``, as the public reproduction) or each row's single best intention
    (``select="best"``). Loss = next-item + ``ss_weight`` * seq2seq.

    Published settings: the authors' code is not public; the PyTorch reproduction
    (abis330/DSSRec, built on S3-Rec's code) uses d = 64, 2 layers, dropout 0.5, K = 4,
    lambda = 0.5, seq2item and seq2seq weights 1, Adam lr 1e-3, batch 256. We use those with
    2 heads and FFN 4d (S3-Rec's encoder), and score items with the last causal state.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int = 256,
        dropout: float = 0.5,
        activation: str = "gelu",
        loss: str = "ce",
        num_intents: int = 4,
        ss_weight: float = 1.0,
        select: str = "quantile",
        keep_share: float = 0.5,
    ):
        super().__init__(n_items, hidden_dim, loss)
        if select not in {"quantile", "best"}:
            raise ValueError(f"dssrec.select must be 'quantile' or 'best', got {select!r}")
        if not 0.0 < keep_share <= 1.0:
            raise ValueError(f"dssrec.keep_share must be in (0, 1], got {keep_share}")
        self.max_len, self.num_intents = max_len, num_intents
        self.ss_weight, self.select, self.keep_share = ss_weight, select, keep_share
        self.encoder = BertStyleEncoder(max_len, hidden_dim, num_layers, num_heads, inner_dim, dropout,
                                        activation)
        # Intention head (reproduction's DSSEncoder): prototypes, 5 LayerNorms, key map, biases.
        self.prototypes = nn.Parameter(torch.empty(num_intents, hidden_dim))
        self.norm_states, self.norm_protos, self.norm_keys, self.norm_query, self.norm_out = (
            nn.LayerNorm(hidden_dim, eps=1e-12) for _ in range(5))
        self.key_map = nn.Linear(hidden_dim, hidden_dim)
        self.query_bias = nn.Parameter(torch.zeros(hidden_dim))
        self.position_keys = nn.Parameter(torch.zeros(max_len, hidden_dim))  # alpha_i of the weighting
        self.beta_prefix = nn.Parameter(torch.empty(num_intents, hidden_dim))
        self.beta_future = nn.Parameter(torch.empty(num_intents, hidden_dim))
        self.apply(init_normal_weights)
        with torch.no_grad():  # N(0, 1/d) as the reproduction
            for p in (self.prototypes, self.beta_prefix, self.beta_future):
                p.normal_(0.0, 1.0 / math.sqrt(hidden_dim))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Causally encode LongTensor[B, L] (right-padded) into FloatTensor[B, L, D]."""
        return self.encoder(self.item_embedding(item_seq), item_seq, causal=True)

    def intentions(self, states: torch.Tensor, seq_len: torch.Tensor, future: bool) -> torch.Tensor:
        """K intention vectors FloatTensor[B, K, D] of encoded rows ``states`` FloatTensor[B, L, D].

        ``seq_len`` LongTensor[B] marks the real positions; ``future`` picks beta of the
        (reversed) future sequence instead of the prefix's.
        """
        b, length, d = states.shape
        scale = math.sqrt(d)
        real = torch.arange(length, device=states.device)[None] < seq_len[:, None]  # [B, L]
        # Intention clustering: how much position i belongs to intention k.
        p_k = torch.softmax(self.norm_states(states) @ self.norm_protos(self.prototypes).T / scale, -1)
        # Intention weighting: how much position i matters for the future (query = last state).
        keys = self.norm_keys(states + self.position_keys[:length])
        keys = keys + torch.relu(self.key_map(keys))
        last = (seq_len - 1).clamp(min=0)
        rows = torch.arange(b, device=states.device)
        query = self.norm_query(self.query_bias + self.position_keys[last] + states[rows, last])  # [B, D]
        # Padding gets no weight (the reproduction's left padding lets it take some).
        p_i = torch.softmax(((keys @ query[:, :, None]).squeeze(-1) / scale).masked_fill(~real, float("-inf")), -1)
        beta = self.beta_future if future else self.beta_prefix
        z = beta + torch.einsum("blk,bl,bld->bkd", p_k, p_i, states)
        return self.norm_out(z)

    def seq2seq_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Disentangled latent seq2seq loss (scalar) of a training batch (``item_seq``, ``target``, ``seq_len``)."""
        item_seq, target, seq_len = batch["item_seq"], batch["target"], batch["seq_len"]
        device = item_seq.device
        full = torch.cat([item_seq[:, :1], target], 1)  # the whole training sequence x_1..x_n
        n = seq_len + 1
        b, width = full.shape
        # Cut point t in [1, n - 2] (future of >= 2 items; t = 1 when n = 2), as the reproduction.
        t = 1 + (torch.rand(b, device=device) * (n - 2).clamp(min=1)).long()
        cols = torch.arange(width - 1, device=device)
        prefix = torch.where(cols[None] < t[:, None], full[:, : width - 1], 0)
        future_len = n - t
        index = (n[:, None] - 1 - cols[None]).clamp(min=0)  # reversed: x_n, x_{n-1}, ..., x_{t+1}
        future = torch.where(cols[None] < future_len[:, None], full.gather(1, index), 0)
        # Both through the shared causal encoder in one pass.
        states = self.forward(torch.cat([prefix, future]), torch.cat([t, future_len]))
        z_in = self.intentions(states[:b], t, future=False)  # [B, K, D]
        z_out = self.intentions(states[b:], future_len, future=True)
        k = self.num_intents
        logits = torch.einsum("bkd,ced->bkce", z_in, z_out).reshape(b, k, b * k) / math.sqrt(z_in.size(-1))
        positive = (torch.arange(b, device=device)[:, None] * k + torch.arange(k, device=device)[None])
        losses = F.cross_entropy(logits.reshape(b * k, b * k), positive.reshape(-1), reduction="none").view(b, k)
        if self.select == "best":  # the intention the prefix and its future share most clearly
            return losses.min(1).values.mean()
        keep = max(1, int(self.keep_share * b * k))
        return losses.reshape(-1).topk(keep, largest=False).values.mean()

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss + ss_weight * seq2seq loss (training mode only; eval = next-item only), a scalar."""
        loss = super().calculate_loss(batch)
        if self.training and self.ss_weight > 0:
            loss = loss + self.ss_weight * self.seq2seq_loss(batch)
        return loss


def build(cfg, n_items: int, split=None) -> DSSRec:
    """DSSRec for ``n_items`` items from ``cfg.model`` sizes and ``cfg.dssrec``; ``split`` is not needed."""
    m, s = cfg.model, cfg.dssrec
    return DSSRec(
        n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
        num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout, activation=m.activation,
        loss=cfg.train.loss, num_intents=s.num_intents, ss_weight=s.ss_weight, select=s.select,
        keep_share=s.keep_share,
    )
