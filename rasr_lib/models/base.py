"""The one interface every backbone implements (RecBole's contract) and the shared losses."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.losses import full_softmax_cross_entropy


class SequentialRecommender(nn.Module):
    """Base class: a backbone encodes right-padded sequences; scoring and losses are shared.

    Subclasses implement :meth:`forward`. Items are ``1..n_items``; ``0`` is padding. Scores are
    inner products between the sequence representation and the item embedding table.

    Models with another objective (masked items, contrastive views, BPR pairs) override
    :meth:`calculate_loss`; models that need a stage before training (S3-Rec's pre-training)
    override :meth:`prepare`. ``needs_user = True`` makes the loop and the evaluator pass user
    rows (``batch["user"]``, ``full_sort_predict(..., user=...)``) for user-embedding models.
    """

    needs_user: bool = False  # True: full_sort_predict takes user=LongTensor[B] (BPR-MF)

    def __init__(self, n_items: int, hidden_dim: int, loss: str = "bce"):
        super().__init__()
        if loss not in {"bce", "ce"}:
            raise ValueError(f"unknown loss {loss!r}; expected 'bce' or 'ce'")
        self.n_items = n_items
        self.hidden_dim = hidden_dim
        self.loss = loss
        self.item_embedding = nn.Embedding(n_items + 1, hidden_dim, padding_idx=0)

    def prepare(self, split, cfg, device: torch.device, generator: torch.Generator,
                progress: bool = True, checkpoint: Path | None = None,
                deadline: float | None = None) -> dict | None:
        """Optional stage run once before training (e.g. S3-Rec pre-training); returns a summary or None.

        A long stage saves its state to ``checkpoint`` as it goes and resumes from it; with
        ``deadline`` (a ``time.time()`` value) it stops early and says ``"out_of_time": True``.
        """
        return None

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Encode ``item_seq`` (LongTensor[B, L], right-padded) into states FloatTensor[B, L, D]."""
        raise NotImplementedError

    def item_weights(self) -> torch.Tensor:
        """Output item table FloatTensor[n_items + 1, D] used for scoring (row 0 = padding)."""
        return self.item_embedding.weight

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """State at each sequence's last real position, FloatTensor[B, D]."""
        states = self.forward(item_seq, seq_len)
        index = (seq_len - 1).clamp(min=0)
        return states[torch.arange(states.size(0), device=states.device), index]

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Scores of every item for the next position, FloatTensor[B, n_items + 1]."""
        return self.last_state(item_seq, seq_len) @ self.item_weights().T

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-position next-item loss (RaSR Eq. 1) over every non-padding target in the batch.

        ``batch`` holds ``item_seq``/``target`` (LongTensor[B, L]), ``seq_len`` and ``user``
        (LongTensor[B]; ``user`` is -1 for synthetic rows) and, for BCE, ``negative``
        (LongTensor[B, L]: one sampled negative per position).
        """
        states = self.forward(batch["item_seq"], batch["seq_len"])
        target = batch["target"]
        valid = target > 0
        hidden = states[valid]  # [N, D]
        weights = self.item_weights()
        if self.loss == "bce":
            pos = (hidden * weights[target[valid]]).sum(-1)
            neg = (hidden * weights[batch["negative"][valid]]).sum(-1)
            return F.binary_cross_entropy_with_logits(
                torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            ) * 2.0
        return full_softmax_cross_entropy(hidden, weights, target[valid])  # PAD excluded


def init_normal_weights(module: nn.Module) -> None:
    """BERT/DR4SR-style init: N(0, 0.02) for linear and embedding weights, zero biases and padding row."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
