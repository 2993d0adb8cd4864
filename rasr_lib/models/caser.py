"""Caser (Tang & Wang, WSDM 2018): horizontal and vertical convolutions over the last L item embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.losses import full_softmax_cross_entropy
from rasr_lib.models.base import SequentialRecommender

ACTIVATIONS = {"relu": F.relu, "identity": lambda x: x, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class Caser(SequentialRecommender):
    """Caser: Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
    Sequence Embedding", ACM WSDM 2018.

    The last ``L`` item embeddings form an L x d "image" (§3.1). ``n_h`` horizontal filters of
    every height 1..L (activation phi_c, max-pooled over time) capture union-level patterns and
    ``n_v`` vertical L x 1 filters (linear) point-level ones (§3.2). Their concatenation goes
    through dropout and a fully-connected layer to d units (activation phi_a); the result is
    concatenated with the user embedding P_u and scored against a separate output table
    W2 [n_items + 1, 2d] with bias b2 (§3.3). Published defaults: L = 5, T = 1, d = 50,
    n_v = 4, n_h = 16, dropout 0.5, phi_c = ReLU, phi_a = identity, Adam lr 1e-3, L2 1e-6,
    BCE with 3 negatives per target (§3.4, §4). We use those (``cfg.caser``, and
    ``MODEL_DEFAULTS["caser"]`` sets d = 50 and the L2 penalty); batch size and the loss form
    follow the shared loop.

    Every position of a training row is a target (our loop's convention): the input of position
    ``t`` is the window ``item_seq[t - L + 1 .. t]``, left-padded with item 0 (a zero vector)
    when fewer than L items precede it; :meth:`full_sort_predict` uses the last L items.

    Users: ``needs_user = True``. The user table has ``n_users + 1`` rows; the extra last row is
    a shared learned "unknown user" vector used for every row whose user is -1 (synthetic rows of
    data regeneration, which belong to no user), for out-of-range users, and when no user is
    given (the loop's :func:`~rasr_lib.training.validation_loss`). It is trained only by such
    rows, so on original data it keeps its initial value and is never used in evaluation.
    """

    needs_user = True

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden_dim: int = 50,
        window: int = 5,
        n_v: int = 4,
        n_h: int = 16,
        dropout: float = 0.5,
        ac_conv: str = "relu",
        ac_fc: str = "identity",
        neg_samples: int = 3,
        loss: str = "bce",
    ):
        super().__init__(n_items, hidden_dim, loss)
        for name, act in (("ac_conv", ac_conv), ("ac_fc", ac_fc)):
            if act not in ACTIVATIONS:
                raise ValueError(f"caser.{name} must be one of {sorted(ACTIVATIONS)}, got {act!r}")
        if window < 1 or n_v < 0 or n_h < 0 or n_v + n_h == 0 or neg_samples < 1:
            raise ValueError("caser needs L >= 1, n_v >= 0, n_h >= 0 (not both 0) and neg_samples >= 1")
        self.n_users, self.window, self.n_v, self.n_h = n_users, window, n_v, n_h
        self.neg_samples = neg_samples
        self.ac_conv, self.ac_fc = ACTIVATIONS[ac_conv], ACTIVATIONS[ac_fc]
        self.user_embedding = nn.Embedding(n_users + 1, hidden_dim)  # last row: unknown user
        self.conv_v = nn.Conv2d(1, n_v, (window, 1)) if n_v else None
        self.conv_h = nn.ModuleList(nn.Conv2d(1, n_h, (h, hidden_dim)) for h in range(1, window + 1)) \
            if n_h else nn.ModuleList()
        self.fc1 = nn.Linear(n_v * hidden_dim + n_h * window, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.W2 = nn.Embedding(n_items + 1, 2 * hidden_dim)
        self.b2 = nn.Embedding(n_items + 1, 1)
        # Authors' init: N(0, 1/dim) for the embedding tables, zero output bias, torch's default
        # for the convolutions and fc1.
        with torch.no_grad():
            self.user_embedding.weight.normal_(0, 1.0 / hidden_dim)
            self.item_embedding.weight.normal_(0, 1.0 / hidden_dim)
            self.item_embedding.weight[0].zero_()  # padding: an empty slot of the window
            self.W2.weight.normal_(0, 1.0 / (2 * hidden_dim))
            self.b2.weight.zero_()

    def item_weights(self) -> torch.Tensor:
        """Output item table W2, FloatTensor[n_items + 1, 2d] (row 0 = padding)."""
        return self.W2.weight

    def user_rows(self, user: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """Map LongTensor[B] user rows (or None) to table rows LongTensor[B]; -1/unknown -> n_users."""
        if user is None:
            return torch.full((batch,), self.n_users, dtype=torch.long, device=device)
        known = (user >= 0) & (user < self.n_users)
        return torch.where(known, user, torch.full_like(user, self.n_users))

    def encode_windows(self, windows: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        """Caser state [z ; P_u] of LongTensor[N, L] windows and LongTensor[N] users, FloatTensor[N, 2d]."""
        emb = self.item_embedding(windows)  # [N, L, d]: the L x d "image"
        n, length, dim = emb.shape
        parts = []
        if self.conv_v is not None:  # vertical filters are linear: weighted sums of the L rows
            v = torch.einsum("nld,vl->nvd", emb, self.conv_v.weight.view(self.n_v, length))
            parts.append((v + self.conv_v.bias[None, :, None]).flatten(1))  # [N, n_v * d]
        for h, conv in enumerate(self.conv_h, start=1):
            # A full-width h x d filter is a linear map of h stacked rows: unfold + matmul equals
            # Conv2d(1, n_h, (h, d)) on the image and is faster on CPU.
            stacked = emb.unfold(1, h, 1).transpose(2, 3).reshape(n, length - h + 1, h * dim)
            feature = self.ac_conv(F.linear(stacked, conv.weight.view(self.n_h, h * dim), conv.bias))
            parts.append(feature.max(dim=1).values)  # max-pool over the L - h + 1 offsets: [N, n_h]
        z = self.ac_fc(self.fc1(self.dropout(torch.cat(parts, 1))))  # [N, d]
        p_u = self.user_embedding(self.user_rows(user, windows.size(0), windows.device))
        return torch.cat([z, p_u], 1)

    def windows(self, item_seq: torch.Tensor) -> torch.Tensor:
        """The last L items up to each position of LongTensor[B, W], left-padded: LongTensor[B, W, L]."""
        return F.pad(item_seq, (self.window - 1, 0)).unfold(1, self.window, 1)

    def last_windows(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """The last L real items of each right-padded row of LongTensor[B, W], left-padded: LongTensor[B, L]."""
        offsets = torch.arange(self.window, device=item_seq.device)
        source = (seq_len - self.window)[:, None] + offsets[None, :]  # [B, L]
        items = item_seq.gather(1, source.clamp(min=0))
        return torch.where(source >= 0, items, torch.zeros_like(items))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor,
                user: torch.Tensor | None = None) -> torch.Tensor:
        """States of every position of LongTensor[B, W] (right-padded): FloatTensor[B, W, 2d]."""
        batch, width = item_seq.shape
        windows = self.windows(item_seq).reshape(batch * width, self.window)
        users = None if user is None else user.repeat_interleave(width)
        return self.encode_windows(windows, users).view(batch, width, -1)

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor,
                   user: torch.Tensor | None = None) -> torch.Tensor:
        """State from each row's last L items, FloatTensor[B, 2d]."""
        return self.encode_windows(self.last_windows(item_seq, seq_len), user)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor,
                          user: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [z ; P_u] . W2_i + b2_i of every item, FloatTensor[B, n_items + 1]."""
        return self.last_state(item_seq, seq_len, user) @ self.W2.weight.T + self.b2.weight.T

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss over every supervised position's window (scalar).

        BCE (§3.4): -mean log sigma(y_pos) - mean log(1 - sigma(y_neg)) with ``neg_samples``
        negatives per target: the loop's negative plus ``neg_samples - 1`` uniform draws from
        torch's global RNG. CE: softmax over all items.
        """
        item_seq, target = batch["item_seq"], batch["target"]
        rows, ends = torch.nonzero(target > 0, as_tuple=True)
        user = batch.get("user")
        windows = self.windows(item_seq)[rows, ends]  # [N, L]
        hidden = self.encode_windows(windows, None if user is None else user[rows])  # [N, 2d]
        positive = target[rows, ends]
        bias = self.b2.weight.squeeze(1)
        if self.loss == "bce":
            negative = batch["negative"][rows, ends].unsqueeze(1)  # [N, 1]
            if self.neg_samples > 1:
                extra = torch.randint(1, self.n_items + 1, (len(rows), self.neg_samples - 1),
                                      device=negative.device)
                negative = torch.cat([negative, extra], 1)  # [N, neg_samples]
            pos = (hidden * self.W2(positive)).sum(-1) + bias[positive]
            neg = (hidden.unsqueeze(1) * self.W2(negative)).sum(-1) + bias[negative]
            return -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).mean())
        return full_softmax_cross_entropy(hidden, self.W2.weight, positive, bias=bias)  # PAD excluded


def build(cfg, n_items: int, split=None) -> Caser:
    """Caser sized by ``cfg.model.hidden_dim`` (d), ``cfg.model.dropout`` and ``cfg.caser``; needs ``split`` for users."""
    if split is None:
        raise ValueError("caser needs the training split (its user table has one row per user): "
                         "build_model(cfg, n_items, split=split)")
    c = cfg.caser
    return Caser(
        n_items, n_users=split.n_users, hidden_dim=cfg.model.hidden_dim, window=c.L, n_v=c.n_v,
        n_h=c.n_h, dropout=cfg.model.dropout, ac_conv=c.ac_conv, ac_fc=c.ac_fc,
        neg_samples=c.neg_samples, loss=cfg.train.loss,
    )
