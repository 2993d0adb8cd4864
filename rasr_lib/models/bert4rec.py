"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained to fill in masked items."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.config import ExperimentConfig
from rasr_lib.losses import full_softmax_cross_entropy
from rasr_lib.models.base import SequentialRecommender, init_normal_weights


def full_sequences(batch: dict[str, torch.Tensor], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole training rows (inputs + last target) LongTensor[B, L'] and lengths [B], L' <= max_len.

    ``target[n - 1]`` is the item after the row's last input, so the full row is the inputs
    followed by it; a row that would exceed ``max_len`` drops its first item (keep the latest).
    """
    item_seq, target, seq_len = batch["item_seq"], batch["target"], batch["seq_len"]
    rows = torch.arange(item_seq.size(0), device=item_seq.device)
    return append_token(item_seq, seq_len, target[rows, seq_len - 1], max_len)


def append_token(
    item_seq: torch.Tensor, seq_len: torch.Tensor, token: torch.Tensor, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put ``token`` [B] after each row's last item of LongTensor[B, L]; keep the last ``max_len`` items.

    Returns (LongTensor[B, min(L + 1, max_len)], new lengths [B]).
    """
    rows = torch.arange(item_seq.size(0), device=item_seq.device)
    longer = torch.cat([item_seq, item_seq.new_zeros(item_seq.size(0), 1)], 1)
    longer[rows, seq_len] = token
    length = seq_len + 1
    over = length > max_len
    # Rows longer than max_len shift left by one (drop their oldest item); the rest stay.
    shifted = torch.cat([longer[:, 1:], longer.new_zeros(longer.size(0), 1)], 1)
    longer = torch.where(over[:, None], shifted, longer)[:, :max_len]
    return longer, torch.where(over, length - 1, length)


class BERT4Rec(SequentialRecommender):
    """BERT4Rec: item + position embeddings, LayerNorm, post-LN bidirectional blocks, cloze head.

    Sun, Liu, Wu, Pei, Lin, Ou, Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional
    Encoder Representations from Transformer", CIKM 2019. Training (the paper's cloze task,
    §3.6): in every training row (inputs + the last target) round(rho * n) >= 1 random items are
    replaced by [mask] and predicted with a softmax over all items; the loss is on masked
    positions only. A share of rows (the original code's ``mask_last`` instances, one per
    ten randomly masked copies) masks only the last item, the situation met at prediction.
    Prediction appends [mask] after the history (dropping the oldest item past max_len) and
    scores that position. Output: GELU projection + LayerNorm, inner product with the shared
    item table, plus a per-item bias (§3.5).

    Published Beauty settings (paper §4.3; ``run_beauty.sh`` and ``bert_config_beauty_64.json``
    of the authors' code): d = 64, 2 layers, 2 heads, FFN 4d = 256, GELU, hidden dropout 0.5,
    attention dropout 0.2, rho = 0.6, max_len 50, batch 256, Adam lr 1e-4 with weight decay
    0.01, warm-up and linear decay over 400k steps. Ours: the same architecture and rho; the
    shared loop's Adam at lr 1e-3, no decay or warm-up (400k steps at 1e-4 is far beyond our
    epoch budget), and masks redrawn every epoch instead of 10 pre-generated copies.
    The loss is always the full softmax (CE): BCE with one negative is not BERT4Rec's objective.
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
        attn_dropout: float = 0.2,
        activation: str = "gelu",
        mask_ratio: float = 0.6,
        mask_last_prob: float = 0.1,
    ):
        super().__init__(n_items, hidden_dim, loss="ce")
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"bert4rec.mask_ratio must lie in (0, 1], got {mask_ratio}")
        if not 0.0 <= mask_last_prob <= 1.0:
            raise ValueError(f"bert4rec.mask_last_prob must lie in [0, 1], got {mask_last_prob}")
        self.max_len, self.mask_ratio, self.mask_last_prob = max_len, mask_ratio, mask_last_prob
        self.mask_id = n_items + 1
        # One more row than the catalogue: the [mask] item; it never scores.
        self.item_embedding = nn.Embedding(n_items + 2, hidden_dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.embed_norm = nn.LayerNorm(hidden_dim, eps=1e-12)  # BERT's embedding post-processing
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden_dim, nhead=num_heads, dim_feedforward=inner_dim, dropout=dropout,
            activation=activation, batch_first=True, layer_norm_eps=1e-12,
        )
        # The original uses a separate (lower) dropout on attention weights; set it before the
        # layer is copied into the stack.
        layer.self_attn.dropout = attn_dropout
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                  nn.LayerNorm(hidden_dim, eps=1e-12))
        self.output_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.apply(init_normal_weights)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Bidirectionally encode LongTensor[B, L] (right-padded, L <= max_len) into FloatTensor[B, L, D]."""
        length = item_seq.size(1)
        positions = torch.arange(length, device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions)[None]
        x = self.dropout(self.embed_norm(x))
        # No causal mask: every real position attends to every real position, padding is a key
        # never attended to.
        padding = positions[None] >= seq_len[:, None]
        return self.encoder(x, src_key_padding_mask=padding)

    def item_weights(self) -> torch.Tensor:
        """Scoring table FloatTensor[n_items + 1, D]: the real items and padding, never [mask]."""
        return self.item_embedding.weight[: self.n_items + 1]

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Item scores FloatTensor[N, n_items + 1] of encoder states FloatTensor[N, D] (Eq. 7)."""
        return self.head(states) @ self.item_weights().T + self.output_bias

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """State FloatTensor[B, D] at a [mask] appended after each row's history (LongTensor[B, L])."""
        rows = torch.arange(item_seq.size(0), device=item_seq.device)
        token = torch.full_like(seq_len, self.mask_id)
        seq, length = append_token(item_seq, seq_len, token, self.max_len)
        return self.forward(seq, length)[rows, length - 1]

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Scores FloatTensor[B, n_items + 1] of the item after each history LongTensor[B, L]."""
        return self.logits(self.last_state(item_seq, seq_len))

    def cloze_mask(self, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Bool[B, L] of the positions to mask in right-padded rows LongTensor[B, L] of ``length`` [B].

        round(rho * n) (at least 1) distinct random real positions per row; in a share
        ``mask_last_prob`` of the rows only the last real position.
        """
        cols = torch.arange(seq.size(1), device=seq.device)
        real = cols[None] < length[:, None]
        n_mask = (length.double() * self.mask_ratio + 0.5).floor().long().clamp(min=1)
        n_mask = torch.minimum(n_mask, length)
        # Sampling without replacement, vectorised: rank random keys, padding ranks last.
        keys = torch.rand(seq.shape, device=seq.device).masked_fill(~real, 2.0)
        chosen = keys.argsort(1).argsort(1) < n_mask[:, None]
        last_only = torch.rand(length.shape, device=seq.device) < self.mask_last_prob
        return torch.where(last_only[:, None], cols[None] == (length - 1)[:, None], chosen)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cloze loss: mean CE of the masked items of each full training row; a scalar.

        In eval mode (the loop's validation loss) the deterministic counterpart: CE of the row's
        last target scored at a [mask] appended after its inputs.
        """
        if not self.training:
            rows = torch.arange(batch["item_seq"].size(0), device=batch["item_seq"].device)
            target = batch["target"][rows, batch["seq_len"] - 1]
            scores = self.full_sort_predict(batch["item_seq"], batch["seq_len"])
            scores[:, 0] = float("-inf")
            return F.cross_entropy(scores, target)
        seq, length = full_sequences(batch, self.max_len)
        masked = self.cloze_mask(seq, length)
        states = self.forward(seq.masked_fill(masked, self.mask_id), length)
        # only masked positions carry loss; the head and bias of Eq. 7 as in :meth:`logits`
        return full_softmax_cross_entropy(self.head(states[masked]), self.item_weights(), seq[masked],
                                          bias=self.output_bias)


def build(cfg: ExperimentConfig, n_items: int, split=None) -> BERT4Rec:
    """BERT4Rec from the shared model sizes and ``cfg.bert4rec``; ``cfg.train.loss`` must be ``ce``."""
    if cfg.train.loss != "ce":
        raise ValueError("bert4rec trains with its cloze softmax loss only: use train.loss=ce "
                         f"(got {cfg.train.loss!r})")
    m, b = cfg.model, cfg.bert4rec
    return BERT4Rec(
        n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
        num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout,
        attn_dropout=b.attn_dropout, activation=m.activation, mask_ratio=b.mask_ratio,
        mask_last_prob=b.mask_last_prob,
    )
