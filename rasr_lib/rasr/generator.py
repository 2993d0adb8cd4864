"""RaSR Eqs. (5)-(8): the relation-aware sequence regenerator, built on DR4SR's encoder-decoder.

The generator is DR4SR's regenerator (``2.Pretrain_regenerator.py``; method-facts §2.2): a
post-LN transformer encoder-decoder (d 64, 2 heads, 2 + 2 layers, FFN 256, GELU, dropout 0.5,
layer-norm eps 1e-12) with learned positions shared by source and target, and one item table
``[n_items + 3, d]`` (PAD 0, items ``1..n_items``, SOS ``n_items + 1``, EOS ``n_items + 2``) that
is both the input embedding and the output projection. Two additions are switches:

- ``relation_aware``: RaSR's relation-aware conditional encoder E_r. For every source item i,
  ``f(i) = alpha f_c(i) + beta f_t(i) + gamma f_s(i)`` (Eqs. 5-7) is **added to the item
  embedding at the encoder input** (the paper does not say where f enters; adding keeps the
  pre-trained item embedding as the base and lets f act as a relational correction).
- ``n_memories = K``: DR4SR's diversity promoter. The encoder memory is projected into K
  memories; during training a condition encoder reads the target and mixes them with
  Gumbel-softmax weights (entropy term added to the loss); at inference memory k is chosen hard,
  so every source is decoded K times.

Training (Eq. 8) is teacher-forced cross-entropy: inputs ``SOS + target``, outputs
``target + EOS``. DR4SR's extractive mask (logits restricted to the source items) is off by
default: RaSR's augmented targets contain items that are not in the source.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rasr_lib.models.base import init_normal_weights
from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import last_items_padded
from rasr_lib.dropout import use_uniform_dropout
from rasr_lib.losses import full_softmax_cross_entropy
from rasr_lib.rasr.augment import AugmentedSet, training_parts
from rasr_lib.rasr.graphs import RelationGraph
from rasr_lib.runtime import load_training_state, save_training_state

logger = logging.getLogger(__name__)

PREFIX_MODES = ("copy", "restrictive")
DEDUP_MODES = ("source", "global")
LAYER_NORM_EPS = 1e-12  # DR4SR's nn.Transformer setting


@dataclass(frozen=True)
class GeneratorConfig:
    """The regenerator (DR4SR sizes), RaSR's relation-aware encoder, its training and its decoding."""

    # --- architecture (DR4SR 2.Pretrain_regenerator.py)
    hidden_dim: int = 64  # width d of the item table, positions and attention
    num_heads: int = 2  # attention heads in every block
    num_encoder_layers: int = 2  # encoder blocks
    num_decoder_layers: int = 2  # decoder blocks
    inner_dim: int = 256  # feed-forward width
    dropout: float = 0.5  # dropout on input embeddings and inside every block (DR4SR: 0.5)
    max_len: int = 50  # sources keep their last max_len items, targets their first max_len (+ EOS)
    wrap_source: bool = True  # encode the source as SOS + items + EOS, as DR4SR does
    # --- RaSR relation-aware conditional encoder E_r (Eqs. 5-7)
    relation_aware: bool = True  # add f(i) of Eq. (7) to every source item embedding
    neighbours: int = 10  # |N(i)|: top-k neighbours of row i in C and in T, by weight (self excluded)
    alpha: float = 1.0  # weight of the co-occurrence feature f_c in Eq. (7)
    beta: float = 1.0  # weight of the temporal feature f_t in Eq. (7)
    gamma: float = 1.0  # weight of the semantic feature f_s in Eq. (7) (not the decoding gamma)
    # --- DR4SR diversity promoter
    n_memories: int = 5  # K memory projections of the encoder output ("diversity factor"; 1 = off)
    tau_start: float = 1.0  # initial Gumbel-softmax temperature
    tau_decay: float = 0.995  # temperature factor applied after every training forward
    tau_min: float = 0.1  # temperature floor
    entropy_weight: float = 1.0  # weight of the entropy of the Gumbel weights in the loss
    extractive_mask: bool = False  # DR4SR: training logits restricted to source items + EOS
    # --- optimisation (fit_generator)
    lr: float = 1e-3  # Adam learning rate (cosine-annealed over the epochs, stepped per epoch)
    adam_beta2: float = 0.98  # Adam beta2 (beta1 = 0.9)
    adam_eps: float = 1e-9  # Adam epsilon
    batch_size: int = 256  # (source, target) pairs per step
    epochs: int = 100  # training epochs (RaSR: 100; DR4SR: 40)
    # --- hybrid greedy decoding (regenerate.py)
    decode_max_len: int = 25  # decoding cap in tokens including SOS (DR4SR: 25, so <= 24 items)
    keep_prefix: int = 2  # first steps tied to the source (RaSR's "first K items preserved")
    prefix_mode: str = "copy"  # copy: force the source's first items | restrictive: any unused source item
    generative_prob: float = 1.0  # later steps: P(any unused item), else unused source items (DR4SR gamma)
    decode_batch_size: int = 256  # sources per decoding batch (each decoded n_memories times)
    dedup: str = "source"  # source: drop copies of the source and repeats per source | global: any repeat

    def __post_init__(self):
        if self.prefix_mode not in PREFIX_MODES:
            raise ValueError(f"prefix_mode must be one of {PREFIX_MODES}, got {self.prefix_mode!r}")
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup must be one of {DEDUP_MODES}, got {self.dedup!r}")
        if self.n_memories < 1:
            raise ValueError(f"n_memories must be >= 1, got {self.n_memories}")
        if not 0.0 <= self.generative_prob <= 1.0:
            raise ValueError(f"generative_prob must be in [0, 1], got {self.generative_prob}")
        if not 2 <= self.decode_max_len <= self.max_len + 1:
            raise ValueError(f"decode_max_len must be in [2, max_len + 1] (positions), got "
                             f"{self.decode_max_len} with max_len {self.max_len}")


# Overrides that turn the defaults into each method's setting (method-facts §2.2-2.3, §4).
GENERATOR_PRESETS: dict[str, dict] = {
    # RaSR: relation-aware encoder, no extractive mask, K = 5, first 2 source items copied,
    # free ("autonomous") generation afterwards, 100 epochs.
    "rasr": {},
    # DR4SR: plain encoder, extractive mask, 40 epochs, 2 restrictive steps, gamma = 0.1 (the best
    # value of DR4SR's own sweep; its released script hard-codes 1.0, the worst).
    "dr4sr": {"relation_aware": False, "extractive_mask": True, "epochs": 40,
              "prefix_mode": "restrictive", "generative_prob": 0.1, "dedup": "global"},
}


def generator_config(preset: str = "rasr", **overrides) -> GeneratorConfig:
    """A :class:`GeneratorConfig` for ``preset`` (``rasr`` | ``dr4sr``) with keyword overrides."""
    if preset not in GENERATOR_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(GENERATOR_PRESETS)}")
    return GeneratorConfig(**{**GENERATOR_PRESETS[preset], **overrides})


# --------------------------------------------------------------------------- ragged sequences


class Ragged(NamedTuple):
    """Variable-length sequences in CSR form: row r is ``items[offsets[r]:offsets[r + 1]]``."""

    offsets: np.ndarray  # int64[n + 1]
    items: np.ndarray  # int64[offsets[-1]], item ids 1..n_items

    @property
    def n_rows(self) -> int:
        """Number of sequences."""
        return int(len(self.offsets) - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Length of every row, int64[n]."""
        return np.diff(self.offsets)


def as_ragged(seqs) -> Ragged:
    """A :class:`Ragged` from a Ragged, an ``(offsets, items)`` pair or a list of sequences."""
    if isinstance(seqs, Ragged):
        return seqs
    if isinstance(seqs, tuple) and len(seqs) == 2 and all(isinstance(a, np.ndarray) for a in seqs):
        offsets, items = np.asarray(seqs[0], dtype=np.int64), np.asarray(seqs[1], dtype=np.int64)
        if offsets.ndim == 1 and len(offsets) and offsets[0] == 0 and offsets[-1] == len(items) \
                and (np.diff(offsets) >= 0).all():
            return Ragged(offsets, items)
    arrays = [np.asarray(s, dtype=np.int64).ravel() for s in seqs]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return Ragged(offsets, items)


def pad_rows(seqs: Ragged, rows: np.ndarray, width: int, keep: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64[len(rows), w] of the given rows (w = longest kept row), plus lengths.

    ``keep="last"`` keeps each row's last ``width`` items (sources), ``"first"`` its first ones.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = seqs.offsets[rows], seqs.offsets[rows + 1]
    if keep == "first":
        ends = np.minimum(ends, starts + width)
    elif keep != "last":
        raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
    longest = int(min(width, (ends - starts).max(initial=0)))
    return last_items_padded(seqs.items, starts, ends, max(longest, 1))


def rasr_pairs(
    ds: SeqDataset, augmented: AugmentedSet, max_len: int = 50, include_identity: bool = False
) -> tuple[Ragged, Ragged]:
    """RaSR Eq. (8) pairs: source = a user's training part ``seq[:-2]`` (last max_len), target = a variant.

    One pair per augmented variant, ordered as ``augmented``; with ``include_identity`` every
    training part is also paired with itself (not in the paper). Returns (sources, targets).
    """
    if augmented.cfg.max_len not in (0, max_len):
        logger.warning("variants edit the last %d items but sources keep the last %d",
                       augmented.cfg.max_len, max_len)
    src_off, src_items, users = training_parts(ds, max_len)
    row_of_user = np.full(ds.n_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(len(users))
    rows = row_of_user[augmented.source_user]
    if (rows < 0).any():
        raise ValueError("augmented set refers to users without a training part")
    tgt = Ragged(augmented.offsets.astype(np.int64), augmented.items.astype(np.int64))
    if include_identity:
        rows = np.concatenate([rows, np.arange(len(users))])
        variants = np.split(tgt.items, tgt.offsets[1:-1])
        tgt = as_ragged(list(variants) + list(np.split(src_items, src_off[1:-1])))
    lengths = np.diff(src_off)[rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(src_off[rows] - offsets[:-1], lengths)
    return Ragged(offsets, src_items[flat]), tgt


# --------------------------------------------------------------------------- relation features


def relation_neighbours(mat: sp.spmatrix, k: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """N(i) of Eq. (5): the top-k entries of each row of ``mat`` (self excluded), weights row-normalised.

    Returns (index int64[n_rows, k], weight float32[n_rows, k]); rows beyond ``mat`` and missing
    neighbours get index 0 and weight 0. Ties go to the smaller item id.
    """
    coo = sp.coo_matrix(mat)
    keep = (coo.row != coo.col) & (coo.data > 0)
    row, col, val = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    order = np.lexsort((col, -val, row))  # by row, then weight descending, then item id
    row, col, val = row[order], col[order], val[order]
    starts = np.searchsorted(row, np.arange(n_rows))
    rank = np.arange(len(row)) - starts[row]
    top = rank < k
    index = np.zeros((n_rows, k), dtype=np.int64)
    weight = np.zeros((n_rows, k), dtype=np.float64)
    index[row[top], rank[top]] = col[top]
    weight[row[top], rank[top]] = val[top]
    total = weight.sum(axis=1, keepdims=True)
    weight = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0)
    return index, weight.astype(np.float32)


# --------------------------------------------------------------------------- the model


class SequenceGenerator(nn.Module):
    """DR4SR's transformer encoder-decoder with RaSR's relation-aware encoder E_r (Eqs. 5-8).

    ``graph`` (C and T, Eq. 3) and ``semantic`` (float32[n_items + 1, e], Eq. 2) are needed when
    ``cfg.relation_aware``; their top-k tables and the frozen semantic vectors are buffers, so a
    checkpoint carries them.
    """

    def __init__(
        self,
        n_items: int,
        cfg: GeneratorConfig | None = None,
        graph: RelationGraph | None = None,
        semantic: np.ndarray | None = None,
    ):
        super().__init__()
        cfg = cfg or GeneratorConfig()
        self.cfg = cfg
        self.n_items = n_items
        self.sos, self.eos, self.vocab_size = n_items + 1, n_items + 2, n_items + 3
        self.n_memories = cfg.n_memories
        d = cfg.hidden_dim
        self.item_embedding = nn.Embedding(self.vocab_size, d, padding_idx=0)
        self.position_embedding = nn.Embedding(cfg.max_len + 2, d)  # SOS + max_len items + EOS
        self.input_dropout = nn.Dropout(cfg.dropout)

        def block(decoder: bool = False):
            kind = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
            return kind(d, cfg.num_heads, cfg.inner_dim, cfg.dropout, activation="gelu",
                        layer_norm_eps=LAYER_NORM_EPS, batch_first=True)

        # nn.Transformer (DR4SR) puts a final LayerNorm after both stacks.
        self.encoder = nn.TransformerEncoder(block(), cfg.num_encoder_layers,
                                             norm=nn.LayerNorm(d, eps=LAYER_NORM_EPS),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(block(decoder=True), cfg.num_decoder_layers,
                                             norm=nn.LayerNorm(d, eps=LAYER_NORM_EPS))
        if cfg.n_memories > 1:
            K = cfg.n_memories
            self.memory_proj = nn.Sequential(nn.Linear(d, d * K), nn.ReLU(), nn.Linear(d * K, d * K))
            self.condition_encoder = nn.TransformerEncoder(block(), 2, enable_nested_tensor=False)
            self.condition_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, K))
            self.register_buffer("tau", torch.tensor(float(cfg.tau_start)))
        if cfg.relation_aware:
            if graph is None or semantic is None:
                raise ValueError("relation_aware=True needs the relation graph and the semantic embeddings")
            if graph.n_items != n_items or semantic.shape[0] != n_items + 1:
                raise ValueError(f"graph ({graph.n_items} items) / semantic ({semantic.shape[0]} rows) "
                                 f"do not match n_items = {n_items}")
            for name, mat in (("c", graph.C), ("t", graph.T)):
                index, weight = relation_neighbours(mat, cfg.neighbours, self.vocab_size)
                self.register_buffer(f"{name}_index", torch.from_numpy(index))
                self.register_buffer(f"{name}_weight", torch.from_numpy(weight))
            table = np.zeros((self.vocab_size, semantic.shape[1]), dtype=np.float32)
            table[: n_items + 1] = semantic
            self.register_buffer("semantic", torch.from_numpy(table))  # frozen e_i (Eq. 2)
            self.semantic_proj = nn.Linear(semantic.shape[1], d, bias=False)  # W_s (Eq. 6)
        self.apply(init_normal_weights)
        use_uniform_dropout(self)  # the same dropout, drawn ~4x faster on the CPU

    # ----------------------------------------------------------------- embeddings

    def init_item_embeddings(self, weight: torch.Tensor) -> None:
        """Copy a backbone's ``item_embedding.weight`` [n_items + 1, d] into rows 0..n_items (DR4SR §2.2).

        SOS and EOS rows are redrawn from N(0, 0.02); the table stays trainable.
        """
        weight = torch.as_tensor(weight, dtype=self.item_embedding.weight.dtype)
        if tuple(weight.shape) != (self.n_items + 1, self.cfg.hidden_dim):
            raise ValueError(f"expected [{self.n_items + 1}, {self.cfg.hidden_dim}], "
                             f"got {list(weight.shape)}")
        with torch.no_grad():
            table = self.item_embedding.weight
            table[: self.n_items + 1].copy_(weight.to(table.device))
            table[self.sos :].normal_(0.0, 0.02)

    def relation_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """RaSR Eqs. (5)-(7): f(i) = alpha f_c(i) + beta f_t(i) + gamma f_s(i), FloatTensor[B, L, d].

        ``tokens`` LongTensor[B, L]; f_c(i) = sum_{j in N_C(i)} C^_ij v_j with v the (trainable)
        item table, f_t likewise with T, f_s(i) = W_s e_i; PAD/SOS/EOS get 0.
        """
        table = self.item_embedding.weight
        f_c = torch.einsum("blk,blkd->bld", self.c_weight[tokens], table[self.c_index[tokens]])
        f_t = torch.einsum("blk,blkd->bld", self.t_weight[tokens], table[self.t_index[tokens]])
        f_s = self.semantic_proj(self.semantic[tokens])
        cfg = self.cfg
        return cfg.alpha * f_c + cfg.beta * f_t + cfg.gamma * f_s

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item + position embedding of LongTensor[B, L] tokens (before dropout), FloatTensor[B, L, d]."""
        positions = torch.arange(tokens.size(1), device=tokens.device)
        return self.item_embedding(tokens) + self.position_embedding(positions)[None]

    # ----------------------------------------------------------------- encoder side

    def source_tokens(self, src: torch.Tensor) -> torch.Tensor:
        """Encoder tokens LongTensor[B, L + 2]: SOS + items + EOS (``wrap_source``), right-padded.

        ``src`` LongTensor[B, L] holds right-padded item ids (0 = padding), L <= max_len.
        """
        if src.size(1) > self.cfg.max_len:
            raise ValueError(f"source width {src.size(1)} exceeds max_len {self.cfg.max_len}")
        if not self.cfg.wrap_source:
            return src
        batch, width = src.shape
        lengths = (src > 0).sum(1)
        tokens = torch.zeros(batch, width + 2, dtype=torch.long, device=src.device)
        tokens[:, 0] = self.sos
        tokens[:, 1 : width + 1] = src
        tokens[torch.arange(batch, device=src.device), lengths + 1] = self.eos
        return tokens

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RaSR encoder E with E_r: (memory [B, Ls, d], key padding bool[B, Ls], tokens LongTensor[B, Ls]).

        ``src`` LongTensor[B, L]: right-padded item ids; Ls = L + 2 with ``wrap_source``.
        """
        tokens = self.source_tokens(src)
        x = self._embed(tokens)
        if self.cfg.relation_aware:
            x = x + self.relation_features(tokens)  # f(i) added to the item embedding (our choice)
        pad = tokens == 0
        memory = self.encoder(self.input_dropout(x), src_key_padding_mask=pad)
        return memory, pad, tokens

    def memories(self, memory: torch.Tensor) -> torch.Tensor:
        """DR4SR diversity promoter: K memory projections FloatTensor[B, Ls, K, d] of memory [B, Ls, d]."""
        batch, length, d = memory.shape
        return self.memory_proj(memory).view(batch, length, self.n_memories, d)

    def condition_weights(self, tgt_emb: torch.Tensor, tgt_pad: torch.Tensor) -> torch.Tensor:
        """DR4SR condition encoder: weights FloatTensor[B, K] over the memories from the target.

        Training: Gumbel-softmax at temperature ``tau`` (then ``tau <- max(tau * decay, min)``);
        evaluation: one-hot of the most likely memory.
        """
        hidden = self.condition_encoder(tgt_emb, src_key_padding_mask=tgt_pad)
        keep = (~tgt_pad).unsqueeze(-1).float()
        pooled = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        logits = self.condition_head(pooled)
        if not self.training:
            return F.one_hot(logits.argmax(-1), self.n_memories).float()
        weights = F.gumbel_softmax(logits, tau=float(self.tau), dim=-1)
        self.tau.fill_(max(float(self.tau) * self.cfg.tau_decay, self.cfg.tau_min))
        return weights

    def select_memory(self, memory: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Memory k = ``index[b]`` of each row (hard choice, inference): FloatTensor[B, Ls, d]."""
        if self.n_memories == 1:
            return memory
        rows = torch.arange(memory.size(0), device=memory.device)
        return self.memories(memory)[rows, :, index]

    # ----------------------------------------------------------------- decoder side

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """Causal decoder states FloatTensor[B, Lt, d] of right-padded ``tgt_in`` LongTensor[B, Lt]."""
        length = tgt_in.size(1)
        x = self.input_dropout(self._embed(tgt_in))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tgt_in.device)
        # Right padding + causal mask: real positions never attend to padding (no target key mask).
        return self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True,
                            memory_key_padding_mask=memory_pad)

    def decode_next(
        self, tokens: torch.Tensor, position: int, memory: torch.Tensor, memory_pad: torch.Tensor,
        cache: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One incremental decoder step: the state FloatTensor[A, d] at ``position`` of token LongTensor[A].

        ``cache`` holds each layer's inputs at the earlier positions ([A, position, d] per layer;
        None at position 0) and is returned extended. Equals ``decode(prefix)[:, -1]`` in eval
        mode, at O(position) instead of O(position^2) cost per step.
        """
        x = self.item_embedding(tokens) + self.position_embedding.weight[position]
        x = self.input_dropout(x)[:, None]  # [A, 1, d]
        new_cache = []
        for i, layer in enumerate(self.decoder.layers):
            if layer.norm_first:
                raise NotImplementedError("decode_next implements post-LN decoder layers only")
            keys = x if cache is None else torch.cat([cache[i], x], dim=1)
            new_cache.append(keys)
            x = layer.norm1(x + layer.dropout1(layer.self_attn(x, keys, keys, need_weights=False)[0]))
            attn = layer.multihead_attn(x, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0]
            x = layer.norm2(x + layer.dropout2(attn))
            ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))
            x = layer.norm3(x + layer.dropout3(ff))
        if self.decoder.norm is not None:
            x = self.decoder.norm(x)
        return x[:, 0], new_cache

    def _states(
        self, src: torch.Tensor, tgt_in: torch.Tensor, memory_index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(decoder states [B, Lt, d], memory weights [B, K] or None, source tokens [B, Ls])."""
        memory, pad, tokens = self.encode(src)
        weights = None
        if self.n_memories > 1:
            if memory_index is not None:
                memory = self.select_memory(memory, memory_index)
            else:
                tgt_pad = tgt_in == 0
                tgt_emb = self.input_dropout(self._embed(tgt_in))
                weights = self.condition_weights(tgt_emb, tgt_pad)
                memory = torch.einsum("blkd,bk->bld", self.memories(memory), weights)
        return self.decode(tgt_in, memory, pad), weights, tokens

    def source_membership(self, tokens: torch.Tensor) -> torch.Tensor:
        """bool[B, n_items + 3]: the items of each source plus EOS (PAD and SOS never)."""
        member = torch.zeros(tokens.size(0), self.vocab_size, dtype=torch.bool, device=tokens.device)
        member.scatter_(1, tokens, True)
        member[:, 0] = False
        member[:, self.sos] = False
        member[:, self.eos] = True
        return member

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, memory_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits FloatTensor[B, Lt, n_items + 3] of the next token after each ``tgt_in`` position.

        ``src`` LongTensor[B, Ls]: right-padded source items; ``tgt_in`` LongTensor[B, Lt]: SOS +
        target items, right-padded; ``memory_index`` LongTensor[B] picks a memory (else the
        condition encoder mixes them).
        """
        states, _, tokens = self._states(src, tgt_in, memory_index)
        logits = self._never_targets(states @ self.item_embedding.weight.T)
        if self.cfg.extractive_mask:
            logits = logits.masked_fill(~self.source_membership(tokens)[:, None, :], -torch.inf)
        return logits

    def _never_targets(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] with PAD and SOS set to -inf in place: they are never targets (DR4SR keeps them).

        In place on the fresh matmul output: two columns are written instead of copying the whole
        [N, V] matrix (decoding calls this every step; training scores only possible targets).
        """
        logits[..., 0] = -torch.inf
        logits[..., self.sos] = -torch.inf
        return logits

    def teacher_forcing(self, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (8) inputs SOS + target and outputs target + EOS, LongTensor[B, min(L, max_len) + 1] each.

        ``tgt`` LongTensor[B, L]: right-padded target items; a target longer than ``max_len`` is
        cut after its first ``max_len`` inputs (its EOS is then never seen).
        """
        batch = tgt.size(0)
        lengths = (tgt > 0).sum(1)
        zeros = torch.zeros(batch, 1, dtype=torch.long, device=tgt.device)
        out = torch.cat([tgt, zeros], dim=1)
        out[torch.arange(batch, device=tgt.device), lengths] = self.eos
        tgt_in = torch.cat([zeros + self.sos, tgt], dim=1)
        width = min(tgt.size(1), self.cfg.max_len) + 1
        return tgt_in[:, :width], out[:, :width]

    def loss(self, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RaSR Eq. (8): (cross-entropy over target + EOS tokens, PAD ignored; entropy of the memory weights).

        ``src``, ``tgt`` LongTensor[B, Ls], [B, Lt]: right-padded item ids. The entropy is 0 when
        K = 1; the caller adds ``entropy_weight * entropy`` (DR4SR: 1).
        """
        tgt_in, tgt_out = self.teacher_forcing(tgt)
        states, weights, tokens = self._states(src, tgt_in)
        valid = tgt_out > 0
        table = self.item_embedding.weight
        # Real positions only; PAD and SOS are never targets (the softmax of -inf logits there).
        if self.cfg.extractive_mask:
            logits = self._never_targets(states[valid] @ table.T)  # [N, n_items + 3]
            member = self.source_membership(tokens)[torch.nonzero(valid)[:, 0]]
            ce = F.cross_entropy(logits.masked_fill(~member, -torch.inf), tgt_out[valid])
        else:
            ce = full_softmax_cross_entropy(states[valid], table, tgt_out[valid], excluded=(0, self.sos))
        if weights is None:
            entropy = ce.new_zeros(())
        else:
            entropy = -(weights * torch.log(weights + 1e-12)).sum(-1).mean()
        return ce, entropy


# --------------------------------------------------------------------------- training


def iterate_pair_batches(
    src: Ragged, tgt: Ragged, batch_size: int, max_len: int, generator: torch.Generator, pool: int = 32
):
    """Yield shuffled (src LongTensor[B, Ls], tgt LongTensor[B, Lt]) batches trimmed to their longest row.

    Sources keep their last ``max_len`` items, targets their first ``max_len + 1``. Pairs are
    sorted by length inside pools of ``pool`` batches (then batches are shuffled), as in
    :func:`rasr_lib.training.iterate_train_batches`.
    """
    n = src.n_rows
    order = torch.randperm(n, generator=generator).numpy()
    size = np.maximum(np.minimum(src.lengths, max_len), np.minimum(tgt.lengths, max_len + 1))
    chunks = [order[i : i + batch_size * pool] for i in range(0, n, batch_size * pool)]
    order = np.concatenate([c[np.argsort(size[c], kind="stable")] for c in chunks]) if chunks else order
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    for b in torch.randperm(len(batches), generator=generator).tolist():
        rows = batches[b]
        s, _ = pad_rows(src, rows, max_len, keep="last")
        t, _ = pad_rows(tgt, rows, max_len + 1, keep="first")
        yield torch.from_numpy(s), torch.from_numpy(t)


def fit_generator(
    model: SequenceGenerator,
    pairs_src,
    pairs_tgt,
    cfg: GeneratorConfig,
    device: torch.device,
    generator: torch.Generator,
    checkpoint: Path | None = None,
    progress: bool = True,
    deadline: float | None = None,
) -> list[dict]:
    """Train the regenerator on (source, target) pairs (RaSR Eq. 8 + DR4SR's entropy term).

    ``pairs_src``/``pairs_tgt``: :class:`Ragged`, ``(offsets, items)`` or lists of sequences.
    Adam (lr, betas (0.9, adam_beta2), eps), cosine annealing over ``cfg.epochs`` stepped once per
    epoch (DR4SR steps it per batch, a bug that makes the rate oscillate), no validation: the
    model after the last epoch is kept. With ``checkpoint`` the full state is saved atomically
    after every epoch and a later call resumes. ``deadline`` (a ``time.time()`` value) stops
    after the epoch whose duration, repeated, would end past it: fewer than ``cfg.epochs``
    entries come back and, with ``checkpoint``, the same call resumes. Returns one dict per
    epoch (loss, ce, entropy, lr, tau, seconds).
    """
    src, tgt = as_ragged(pairs_src), as_ragged(pairs_tgt)
    if src.n_rows != tgt.n_rows:
        raise ValueError(f"{src.n_rows} sources but {tgt.n_rows} targets")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, cfg.adam_beta2), eps=cfg.adam_eps)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    history: list[dict] = []
    start = 1
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_training_state(checkpoint, model, optimizer, generator, device)
        scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        logger.info("resumed generator training from %s at epoch %d", checkpoint, start)
    bar = tqdm(range(start, cfg.epochs + 1), desc="train generator", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        tic, sums, n_batches = time.perf_counter(), np.zeros(3), 0
        lr = optimizer.param_groups[0]["lr"]
        for s, t in iterate_pair_batches(src, tgt, cfg.batch_size, cfg.max_len, generator):
            s, t = s.to(device, non_blocking=True), t.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            ce, entropy = model.loss(s, t)
            loss = ce + cfg.entropy_weight * entropy
            loss.backward()
            optimizer.step()
            sums += [float(loss.detach()), float(ce.detach()), float(entropy.detach())]
            n_batches += 1
        scheduler.step()
        mean = sums / max(n_batches, 1)
        entry = {"epoch": epoch, "loss": mean[0], "ce": mean[1], "entropy": mean[2], "lr": lr,
                 "tau": float(model.tau) if model.n_memories > 1 else 0.0,
                 "seconds": time.perf_counter() - tic, "device": torch.device(device).type}
        history.append(entry)
        bar.set_postfix(loss=f"{entry['loss']:.4f}")
        logger.info("generator epoch %d loss %.4f (ce %.4f, entropy %.4f) lr %.2e",
                    epoch, entry["loss"], entry["ce"], entry["entropy"], lr)
        if checkpoint is not None:
            save_training_state(Path(checkpoint), model, optimizer, generator,
                                scheduler=scheduler.state_dict(), history=history, epoch=epoch)
        if deadline is not None and epoch < cfg.epochs and time.time() + entry["seconds"] > deadline:
            logger.info("generator epoch %d: stopping before the deadline; rerun to resume", epoch)
            break
    bar.close()
    return history


def cosine_lr(cfg: GeneratorConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch`` under the per-epoch cosine schedule of :func:`fit_generator`."""
    return cfg.lr * (1 + math.cos(math.pi * (epoch - 1) / max(cfg.epochs, 1))) / 2
