"""GCE-GNN (Wang et al., SIGIR 2020): session graph + global item graph, soft-attention readout."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rasr_lib.models.base import SequentialRecommender

NEG = -1e9  # finite "minus infinity": fully masked rows stay NaN-free in forward and backward


def training_sequences(split) -> tuple[np.ndarray, np.ndarray]:
    """Every training row as one right-padded sequence int64[R, L + 1] with lengths int64[R].

    A row's sequence is its first input item followed by all its targets (the items the training
    loop sees); validation and test targets are never part of it.
    """
    inputs, targets, lengths = split.train_input, split.train_target, split.train_len
    keep = lengths > 0
    inputs, targets, lengths = inputs[keep], targets[keep], lengths[keep]
    seqs = np.concatenate([inputs[:, :1], targets], axis=1)
    cols = np.arange(seqs.shape[1])
    seqs = np.where(cols[None, :] <= lengths[:, None], seqs, 0)  # drop anything past the last target
    return seqs.astype(np.int64), (lengths + 1).astype(np.int64)


def windowed_pairs(seqs: np.ndarray, lengths: np.ndarray, window: int):
    """Ordered pairs (src, dst, distance) int64[P] of items 1..window positions apart in ``seqs``."""
    src, dst, dist = [], [], []
    cols = np.arange(seqs.shape[1])
    for k in range(1, window + 1):  # a loop over distances, not over rows
        ok = cols[None, : seqs.shape[1] - k] + k < lengths[:, None]
        src.append(seqs[:, :-k][ok])
        dst.append(seqs[:, k:][ok])
        dist.append(np.full(int(ok.sum()), k, dtype=np.int64))
    if not src:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(src), np.concatenate(dst), np.concatenate(dist)


def build_global_graph(split, n_items: int, window: int = 2, n_neighbors: int = 12):
    """GCE-GNN's global graph from the TRAINING rows: top-``n_neighbors`` neighbours per item.

    Items at most ``window`` (epsilon) positions apart in a training sequence are neighbours in
    both directions; the edge weight is how often that happens. Returns ``neighbors``
    int64[n_items + 1, K] (0 = no neighbour) and ``weights`` float32[n_items + 1, K], sorted by
    weight (ties: smaller item id first).
    """
    seqs, lengths = training_sequences(split)
    src, dst, _ = windowed_pairs(seqs, lengths, window)
    rows, cols = np.concatenate([src, dst]), np.concatenate([dst, src])
    counts = sp.coo_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                           shape=(n_items + 1, n_items + 1)).tocsr()
    counts.sum_duplicates()
    counts = counts.tocoo()
    order = np.lexsort((counts.col, -counts.data, counts.row))  # by row, weight desc, item id
    row, col, data = counts.row[order], counts.col[order], counts.data[order]
    starts = np.searchsorted(row, np.arange(n_items + 1))
    rank = np.arange(len(row)) - starts[row]
    keep = rank < n_neighbors
    neighbors = np.zeros((n_items + 1, n_neighbors), dtype=np.int64)
    weights = np.zeros((n_items + 1, n_neighbors), dtype=np.float32)
    neighbors[row[keep], rank[keep]] = col[keep]
    weights[row[keep], rank[keep]] = data[keep]
    return neighbors, weights


def session_relations(items: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Session-graph relations (§3.2/§4.2) between positions of ``items`` LongTensor[S, W] (time order).

    Returns ``relation`` LongTensor[S, W, W] of the item pair at positions (i, j): 0 none,
    1 self (same item), 2 out (a step item(i) -> item(j) occurs), 3 in (item(j) -> item(i)),
    4 in-out (both) — and ``first`` BoolTensor[S, W], True at each item's first occurrence
    (the position that stands for the unique session node).
    """
    S, W = items.shape
    device = items.device
    valid = torch.arange(W, device=device)[None, :] < lengths[:, None]
    same = (items[:, :, None] == items[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    sf = same.float()
    # out[i, j] = exists p: item(p) == item(i) and item(p + 1) == item(j), p + 1 < length
    out = (sf[:, :, :-1] @ sf[:, 1:, :]) > 0 if W > 1 else torch.zeros_like(same)
    inn = out.transpose(1, 2)
    relation = torch.zeros(S, W, W, dtype=torch.long, device=device)
    relation[inn] = 3
    relation[out] = 2
    relation[out & inn] = 4
    relation[same] = 1
    earlier = torch.tril(torch.ones(W, W, dtype=torch.bool, device=device), diagonal=-1)
    first = valid & ~(same & earlier).any(2)
    return relation, first


class GCEGNN(SequentialRecommender):
    """GCE-GNN: Wang, Wei, Hu, Cao, Li, Tang, "Global Context Enhanced Graph Neural Networks for
    Session-based Recommendation", SIGIR 2020 (code: CCIIPLab/GCE-GNN).

    A session is a prefix of a user's sequence. Each item of the session gets
    (1) a session-level representation: attention over its neighbours in the session graph,
    with one attention vector per relation (self, out, in, in-out) and LeakyReLU(alpha) scores
    (§4.2); (2) a global-level representation: session-aware attention over its top-12
    neighbours in the global graph (pairs <= epsilon apart in training sequences, weighted by
    frequency), scores w2^T LeakyReLU(W1 [s * h_v || w_v]) with s the mean item embedding of the
    session, then ReLU(W3 [h || aggregate]) (§4.1, 1 hop); the two are summed after dropout.
    The readout (§4.3) adds REVERSED position embeddings (index 0 = last item), gates with the
    session mean, and sums beta_i h_i without softmax; scores are inner products with the
    item table (§4.4), trained with softmax cross-entropy.

    Published defaults (paper §5 and main.py): d = 100, 1 hop, 12 neighbours, dropout_global
    0.5, dropout_local 0, dropout_gcn 0 (Nowplaying), alpha 0.2, Adam lr 1e-3 with x0.1 every 3
    epochs, L2 1e-5, batch 100, all weights U(-1/sqrt(d), 1/sqrt(d)). Ours: the same except
    d = 64 and batch 256 (RaSR's backbone settings) and no step decay (our loop's schedule).

    Training on our rows: position t of a row is the session (prefix) of items <= t with target
    ``target[t]``; every prefix is encoded on its own (so position t never sees later items), in
    length-sorted chunks under activation checkpointing to bound memory.

    Departures from the released code: nodes are sequence positions, and attention keys are
    restricted to each item's first occurrence, which equals the code's unique-item graph; the
    relation of a pair is "in-out" whenever both directions occur (the code's overwrite order
    can leave it asymmetric); a length-1 session keeps its self-loop (the code leaves it with no
    edge); items with fewer than 12 global neighbours mask the missing slots instead of
    resampling neighbours with replacement; the global graph uses epsilon = 2 (``build_graph.py``
    counts distances 1..3).
    """

    def __init__(
        self,
        n_items: int,
        neighbors: np.ndarray,
        weights: np.ndarray,
        max_len: int = 50,
        hidden_dim: int = 64,
        dropout_global: float = 0.5,
        dropout_local: float = 0.0,
        dropout_gcn: float = 0.0,
        alpha: float = 0.2,
        chunk: int = 8192,
        loss: str = "ce",
    ):
        super().__init__(n_items, hidden_dim, loss)
        d = hidden_dim
        self.max_len = max_len
        self.dropout_global, self.dropout_local, self.dropout_gcn = dropout_global, dropout_local, dropout_gcn
        self.alpha, self.chunk = alpha, chunk
        # The global graph is fixed data rebuilt from the split at build time: not checkpointed.
        self.register_buffer("neighbors", torch.as_tensor(neighbors, dtype=torch.long), persistent=False)
        self.register_buffer("neighbor_weights", torch.as_tensor(weights, dtype=torch.float32),
                             persistent=False)
        self.position_embedding = nn.Embedding(max_len, d)  # reversed positions (§4.3)
        self.relation = nn.Parameter(torch.empty(4, d))  # a_self, a_out, a_in, a_in-out (§4.2)
        self.global_w1 = nn.Parameter(torch.empty(d + 1, d))  # §4.1: [s * h_v || w_v] -> d
        self.global_w2 = nn.Parameter(torch.empty(d, 1))
        self.global_w3 = nn.Parameter(torch.empty(2 * d, d))  # §4.1: [h || h_N] -> d
        self.read_w1 = nn.Parameter(torch.empty(2 * d, d))  # §4.3: [p || h] -> d
        self.read_w2 = nn.Parameter(torch.empty(d, 1))
        self.glu1 = nn.Linear(d, d)
        self.glu2 = nn.Linear(d, d, bias=False)
        stdv = 1.0 / math.sqrt(d)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-stdv, stdv)
            self.item_embedding.weight[0].zero_()

    def session_repr(self, items: torch.Tensor, lengths: torch.Tensor,
                     table: torch.Tensor | None = None) -> torch.Tensor:
        """Representation FloatTensor[S, D] of sessions ``items`` LongTensor[S, W] (time order, right-padded).

        ``table`` is the item table FloatTensor[rows, D] (default: read it now). It is read once
        per batch and passed in, so a checkpointed recompute sees the very same table even when
        the table is computed (SAGERec's graph module draws dropout each time it is read).
        """
        table = self.item_embedding.weight if table is None else table
        S, W = items.shape
        device = items.device
        valid = torch.arange(W, device=device)[None, :] < lengths[:, None]  # [S, W]
        h = F.embedding(items, table, padding_idx=0)  # [S, W, D]

        # --- session graph (§4.2): relation of every position pair, keys = first occurrences.
        relation, first = session_relations(items, lengths)
        keys = (relation > 0) & first[:, None, :]
        # e_ij = LeakyReLU(a_r^T (h_i * h_j)) = LeakyReLU(h_i diag(a_r) h_j^T) for relation r.
        e = (h[:, None] * self.relation[None, :, None, :]) @ h.transpose(1, 2)[:, None]  # [S, 4, W, W]
        e = F.leaky_relu(e, self.alpha)
        e = e.gather(1, (relation - 1).clamp(min=0)[:, None]).squeeze(1)  # [S, W, W]
        att = torch.softmax(e.masked_fill(~keys, NEG), dim=-1)
        h_local = att @ h

        # --- global graph (§4.1), one hop, attention conditioned on the session mean s.
        nb = self.neighbors[items]  # [S, W, K]
        nw = self.neighbor_weights[items]  # [S, W, K]
        has = nb > 0
        ne = F.embedding(nb, table, padding_idx=0)  # [S, W, K, D]
        vf = valid.float()[..., None]
        count = lengths.clamp(min=1).float()[:, None]
        s = (h * vf).sum(1) / count  # [S, D]
        d = self.hidden_dim
        # (s * h_v) W1a = h_v (diag(s) W1a): one d x d matrix per session, no [S, W, K, D] product
        scaled = s[:, :, None] * self.global_w1[:d][None]  # [S, D, D]
        z = (ne.reshape(S, -1, d) @ scaled).view(S, W, -1, d) + nw[..., None] * self.global_w1[d]
        z = (F.leaky_relu(z, 0.2) @ self.global_w2).squeeze(-1)  # [S, W, K]
        pi = torch.softmax(z.masked_fill(~has, NEG), dim=-1) * has  # no neighbour -> zero message
        agg = (pi.unsqueeze(-2) @ ne).squeeze(-2)  # [S, W, D]
        mixed = F.dropout(torch.cat([h, agg], -1), self.dropout_gcn, self.training)
        h_global = torch.relu(mixed @ self.global_w3)

        hidden = (F.dropout(h_local, self.dropout_local, self.training)
                  + F.dropout(h_global, self.dropout_global, self.training))

        # --- readout (§4.3): reversed positions, gate with the session mean, no softmax.
        reverse = (lengths[:, None] - 1 - torch.arange(W, device=device)[None, :]).clamp(min=0)
        pos = self.position_embedding(reverse.clamp(max=self.max_len - 1))
        mean = (hidden * vf).sum(1) / count  # [S, D]
        gate = torch.tanh(torch.cat([pos, hidden], -1) @ self.read_w1)
        gate = torch.sigmoid(self.glu1(gate) + self.glu2(mean)[:, None, :])
        beta = (gate @ self.read_w2) * vf  # [S, W, 1]
        return (beta * hidden).sum(1)

    def encode_prefixes(self, item_seq: torch.Tensor, rows: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """FloatTensor[N, D]: session ``item_seq[rows[n], :ends[n] + 1]`` for each of the N (row, end) pairs.

        Sessions are sorted by length and cut into chunks of about ``self.chunk`` positions,
        each trimmed to its longest session; when a training batch spans several chunks each is
        checkpointed, so only chunk outputs are kept for backward (a 256 x 50 batch has 326k
        prefix positions, about 1 GB per [positions, K, D] activation at d = 64).
        """
        lengths = ends + 1
        order = torch.argsort(lengths, stable=True)
        sorted_len = lengths[order]
        widths = sorted_len.tolist()  # one host copy, not one sync per chunk
        pieces, start, n = [], 0, len(widths)
        table = self.item_embedding.weight  # read once: see session_repr
        # Checkpoint only when the batch spans several chunks: one chunk already bounds memory.
        recompute = torch.is_grad_enabled() and sum(widths) > self.chunk
        while start < n:  # a loop over chunks, not over sessions
            # lengths ascend, so the chunk's width is that of its last session
            guess = min(start + max(self.chunk // widths[start], 1), n) - 1
            stop = min(start + max(self.chunk // widths[guess], 1), n)
            width, idx, lens = widths[stop - 1], order[start:stop], sorted_len[start:stop]
            items = item_seq[rows[idx], :width]
            items = items.masked_fill(torch.arange(width, device=items.device)[None] >= lens[:, None], 0)
            if recompute:
                pieces.append(checkpoint(self.session_repr, items, lens, table, use_reentrant=False))
            else:
                pieces.append(self.session_repr(items, lens, table))
            start = stop
        if not pieces:
            return self.item_embedding.weight.new_zeros(0, self.hidden_dim)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=order.device)
        return torch.cat(pieces)[inverse]

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, L, D]: at position t the session representation of the prefix item_seq[:, :t+1]."""
        B, L = item_seq.shape
        rows, ends = torch.nonzero(torch.arange(L, device=item_seq.device)[None] < seq_len[:, None],
                                   as_tuple=True)
        states = torch.zeros(B, L, self.hidden_dim, device=item_seq.device,
                             dtype=self.item_embedding.weight.dtype)
        states = states.index_put((rows, ends), self.encode_prefixes(item_seq, rows, ends))
        return states

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, D]: the whole sequence as one session (only the last prefix is encoded)."""
        rows = torch.arange(item_seq.size(0), device=item_seq.device)
        return self.encode_prefixes(item_seq, rows, (seq_len - 1).clamp(min=0))


def build(cfg, n_items: int, split=None) -> GCEGNN:
    """GCE-GNN sized by ``cfg.model.hidden_dim`` and ``cfg.gcegnn``; its global graph needs ``split``."""
    if split is None:
        raise ValueError("gcegnn needs the training split to build its global item graph: "
                         "build_model(cfg, n_items, split=split)")
    g = cfg.gcegnn
    neighbors, weights = build_global_graph(split, n_items, g.gcegnn_window, g.gcegnn_neighbors)
    return GCEGNN(
        n_items, neighbors, weights, max_len=cfg.data.max_len, hidden_dim=cfg.model.hidden_dim,
        dropout_global=g.gcegnn_dropout_global, dropout_local=g.gcegnn_dropout_local,
        dropout_gcn=g.gcegnn_dropout_gcn, alpha=g.gcegnn_alpha, chunk=g.gcegnn_chunk,
        loss=cfg.train.loss,
    )
