"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with the pairwise BPR loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.config import ExperimentConfig
from rasr_lib.models.base import SequentialRecommender


class BPRMF(SequentialRecommender):
    """Matrix factorisation: score(u, i) = <p_u, q_i>, trained with BPR (Rendle et al., UAI 2009).

    Paper (Sec. 4-5): LearnBPR = SGD over bootstrap-sampled (u, i+, i-) triples, loss
    ``-ln sigma(x_ui+ - x_ui-)`` plus L2 on the factors; factor size and regularisation tuned per
    dataset (no single published default). We use RecBole's BPR setting, which SAGERec's baseline
    table most likely comes from: d = 64, Xavier-normal init, Adam (lr 1e-3), no L2.

    It is not sequential: the input sequence is ignored, the user row carries the model
    (``needs_user = True``). Training triples per epoch: every item of each real user's training
    row (the first input item and every target, i.e. each training interaction once) against one
    uniform negative (``batch["negative"]`` for the targets, one draw from torch's global RNG for
    the first item). Synthetic rows (``user == -1``, from data regeneration) have no user
    embedding and are skipped. ``loss="ce"`` replaces BPR by a full softmax over all items for
    each positive (not in the paper; offered for comparison).
    """

    needs_user = True

    def __init__(self, n_items: int, n_users: int, hidden_dim: int = 64, loss: str = "bce"):
        super().__init__(n_items, hidden_dim, loss)
        self.n_users = n_users
        self.user_embedding = nn.Embedding(n_users, hidden_dim)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """No sequence encoder: the item factors of LongTensor[B, L] as FloatTensor[B, L, D]."""
        return self.item_embedding(item_seq)

    def user_factors(self, user: torch.Tensor) -> torch.Tensor:
        """Factors FloatTensor[B, D] of user rows LongTensor[B] (0..n_users-1)."""
        if user.numel() and (int(user.min()) < 0 or int(user.max()) >= self.n_users):
            raise ValueError(f"user rows must lie in 0..{self.n_users - 1}, got {int(user.min())}..{int(user.max())}")
        return self.user_embedding(user)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor,
                          user: torch.Tensor | None = None) -> torch.Tensor:
        """Scores <p_u, q_i> FloatTensor[B, n_items + 1] for user rows ``user`` LongTensor[B]."""
        if user is None:
            raise ValueError("BPR-MF scores need the user rows: full_sort_predict(..., user=LongTensor[B])")
        return self.user_factors(user.to(item_seq.device)) @ self.item_embedding.weight.T

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean BPR loss (or softmax CE) over the training items of the batch's real users; scalar.

        ``batch``: ``item_seq``/``target``/``negative`` LongTensor[B, L], ``seq_len``/``user``
        LongTensor[B]. Rows with ``user == -1`` (synthetic) contribute nothing.
        """
        if "user" not in batch:  # e.g. training.validation_loss, which carries no user rows
            raise ValueError("BPR-MF's loss needs batch['user'] (LongTensor[B] of user rows)")
        user, target, item_seq = batch["user"], batch["target"], batch["item_seq"]
        real = user >= 0
        if not bool(real.any()):
            # A batch of synthetic rows only: zero loss that still reaches every parameter.
            return sum(p.sum() for p in self.parameters()) * 0.0
        user, target, item_seq = user[real], target[real], item_seq[real]
        valid = target > 0  # [R, L]
        rows = valid.nonzero(as_tuple=True)[0]
        # Positives: the first input item of each row plus every target = the row's interactions.
        first = item_seq[:, 0]
        pos = torch.cat([first, target[valid]])
        owner = torch.cat([torch.arange(len(user), device=user.device), rows])
        p_u = self.user_factors(user)[owner]  # [P, D]
        q_pos = self.item_embedding(pos)
        if self.loss == "ce":
            logits = p_u @ self.item_embedding.weight.T
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, pos)
        # One uniform negative per positive: the loop's draws for targets; the first items get
        # theirs from torch's global RNG (CPU, so checkpoints replay them on any device).
        first_neg = torch.randint(1, self.n_items + 1, (len(first),)).to(first.device)
        neg = torch.cat([first_neg, batch["negative"][real][valid]])
        diff = (p_u * (q_pos - self.item_embedding(neg))).sum(-1)
        return -F.logsigmoid(diff).mean()


def build(cfg: ExperimentConfig, n_items: int, split=None) -> BPRMF:
    """BPR-MF over ``n_items`` items and ``split.n_users`` users (``split`` is required)."""
    if split is None:
        raise ValueError("BPR-MF needs the training split for its user table: build(cfg, n_items, split)")
    return BPRMF(n_items, split.n_users, hidden_dim=cfg.model.hidden_dim, loss=cfg.train.loss)
