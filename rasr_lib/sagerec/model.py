"""SAGERec (Electronics 2025): a semantic item graph, adaptively re-weighted, under a pre-LN SASRec.

One training step: the edge MLP (§4.3) weights every semantic edge from the current item
embeddings; edge and node dropout thin the graph; one LightGCN-style layer with a residual,
E <- E + A_hat E (§4.3), propagates the embeddings; causal pre-LN self-attention blocks
(§4.4) encode the sequence of propagated embeddings; scores are inner products with the
propagated table, so an item never seen in training is still scored through its neighbours.

Readings where the paper is silent (listed on the book's deviations page):

- **Symmetric edge weights**: the MLP reads the ordered pair [e_i || e_j], but the graph is
  undirected, so an edge gets w_ij = (MLP(e_i, e_j) + MLP(e_j, e_i)) / 2 and A stays symmetric.
- **Re-weighting then renormalising** (``adj_norm="renorm"``, default): A_ij = w_ij on the
  kept edges and A_hat = D^-1/2 A D^-1/2 with degrees of that weighted, thinned A (a choice of ours: LightGCN's and
  NGCF's released code instead drop entries of the fixed normalised matrix and rescale, our
  ``"scale"`` mode). ``"scale"`` instead multiplies the fixed
  normalised graph by w_ij and rescales kept edges by 1 / keep probability.
- **The degree floor.** ``"renorm"`` floors each product d_i d_j at 1e-12 before the inverse
  square root. The learned weights can shrink as a whole (D^-1/2 A D^-1/2 does not depend on
  their common scale, so nothing holds it): in full Beauty runs they fell to about 1e-9, under
  the floor, and the messages to 1-7 % of the embeddings' size, so the graph faded out of the
  model. ``"renorm-exact"`` takes each degree's inverse square root on its own, floored only at
  the smallest positive float, and stays scale-free down to weights of about 1e-38.
- **Node dropout** follows NGCF's definition: a dropped item sends no message this step (its
  column of A is removed); its own row, and the residual, are kept.
- **Scoring** uses the propagated table (§4.4 writes e_i; §5.8's cold items need the graph).
- The encoder is torch's pre-LN layer with a final LayerNorm (as pmixer's SASRec), ReLU FFN,
  dropout on the input embeddings. The input is x_t = sqrt(d) z_t + p_t as in the SASRec code
  (the paper writes z_t + p_t; ``emb_scale=False``): with Xavier init the position table is ~10x
  larger than the item table; with the scale a 4-epoch run on Beauty (no graph) reached a
  lower training loss (1.174 vs 1.191 at dropout 0.5; 1.084 vs 1.139 at dropout 0.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.models.base import SequentialRecommender
from rasr_lib.losses import full_softmax_cross_entropy
from rasr_lib.sagerec.graph import ItemGraph

ADJ_NORMS = ("renorm", "renorm-exact", "scale")


class EdgeMLP(nn.Module):
    """SAGERec §4.3: w_ij = sigma(W2 ReLU(W1 [e_i || e_j] + b1) + b2), hidden size h."""

    def __init__(self, hidden_dim: int, edge_hidden: int | None = None):
        super().__init__()
        edge_hidden = edge_hidden or hidden_dim  # §5.3: h = d
        self.hidden_dim = hidden_dim
        self.lin1 = nn.Linear(2 * hidden_dim, edge_hidden)
        self.lin2 = nn.Linear(edge_hidden, 1)

    def forward(self, emb: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Weights FloatTensor[M] in (0, 1) of the edges (src[M], dst[M]) from emb FloatTensor[N, d].

        W1 [e_i || e_j] = W1a e_i + W1b e_j, so both halves are projected once per item
        (O(|V| d h)) and then gathered per edge (O(|E| h)); the result equals the
        concatenated formula exactly. Symmetrised: the mean over both orders of each pair.
        """
        d = self.hidden_dim
        left = emb @ self.lin1.weight[:, :d].T  # [N, h]
        right = emb @ self.lin1.weight[:, d:].T  # [N, h]
        bias = self.lin1.bias
        forward = torch.sigmoid(self.lin2(torch.relu(left[src] + right[dst] + bias))).squeeze(-1)
        backward = torch.sigmoid(self.lin2(torch.relu(left[dst] + right[src] + bias))).squeeze(-1)
        return 0.5 * (forward + backward)


def normalize_entries(
    rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int, exact: bool = False
) -> torch.Tensor:
    """SAGERec §4.3: values of D_r^-1/2 A D_c^-1/2 for the COO entries (rows, cols, vals) of A [n, n].

    D_r / D_c are the row / column sums of A; for a symmetric A this is D^-1/2 A D^-1/2.
    ``exact=False`` floors d_i d_j at 1e-12 (so tiny weights give tiny entries); ``exact=True``
    floors each degree at the smallest positive float, so the result ignores A's overall scale.
    """
    deg_r = torch.zeros(n, dtype=vals.dtype, device=vals.device).index_add_(0, rows, vals)
    deg_c = torch.zeros(n, dtype=vals.dtype, device=vals.device).index_add_(0, cols, vals)
    if exact:
        tiny = torch.finfo(vals.dtype).tiny
        return vals * deg_r.clamp_min(tiny).rsqrt()[rows] * deg_c.clamp_min(tiny).rsqrt()[cols]
    return vals * (deg_r[rows] * deg_c[cols]).clamp_min(1e-12).rsqrt()


def propagate(
    emb: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, layers: int = 1
) -> torch.Tensor:
    """SAGERec §4.3: ``layers`` times E <- E + A_hat E, A_hat given as COO (rows, cols, vals).

    ``emb`` FloatTensor[N, d]; A_hat is never dense: each layer costs O(|E| d).
    """
    for _ in range(layers):
        messages = vals.unsqueeze(1) * emb[cols]  # [E, d]
        emb = emb + torch.zeros_like(emb).index_add_(0, rows, messages)
    return emb


def register_graph_buffers(owner: nn.Module, graph: ItemGraph, edge_learning: bool) -> None:
    """Store the fixed graph on ``owner``: edges (src < dst), cosine weights and the "scale" norm.

    Buffers, not parameters, and not in the state dict: the graph is rebuilt from the data.
    """
    src = torch.as_tensor(graph.src, dtype=torch.long)
    dst = torch.as_tensor(graph.dst, dtype=torch.long)
    cos = torch.as_tensor(graph.weight, dtype=torch.float32).clamp_min(0.0)
    owner.register_buffer("edge_src", src, persistent=False)
    owner.register_buffer("edge_dst", dst, persistent=False)
    owner.register_buffer("edge_cos", cos, persistent=False)
    # "scale": the fixed normalisation of the base graph (binary when weights are learned).
    base = torch.ones_like(cos) if edge_learning else cos
    both = normalize_entries(torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([base, base]),
                             graph.n_items + 1)
    owner.register_buffer("edge_norm", both[: len(src)], persistent=False)


def step_adjacency(
    owner: nn.Module, emb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A_hat of one step as COO (rows, cols LongTensor[E], vals FloatTensor[E]) from emb [N, d].

    ``owner`` holds the graph buffers (``edge_src``/``edge_dst``/``edge_cos``/``edge_norm``),
    ``edge_mlp`` (None = fixed cosine weights), ``edge_dropout``, ``node_dropout`` and
    ``adj_norm``, as :class:`SAGERec` and :class:`~rasr_lib.sagerec.plugin.SemanticGraph` do.
    Training draws fresh edge and node dropout masks (torch's global RNG, like nn.Dropout);
    evaluation uses every edge.
    """
    src, dst, n = owner.edge_src, owner.edge_dst, emb.size(0)
    fixed, norm, keep_prob = owner.edge_cos, owner.edge_norm, 1.0
    if owner.training and owner.edge_dropout > 0:  # whole undirected edges, before the MLP runs
        kept = torch.rand(len(src), device=src.device) >= owner.edge_dropout
        src, dst, fixed, norm = src[kept], dst[kept], fixed[kept], norm[kept]
        keep_prob *= 1 - owner.edge_dropout
    if owner.edge_mlp is not None:
        weight = owner.edge_mlp(emb, src, dst)  # §4.3, from the current E
        if owner.adj_norm == "scale":
            weight = weight * norm  # w_ij (D^-1/2 A D^-1/2)_ij of the binary graph
    else:
        # Table 5 (B): fixed cosine weights (for "scale", already in norm = D^-1/2 S D^-1/2).
        weight = norm if owner.adj_norm == "scale" else fixed
    rows, cols = torch.cat([src, dst]), torch.cat([dst, src])
    vals = torch.cat([weight, weight])
    if owner.training and owner.node_dropout > 0:
        alive = torch.rand(n, device=src.device) >= owner.node_dropout
        sends = alive[cols]  # a dropped item sends no message
        rows, cols, vals = rows[sends], cols[sends], vals[sends]
        keep_prob *= 1 - owner.node_dropout
    if owner.adj_norm != "scale":  # "renorm" or "renorm-exact"
        vals = normalize_entries(rows, cols, vals, n, exact=owner.adj_norm == "renorm-exact")
    elif keep_prob < 1.0:
        vals = vals / keep_prob  # inverted dropout: the expected A_hat equals the evaluation one
    return rows, cols, vals


class SAGERec(SequentialRecommender):
    """SAGERec: adaptive semantic graph propagation (§4.3) + causal pre-LN self-attention (§4.4).

    ``graph=None`` is Table 5 (C), a plain pre-LN SASRec with the same init and sizes;
    ``edge_learning=False`` is (B), fixed cosine weights; a random ``graph`` is (D);
    ``position=False`` is (E).
    """

    def __init__(
        self,
        n_items: int,
        graph: ItemGraph | None,
        max_len: int = 50,
        hidden_dim: int = 50,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int = 50,
        dropout: float = 0.5,
        activation: str = "relu",
        loss: str = "bce",
        edge_learning: bool = True,
        position: bool = True,
        emb_scale: bool = True,
        edge_dropout: float = 0.2,
        node_dropout: float = 0.5,
        gcn_layers: int = 1,
        adj_norm: str = "renorm",
    ):
        super().__init__(n_items, hidden_dim, loss)
        if adj_norm not in ADJ_NORMS:
            raise ValueError(f"adj_norm must be one of {ADJ_NORMS}, got {adj_norm!r}")
        if graph is not None and graph.n_items != n_items:
            raise ValueError(f"graph has {graph.n_items} items, the model {n_items}")
        for name, p in (("edge_dropout", edge_dropout), ("node_dropout", node_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.max_len = max_len
        self.emb_scale = hidden_dim**0.5 if emb_scale else 1.0
        self.use_graph = graph is not None
        self.edge_dropout, self.node_dropout = edge_dropout, node_dropout
        self.gcn_layers, self.adj_norm = gcn_layers, adj_norm
        if graph is not None:
            register_graph_buffers(self, graph, edge_learning)
        self.edge_mlp = EdgeMLP(hidden_dim) if graph is not None and edge_learning else None
        self.position_embedding = nn.Embedding(max_len, hidden_dim) if position else None
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden_dim, nhead=num_heads, dim_feedforward=inner_dim, dropout=dropout,
            activation=activation, batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SAGERec §5.3: Xavier-uniform weight matrices and embeddings; zero biases and padding row."""
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                nn.init.xavier_uniform_(param)
            elif "norm" not in name:
                nn.init.zeros_(param)  # biases (LayerNorm keeps weight 1, bias 0)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def adjacency(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A_hat of this step as COO (rows LongTensor[E], cols LongTensor[E], vals FloatTensor[E])."""
        return step_adjacency(self, self.item_embedding.weight)

    def item_table(self) -> torch.Tensor:
        """Propagated item table FloatTensor[n_items + 1, D] (§4.3); the raw table without a graph."""
        emb = self.item_embedding.weight
        if not self.use_graph:
            return emb
        rows, cols, vals = self.adjacency()
        return propagate(emb, rows, cols, vals, self.gcn_layers)

    def item_weights(self) -> torch.Tensor:
        """Output item table used for scoring: the propagated one (row 0 = padding)."""
        return self.item_table()

    def forward(
        self, item_seq: torch.Tensor, seq_len: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Causally encode LongTensor[B, L] (right-padded, L <= max_len) into FloatTensor[B, L, D].

        ``table`` (FloatTensor[n_items + 1, D]) is the propagated item table; computed when None.
        """
        table = self.item_table() if table is None else table
        length = item_seq.size(1)
        x = F.embedding(item_seq, table, padding_idx=0) * self.emb_scale  # §4.4: z_{v_t}
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(length, device=item_seq.device))[None]  # + p_t
        x = self.dropout(x)
        # Right padding + a causal mask: real positions never attend to padding, so no key mask.
        causal = torch.triu(torch.full((length, length), float("-inf"), device=item_seq.device), diagonal=1)
        return self.final_norm(self.encoder(x, mask=causal, is_causal=True))

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """§4.4: r_i = z_T . e_i for every item, FloatTensor[B, n_items + 1] (one propagation)."""
        table = self.item_table()
        states = self.forward(item_seq, seq_len, table)
        last = states[torch.arange(states.size(0), device=states.device), (seq_len - 1).clamp(min=0)]
        return last @ table.T

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """§4.5: per-position BCE with one sampled negative (or CE), one propagation per step.

        ``batch`` as in :meth:`SequentialRecommender.calculate_loss`; the L2 term on the
        embeddings is added by the training loop (``train.emb_l2``).
        """
        table = self.item_table()
        states = self.forward(batch["item_seq"], batch["seq_len"], table)
        target = batch["target"]
        valid = target > 0
        hidden = states[valid]  # [N, D]
        if self.loss == "bce":
            pos = (hidden * table[target[valid]]).sum(-1)
            neg = (hidden * table[batch["negative"][valid]]).sum(-1)
            return F.binary_cross_entropy_with_logits(
                torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            ) * 2.0
        return full_softmax_cross_entropy(hidden, table, target[valid])  # PAD excluded
