"""SINE (Tan et al., WSDM 2021): sparse-interest network for sequential recommendation."""

from __future__ import annotations

import torch
from torch import nn

from rasr_lib.config import ExperimentConfig
from rasr_lib.models.base import SequentialRecommender


POSITION_MODES = ("recency", "absolute", "none")


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``logits`` over ``dim`` where ``mask`` (broadcastable bool) is True; 0 elsewhere.

    A finite fill (not -inf) keeps an all-masked slice finite (uniform), so no NaN can appear.
    """
    return torch.softmax(logits.masked_fill(~mask, -1e9), dim=dim) * mask


class SINE(SequentialRecommender):
    """Sparse-Interest Network (Tan, Zhang, Yao, Liu, Zhou, Yang & Hu, WSDM 2021).

    Per sequence X (Sec. 3): (1) *concept activation*: a self-attentive summary z of X scores a
    pool of L learned concept prototypes C; the top-K are kept, gated by sigmoid(score) (C^u);
    (2) *intention assignment* P(k|t) = softmax_k(LN1(x_t W3) . LN2(C^u_k)); (3) *attention
    weighting* P(t|k) = softmax_t(tanh(x_t W_k1) w_k2), one attention per interest;
    (4) *interest embeddings* phi_k = LN3(sum_t P(k|t) P(t|k) x_t); (5) *interest aggregation*
    (the paper's next-intention prediction): X^ = P(k|t) C^u, C_apt = LN4(softmax_t(tanh(X^_t W3)
    w4) X^), e_k = softmax_k(C_apt . phi_k / tau), v = sum_k e_k phi_k. Scores are v . item table
    (shared input/output table). Loss: next-item loss + lambda * L_c, with the covariance
    regulariser L_c = (||M||_F^2 - ||diag M||^2) / 2 on the centred prototypes, M = C~ C~^T / D.

    Published defaults: sampled softmax, D = 128 (Taobao/ML), L = 500 concepts, K = 4 interests,
    tau = 0.1, lambda = 0.1 (RecBole's comments on the paper). RecBole's SINE defaults, which we
    use for Beauty-size data: D = 64, L = 50, K = 3, tau = 0.1, full-softmax CE; lambda = 0.1
    (RecBole's yaml says 0.5 but adds L_c only under its NLL loss, never under its default CE).

    Training on prefixes (as RecBole, whose data augmentation makes every prefix a sample):
    :meth:`forward` returns at position t SINE's representation of the prefix ``item_seq[:, :t+1]``,
    computed for all t at once with a [B, T, S] prefix mask (vectorised, no loop), so the shared
    per-position loss supervises every prefix. Positions (not in the paper's equations; RecBole
    has none) enter the three attentions' logits only: ``position="recency"`` (default) adds a
    learned bias per distance from the prefix's last item and attention (a, P(t|k), beta), so the
    attentions can favour recent items; ``"absolute"`` adds learned absolute position embeddings
    inside the tanh, as the authors' TF code; ``"none"`` is RecBole.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden_dim: int = 64,
        prototype_size: int = 50,
        interest_size: int = 3,
        tau: float = 0.1,
        reg_weight: float = 0.1,
        position: str = "recency",
        loss: str = "ce",
        init_std: float = 0.01,
    ):
        super().__init__(n_items, hidden_dim, loss)
        if not 1 <= interest_size <= prototype_size:
            raise ValueError(f"need 1 <= interest_size <= prototype_size, got {interest_size}, {prototype_size}")
        if position not in POSITION_MODES:
            raise ValueError(f"position must be one of {POSITION_MODES}, got {position!r}")
        d, k = hidden_dim, interest_size
        self.max_len, self.n_interests, self.tau, self.reg_weight = max_len, k, tau, reg_weight
        self.prototypes = nn.Parameter(torch.empty(prototype_size, d))  # concept pool C [L, D]
        self.position_embedding = nn.Embedding(max_len, d) if position == "absolute" else None
        # Recency: logit bias per (distance to the prefix end, attention): a, P(t|k) x K, beta.
        # Zero start = the position-free model; the bias gets a direct gradient, so it learns fast.
        self.recency = nn.Parameter(torch.zeros(max_len, k + 2)) if position == "recency" else None
        # RecBole's init: Xavier-normal tables, N(0, 0.01) projection weights.
        self.w1 = nn.Parameter(torch.randn(d, d) * init_std)  # concept-activation attention
        self.w2 = nn.Parameter(torch.randn(d) * init_std)
        self.w3 = nn.Parameter(torch.randn(d, d) * init_std)  # intention space (Eq. 4 and C_apt)
        self.w4 = nn.Parameter(torch.randn(d) * init_std)  # next-intention attention
        self.wk1 = nn.Parameter(torch.randn(k, d, d) * init_std)  # per-interest attention P(t|k)
        self.wk2 = nn.Parameter(torch.randn(k, d) * init_std)
        self.ln1, self.ln2, self.ln3, self.ln4 = (nn.LayerNorm(d) for _ in range(4))
        nn.init.xavier_normal_(self.item_embedding.weight)
        nn.init.xavier_normal_(self.prototypes)
        if self.position_embedding is not None:
            nn.init.xavier_normal_(self.position_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def _encode(self, item_seq: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """User representations FloatTensor[B, T, D], one per prefix mask row of ``prefix`` bool[B, T, S].

        ``item_seq`` is LongTensor[B, S]; ``prefix[b, t, s]`` says whether position s belongs to
        the t-th sequence read from row b. Attention logits depend only on (b, s), so they are
        computed once per row and normalised per prefix.
        """
        x = self.item_embedding(item_seq)  # [B, S, D]
        xp = x
        if self.position_embedding is not None:
            xp = x + self.position_embedding(torch.arange(item_seq.size(1), device=item_seq.device))[None]
        bias = 0.0
        if self.recency is not None:  # distance of s to the last position of prefix t (prefixes start at 0)
            end = prefix.sum(-1, keepdim=True) - 1  # [B, T, 1]
            s_pos = torch.arange(item_seq.size(1), device=item_seq.device)
            bias = self.recency[(end - s_pos).clamp(0, self.max_len - 1)]  # [B, T, S, K + 2]
            bias = bias.masked_fill(~prefix[..., None], 0.0)
        k = self.n_interests
        # (1) concept activation: attentive summary z, top-K prototypes gated by sigmoid(score).
        logits_a = (torch.tanh(xp @ self.w1) @ self.w2)[:, None, :]  # [B, 1, S]
        if self.recency is not None:
            logits_a = logits_a + bias[..., 0]
        a = _masked_softmax(logits_a, prefix, dim=2)  # [B, T, S]
        z = torch.einsum("bts,bsd->btd", a, x)
        top, idx = (z @ self.prototypes.T).topk(self.n_interests, dim=-1)  # [B, T, K]
        c_u = self.prototypes[idx] * torch.sigmoid(top).unsqueeze(-1)  # [B, T, K, D]
        # (2) intention assignment P(k|t): softmax over the K active concepts.
        p_kt = torch.softmax(
            torch.einsum("bsd,btkd->btsk", self.ln1(x @ self.w3), self.ln2(c_u)), dim=-1
        )  # [B, T, S, K]
        # (3) attention weighting P(t|k): one additive attention over positions per interest.
        logits_tk = torch.einsum("bske,ke->bsk", torch.tanh(torch.einsum("bsd,kde->bske", xp, self.wk1)), self.wk2)
        logits_tk = logits_tk[:, None]  # [B, 1, S, K]
        if self.recency is not None:
            logits_tk = logits_tk + bias[..., 1 : k + 1]
        p_tk = _masked_softmax(logits_tk, prefix[..., None], dim=2)  # [B, T, S, K]
        # (4) K interest embeddings.
        phi = self.ln3(torch.einsum("btsk,bsd->btkd", p_kt * p_tk, x))  # [B, T, K, D]
        # (5) interest aggregation: predict the next intention C_apt from the intention sequence X^.
        # X^_t = sum_k P(k|t) C^u_k is linear in C^u, so (X^_t + pos_t) W3 = sum_k P(k|t) (C^u_k W3)
        # + pos_t W3 and beta^T X^ = (beta^T P) C^u: X^ [B, T, S, D] is never built, and the only
        # [B, T, S, D] tensor is the tanh (K-wide contractions instead of D-wide matmuls).
        h = torch.einsum("btsk,btkd->btsd", p_kt, c_u @ self.w3)
        if self.position_embedding is not None:
            h = h + (self.position_embedding.weight[: item_seq.size(1)] @ self.w3)[None, None]
        logits_beta = torch.tanh(h) @ self.w4  # [B, T, S]
        if self.recency is not None:
            logits_beta = logits_beta + bias[..., k + 1]
        beta = _masked_softmax(logits_beta, prefix, dim=2)  # [B, T, S]
        c_apt = self.ln4(torch.einsum("btk,btkd->btd", torch.einsum("bts,btsk->btk", beta, p_kt), c_u))
        e = torch.softmax(torch.einsum("btd,btkd->btk", c_apt, phi) / self.tau, dim=-1)
        return torch.einsum("btk,btkd->btd", e, phi)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Representation of every prefix of LongTensor[B, L] (right-padded): FloatTensor[B, L, D].

        Position t reads ``item_seq[:, :t+1]`` (causal); positions past ``seq_len`` read the whole row.
        """
        length = item_seq.size(1)
        pos = torch.arange(length, device=item_seq.device)
        prefix = (pos[None, None, :] <= pos[None, :, None]) & (pos[None, None, :] < seq_len[:, None, None])
        return self._encode(item_seq, prefix)

    def last_state(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Representation FloatTensor[B, D] of each whole sequence (one prefix per row, cheaper than forward)."""
        pos = torch.arange(item_seq.size(1), device=item_seq.device)
        prefix = (pos[None, :] < seq_len[:, None])[:, None, :]  # [B, 1, S]
        return self._encode(item_seq, prefix)[:, 0]

    def covariance_regulariser(self) -> torch.Tensor:
        """L_c = (||M||_F^2 - ||diag M||^2) / 2, M = C~ C~^T / D over centred prototypes; scalar."""
        centred = self.prototypes - self.prototypes.mean(dim=1, keepdim=True)
        cov = centred @ centred.T / self.prototypes.size(1)  # [L, L]
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / 2

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-prefix next-item loss (shared CE/BCE) + reg_weight * covariance regulariser; scalar."""
        return super().calculate_loss(batch) + self.reg_weight * self.covariance_regulariser()


def build(cfg: ExperimentConfig, n_items: int, split=None) -> SINE:
    """SINE from ``cfg.model`` (hidden_dim), ``cfg.sine`` and ``cfg.train.loss``; ``split`` unused."""
    s = cfg.sine
    return SINE(
        n_items, max_len=cfg.data.max_len, hidden_dim=cfg.model.hidden_dim,
        prototype_size=s.prototype_size, interest_size=s.interest_size, tau=s.tau,
        reg_weight=s.reg_weight, position=s.position, loss=cfg.train.loss,
    )
