"""CL4SRec (Xie et al., ICDE 2022): SASRec plus a contrastive loss between augmented views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rasr_lib.config import ExperimentConfig
from rasr_lib.models.base import init_normal_weights
from rasr_lib.models.sasrec import SASRec

AUGMENTATIONS = ("crop", "mask", "reorder")
POOLINGS = ("last", "mean")


def item_crop(item_seq: torch.Tensor, seq_len: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep a random continuous run of max(1, floor(eta * n)) items: ([B, L], [B]) -> ([B, L], [B]).

    The kept run is moved to the front (right padding stays right padding).
    """
    width = item_seq.size(1)
    # float64 so floor(eta * n) equals Python's int(eta * n) (DR4SR's Item_Crop) for every n.
    sub = (seq_len.double() * eta).floor().long().clamp(min=1)
    start = (torch.rand(seq_len.shape, device=item_seq.device, dtype=torch.float64)
             * (seq_len - sub + 1)).floor().long()
    cols = torch.arange(width, device=item_seq.device)
    index = (start[:, None] + cols[None]).clamp(max=width - 1)
    cropped = torch.gather(item_seq, 1, index)
    return cropped.masked_fill(cols[None] >= sub[:, None], 0), sub


def item_mask(item_seq: torch.Tensor, seq_len: torch.Tensor, gamma: float, mask_id: int) -> torch.Tensor:
    """Replace floor(gamma * n) distinct random real positions by ``mask_id``: [B, L] -> [B, L]."""
    width = item_seq.size(1)
    cols = torch.arange(width, device=item_seq.device)
    real = cols[None] < seq_len[:, None]
    n_mask = (seq_len.double() * gamma).floor().long()
    # Uniform sampling without replacement, vectorised: rank random keys (padding ranks last)
    # and mask the positions whose rank is below the row's count.
    keys = torch.rand(item_seq.shape, device=item_seq.device).masked_fill(~real, 2.0)
    rank = keys.argsort(1).argsort(1)
    return item_seq.masked_fill(rank < n_mask[:, None], mask_id)


def item_reorder(item_seq: torch.Tensor, seq_len: torch.Tensor, beta: float) -> torch.Tensor:
    """Shuffle a random continuous run of floor(beta * n) items in place: [B, L] -> [B, L]."""
    width = item_seq.size(1)
    cols = torch.arange(width, device=item_seq.device)
    sub = (seq_len.double() * beta).floor().long()
    start = (torch.rand(seq_len.shape, device=item_seq.device, dtype=torch.float64)
             * (seq_len - sub + 1)).floor().long()
    inside = (cols[None] >= start[:, None]) & (cols[None] < (start + sub)[:, None])
    # Sort key = own position outside the run, start + U[0, sub) inside it: sorting keeps every
    # outside item in place and applies a uniform random permutation to the run.
    noise = start[:, None].double() + torch.rand(item_seq.shape, device=item_seq.device,
                                                 dtype=torch.float64) * sub[:, None]
    keys = torch.where(inside, noise, cols[None].double().expand_as(noise))
    return torch.gather(item_seq, 1, keys.argsort(1))


def augment(
    item_seq: torch.Tensor, seq_len: torch.Tensor, eta: float, gamma: float, beta: float, mask_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One view per row, each row drawing crop / mask / reorder uniformly: ([B, L], [B]) -> ([B, L], [B])."""
    choice = torch.randint(len(AUGMENTATIONS), seq_len.shape, device=item_seq.device)
    cropped, crop_len = item_crop(item_seq, seq_len, eta)
    masked = item_mask(item_seq, seq_len, gamma, mask_id)
    reordered = item_reorder(item_seq, seq_len, beta)
    # All three are computed for the whole batch (cheap, O(B L log L)) and one is picked per row:
    # no Python loop over rows.
    view = torch.where((choice == 0)[:, None], cropped, torch.where((choice == 1)[:, None], masked, reordered))
    return view, torch.where(choice == 0, crop_len, seq_len)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over 2B views z1, z2 FloatTensor[B, D]: inner-product similarity, 2B - 2 in-batch negatives.

    Every view is an anchor (CL4SRec Eq. 5 summed over both views); its positive is the other
    view of the same sequence, its negatives the 2(B - 1) views of the other sequences.
    """
    batch = z1.size(0)
    z = torch.cat([z1, z2], 0)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    rows = torch.arange(batch, device=z.device)
    labels = torch.cat([rows + batch, rows])
    return F.cross_entropy(sim, labels)


class CL4SRec(SASRec):
    """CL4SRec: SASRec's next-item loss + lambda * InfoNCE between two augmented views of each row.

    Xie, Sun, Liu, Wu, Gao, Ding, Cui, "Contrastive Learning for Sequential Recommendation",
    ICDE 2022 (arXiv 2010.14395). Published defaults: SASRec encoder (2 layers, 2 heads), views
    drawn from item crop (eta), item mask (gamma, a [mask] token) and item reorder (beta),
    lambda = 0.1, temperature 1, batch-wise negatives (2N - 2), batch 256, lr 1e-3, d = 64.
    Augmentation rates for Beauty as in DR4SR's ``Item_Random`` (the code RaSR compares with):
    eta = 0.2, gamma = 0.7, beta = 0.2; DR4SR's encoder settings are SASRec's (FFN 128,
    dropout 0.5) and we use them. The [mask] item is id ``n_items + 1``: one extra row of the
    item table that never scores (``full_sort_predict`` stays [B, n_items + 1]).

    A view's representation is the mean of its real positions' states, as in DR4SR's
    ``CL4SRecAugmentation``: the code behind the CL4SRec rows of both DR4SR and RaSR, which it
    reproduces on Beauty within 1.2 % (the last real state, SASRec's user representation, trails
    them by about 20 %: ``pooling="last"``). Views are drawn per row (the paper); DR4SR draws one
    operator per batch. The contrastive term is added only in training mode, so the loop's validation
    loss stays deterministic and draws nothing from the global RNG.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int = 128,
        dropout: float = 0.5,
        activation: str = "gelu",
        layer_norm: str = "post",
        loss: str = "bce",
        cl_weight: float = 0.1,
        temperature: float = 1.0,
        crop_eta: float = 0.2,
        mask_gamma: float = 0.7,
        reorder_beta: float = 0.2,
        pooling: str = "mean",
    ):
        super().__init__(n_items, max_len=max_len, hidden_dim=hidden_dim, num_layers=num_layers,
                         num_heads=num_heads, inner_dim=inner_dim, dropout=dropout,
                         activation=activation, layer_norm=layer_norm, loss=loss)
        if pooling not in POOLINGS:
            raise ValueError(f"cl4srec.pooling must be one of {POOLINGS}, got {pooling!r}")
        for name, rate in (("crop_eta", crop_eta), ("mask_gamma", mask_gamma), ("reorder_beta", reorder_beta)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"cl4srec.{name} must lie in [0, 1], got {rate}")
        if temperature <= 0:
            raise ValueError(f"cl4srec.temperature must be > 0, got {temperature}")
        self.cl_weight, self.temperature, self.pooling = cl_weight, temperature, pooling
        self.crop_eta, self.mask_gamma, self.reorder_beta = crop_eta, mask_gamma, reorder_beta
        self.mask_id = n_items + 1
        # One more row than SASRec's table: the [mask] item of the mask augmentation.
        self.item_embedding = nn.Embedding(n_items + 2, hidden_dim, padding_idx=0)
        init_normal_weights(self.item_embedding)

    def item_weights(self) -> torch.Tensor:
        """Scoring table FloatTensor[n_items + 1, D]: the real items and padding, never [mask]."""
        return self.item_embedding.weight[: self.n_items + 1]

    def sequence_repr(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Representation FloatTensor[B, D] of LongTensor[B, L] views: last real state or mean of real states."""
        if self.pooling == "last":
            return self.last_state(item_seq, seq_len)
        states = self.forward(item_seq, seq_len)
        real = (torch.arange(item_seq.size(1), device=item_seq.device)[None] < seq_len[:, None]).float()
        return (states * real[..., None]).sum(1) / seq_len.clamp(min=1)[:, None].float()

    def contrastive_loss(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """InfoNCE between two random views of each row of LongTensor[B, L] (lengths [B]); a scalar."""
        args = (self.crop_eta, self.mask_gamma, self.reorder_beta, self.mask_id)
        view1, len1 = augment(item_seq, seq_len, *args)
        view2, len2 = augment(item_seq, seq_len, *args)
        # One encoder pass over both views (2B rows) instead of two.
        z = self.sequence_repr(torch.cat([view1, view2]), torch.cat([len1, len2]))
        z1, z2 = z.chunk(2)
        return info_nce(z1, z2, self.temperature)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss (BCE or CE, per position) + cl_weight * InfoNCE on the batch's input rows; a scalar."""
        loss = super().calculate_loss(batch)
        if self.training and self.cl_weight > 0:
            loss = loss + self.cl_weight * self.contrastive_loss(batch["item_seq"], batch["seq_len"])
        return loss


def build(cfg: ExperimentConfig, n_items: int, split=None) -> CL4SRec:
    """CL4SRec from the shared model sizes, ``cfg.train.loss`` and ``cfg.cl4srec``; ``split`` is unused."""
    m, c = cfg.model, cfg.cl4srec
    return CL4SRec(
        n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
        num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout, activation=m.activation,
        layer_norm=m.layer_norm, loss=cfg.train.loss, cl_weight=c.cl_weight,
        temperature=c.temperature, crop_eta=c.crop_eta, mask_gamma=c.mask_gamma,
        reorder_beta=c.reorder_beta, pooling=c.pooling,
    )
