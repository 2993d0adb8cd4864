"""S3-Rec (Zhou et al., CIKM 2020): four self-supervised pre-training objectives, then SASRec fine-tuning."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rasr_lib.models.base import SequentialRecommender, init_normal_weights
from rasr_lib.runtime import load_training_state, save_training_state
from rasr_lib.training import _redraw_seen

log = logging.getLogger(__name__)

BUCKET_POOL = 32  # pre-training batches per length-sorting pool (as the training loop)


# --------------------------------------------------------------------------- item attributes


def item_attribute_matrix(dataset) -> sp.csr_matrix:
    """Sparse bool[n_items + 1, n_attributes + 1] of each item's attributes (row/column 0 = padding).

    Amazon sets: the S3-Rec ``<Name>_item2attributes.json.gz`` ids, which the loader attaches to
    every item as ``item_text[i]["attributes"]`` already mapped to our ids ``1..n_items`` (a
    ``max_users`` slice re-indexes ``item_text`` with its items). ML-1M has no such file: its
    genres (``item_text[i]["genres"]``) stand in, numbered 1..G alphabetically. Anything else
    raises ValueError.
    """
    text = getattr(dataset, "item_text", None) or []
    n_items = dataset.n_items
    if len(text) != n_items + 1:
        raise ValueError(f"S3-Rec needs item attributes, but dataset {dataset.name!r} carries no item "
                         "metadata (load it with rasr_lib.data.load_dataset)")
    metas = [m or {} for m in text[1:]]
    lists = [m.get("attributes") or [] for m in metas]
    if not any(lists):
        genres = [m.get("genres") or [] for m in metas]
        if not any(genres):
            raise ValueError(f"S3-Rec needs item attributes: dataset {dataset.name!r} has neither "
                             "item2attributes ids nor genres")
        vocab = {g: i + 1 for i, g in enumerate(sorted(set(itertools.chain.from_iterable(genres))))}
        lists = [[vocab[g] for g in gs] for gs in genres]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=n_items)
    cols = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(1, n_items + 1, dtype=np.int64), lengths)
    if len(cols) and cols.min() < 1:
        raise ValueError(f"{dataset.name}: attribute ids must start at 1 (0 is padding)")
    n_attr = int(cols.max()) if len(cols) else 0
    mat = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n_items + 1, n_attr + 1))
    mat.sum_duplicates()
    return mat


# --------------------------------------------------------------------------- shared encoder


class BertStyleEncoder(nn.Module):
    """S3-Rec's encoder (authors' ``modules.py``): (item + position) -> LayerNorm -> dropout -> post-LN blocks.

    Blocks are BERT's: self-attention and a GELU feed-forward, each with dropout, a residual and
    LayerNorm (eps 1e-12). The attention is causal (fine-tuning, next-item) or bidirectional
    with a key-padding mask (pre-training).
    """

    def __init__(self, max_len: int, hidden_dim: int, num_layers: int, num_heads: int, inner_dim: int,
                 dropout: float, activation: str = "gelu"):
        super().__init__()
        self.max_len = max_len
        self.position_embedding = nn.Embedding(max_len, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden_dim, nhead=num_heads, dim_feedforward=inner_dim, dropout=dropout,
            activation=activation, layer_norm_eps=1e-12, batch_first=True, norm_first=False,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def forward(self, item_emb: torch.Tensor, item_seq: torch.Tensor, causal: bool) -> torch.Tensor:
        """Encode item embeddings FloatTensor[B, L, D] of ``item_seq`` LongTensor[B, L] into FloatTensor[B, L, D]."""
        length = item_seq.size(1)
        positions = torch.arange(length, device=item_seq.device)
        x = self.dropout(self.norm(item_emb + self.position_embedding(positions)[None]))
        if causal:
            # Right padding + causal mask: real positions never see padding, so no key mask.
            mask = torch.triu(torch.full((length, length), float("-inf"), device=item_seq.device), 1)
            return self.layers(x, mask=mask, is_causal=True)
        return self.layers(x, src_key_padding_mask=item_seq == 0)


def training_sequences(split, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training row's whole sequence (inputs + final target), last ``max_len`` items.

    Returns (LongTensor[R, max_len] right-padded, LongTensor[R] lengths) over rows with a target.
    """
    rows = np.flatnonzero(split.train_len > 0)
    inputs = torch.from_numpy(split.train_input[rows])
    targets = torch.from_numpy(split.train_target[rows])
    full = torch.cat([inputs[:, :1], targets], 1)  # target[t] follows input[t]: s = x_0, y_0 .. y_{n-1}
    n = torch.from_numpy(split.train_len[rows]) + 1
    start = (n - max_len).clamp(min=0)  # the authors keep the last max_len items (seq[-(L+2):-2])
    length = n - start
    cols = torch.arange(max_len)
    index = (start[:, None] + cols[None]).clamp(max=full.size(1) - 1)
    seqs = torch.where(cols[None] < length[:, None], full.gather(1, index), 0)
    return seqs, length


# --------------------------------------------------------------------------- the model


class S3Rec(SequentialRecommender):
    """S3-Rec: Zhou, Wang, Zhang, Zhang, Wang, Zhang, Wang & Wen, "S3-Rec: Self-Supervised Learning
    for Sequential Recommendation with Mutual Information Maximization", CIKM 2020.

    Pre-training (:meth:`prepare`) on a bidirectional encoder with four mutual-information
    objectives, each scored by its own linear map W (paper Eqs. 4-11, authors' ``models.py``):
    AAP (item -> its attributes), MIP (masked item from context, pairwise vs a sampled negative),
    MAP (masked item's attributes from context), SP (masked segment vs the segment, pairwise vs a
    random segment of another part of the data). Loss = 0.2 AAP + 1 MIP + 1 MAP + 0.5 SP, mask
    probability 0.2, the last position of every pre-training prefix always masked (authors' code).
    Fine-tuning is SASRec's causal next-item objective on the same weights (the loop's
    ``calculate_loss``); the item table has one extra row, the mask token ``n_items + 1``.

    Published defaults (paper §5.1.3 and the authors' scripts): d = 64, 2 layers, 2 heads, FFN 4d,
    GELU, dropout 0.5 (scripts; 0.2 in the paper text), max length 50, Adam lr 1e-3, batch 256,
    pre-training batch 100 for 100 epochs (the paper; the released checkpoints are at 150),
    fine-tuning with BCE and one negative not in the user's sequence, early stopping on N@20.
    We use the same sizes; pre-training runs ``S3RecConfig.pretrain_epochs`` (10 by default) over
    every prefix with batch 256; the quick profile runs ``quick_pretrain_epochs`` (1) over one
    sampled prefix per sequence — see ``rasr_lib/config.py``.
    """

    def __init__(
        self,
        n_items: int,
        attributes: sp.csr_matrix,
        max_len: int = 50,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        inner_dim: int = 256,
        dropout: float = 0.5,
        activation: str = "gelu",
        loss: str = "bce",
        mask_prob: float = 0.2,
        weights: tuple[float, float, float, float] = (0.2, 1.0, 1.0, 0.5),
    ):
        super().__init__(n_items, hidden_dim, loss)
        if attributes.shape[0] != n_items + 1:
            raise ValueError(f"attribute matrix has {attributes.shape[0]} rows, expected n_items + 1 = {n_items + 1}")
        self.max_len = max_len
        self.mask_id = n_items + 1
        self.mask_prob = mask_prob
        self.weights = weights  # (AAP, MIP, MAP, SP)
        self.n_attributes = attributes.shape[1] - 1
        self.item_embedding = nn.Embedding(n_items + 2, hidden_dim, padding_idx=0)  # + mask token
        self.attribute_embedding = nn.Embedding(self.n_attributes + 1, hidden_dim, padding_idx=0)
        self.encoder = BertStyleEncoder(max_len, hidden_dim, num_layers, num_heads, inner_dim, dropout,
                                        activation)
        # One linear map per objective (W_AAP, W_MIP, W_MAP, W_SP in the paper).
        self.aap_head = nn.Linear(hidden_dim, hidden_dim)
        self.mip_head = nn.Linear(hidden_dim, hidden_dim)
        self.map_head = nn.Linear(hidden_dim, hidden_dim)
        self.sp_head = nn.Linear(hidden_dim, hidden_dim)
        # Dense multi-hot item -> attributes (the mask row stays empty); not saved in checkpoints.
        dense = torch.zeros(n_items + 2, self.n_attributes + 1, dtype=torch.bool)
        coo = attributes.tocoo()
        dense[torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))] = True
        self.register_buffer("item_attributes", dense, persistent=False)
        self.apply(init_normal_weights)

    def item_weights(self) -> torch.Tensor:
        """Output item table FloatTensor[n_items + 1, D] (the mask token's row is never scored)."""
        return self.item_embedding.weight[: self.n_items + 1]

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Causally encode LongTensor[B, L] (right-padded) into FloatTensor[B, L, D] (fine-tuning)."""
        return self.encoder(self.item_embedding(item_seq), item_seq, causal=True)

    def encode_bidirectional(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Bidirectionally encode LongTensor[B, L] (right-padded, may hold the mask id) into FloatTensor[B, L, D]."""
        return self.encoder(self.item_embedding(item_seq), item_seq, causal=False)

    @staticmethod
    def _pair_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Authors' pairwise loss -log sigma(sigma(pos) - sigma(neg)) per element (FloatTensor, same shape)."""
        # f(.) = sigma(score) in the paper, then a BPR-style sigma of the difference (models.py).
        return -F.logsigmoid(torch.sigmoid(pos) - torch.sigmoid(neg))

    def pretrain_losses(self, seq: torch.Tensor, length: torch.Tensor, long_items: torch.Tensor,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The four S3-Rec losses on right-padded sequences ``seq`` LongTensor[B, W] with lengths LongTensor[B].

        ``long_items`` LongTensor[T] is every training sequence concatenated (negative segments
        come from it). Each loss is summed over positions (attributes) and averaged over rows.
        Draws (masks, negatives, segments) use ``generator`` on the CPU, then move to ``seq``'s device.
        """
        device, (b, w) = seq.device, seq.shape
        cpu_len = length.cpu()
        cols = torch.arange(w)
        real = cols[None] < cpu_len[:, None]  # [B, W] on CPU
        last = cols[None] == (cpu_len - 1)[:, None]
        masked = ((torch.rand(b, w, generator=generator) < self.mask_prob) & real) | last
        neg_items = torch.randint(1, self.n_items + 1, (b, w), generator=generator)
        neg_items = _redraw_seen(neg_items, seq.cpu(), self.n_items, generator)  # not in the sequence
        # Segment prediction (rows with >= 2 items): a random span of length 1..n//2.
        n = cpu_len
        seg_len = 1 + (torch.rand(b, generator=generator) * (n // 2).clamp(min=1)).long()
        seg_len = torch.minimum(seg_len, n)
        start = (torch.rand(b, generator=generator) * (n - seg_len + 1)).long()
        neg_start = (torch.rand(b, generator=generator) * (len(long_items) - seg_len + 1)).long()
        in_seg = (cols[None] >= start[:, None]) & (cols[None] < (start + seg_len)[:, None]) & real
        neg_index = (neg_start[:, None] + cols[None] - start[:, None]).clamp(0, len(long_items) - 1)
        masked, neg_items, in_seg, neg_index = (t.to(device) for t in (masked, neg_items, in_seg, neg_index))
        real, last = real.to(device), last.to(device)
        sp_rows = length >= 2

        hidden = self.encode_bidirectional(torch.where(masked, self.mask_id, seq))  # [B, W, D]
        attr_emb = self.attribute_embedding.weight[1:]  # [A, D]
        attrs = self.item_attributes[seq][..., 1:].float()  # [B, W, A]
        # AAP: attributes of every unmasked item from its own (contextualised) state.
        aap = F.binary_cross_entropy_with_logits(self.aap_head(hidden) @ attr_emb.T, attrs, reduction="none")
        aap = (aap.sum(-1) * (real & ~masked)).sum() / b
        # MIP: the masked item against a sampled negative.
        mip_h = self.mip_head(hidden)
        pos = (mip_h * self.item_embedding(seq)).sum(-1)
        neg = (mip_h * self.item_embedding(neg_items)).sum(-1)
        mip = (self._pair_loss(pos, neg) * masked).sum() / b
        # MAP: the attributes of each masked item from its context.
        map_ = F.binary_cross_entropy_with_logits(self.map_head(hidden) @ attr_emb.T, attrs, reduction="none")
        map_ = (map_.sum(-1) * masked).sum() / b
        # SP: [context with the span masked] vs [span only] / [a random span], read at the last position.
        long_dev = long_items.to(device)
        context = torch.where(in_seg, self.mask_id, seq)
        pos_seg = torch.where(real, torch.where(in_seg, seq, self.mask_id), 0)
        neg_seg = torch.where(real, torch.where(in_seg, long_dev[neg_index], self.mask_id), 0)
        states = self.encode_bidirectional(torch.cat([context, pos_seg, neg_seg]))
        states = states[torch.arange(3 * b, device=device), (length - 1).repeat(3)].view(3, b, -1)
        ctx = self.sp_head(states[0])
        sp_loss = (self._pair_loss((ctx * states[1]).sum(-1), (ctx * states[2]).sum(-1)) * sp_rows).sum() / b
        return {"aap": aap, "mip": mip, "map": map_, "sp": sp_loss}

    def pretrain_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the four losses (paper weights 0.2 / 1 / 1 / 0.5), a scalar."""
        a, i, m, s = self.weights
        return a * losses["aap"] + i * losses["mip"] + m * losses["map"] + s * losses["sp"]

    def prepare(self, split, cfg, device: torch.device, generator: torch.Generator,
                progress: bool = True, checkpoint: Path | None = None,
                deadline: float | None = None) -> dict:
        """Pre-train on ``split``'s training sequences; return {epochs, seconds, losses per epoch, ...}.

        With ``checkpoint`` the state (weights, optimiser, random streams, losses) is saved after
        every pre-training epoch and a later call resumes from it, drawing what an uninterrupted
        run would have drawn. ``deadline`` (a ``time.time()`` value) stops after the epoch whose
        duration, repeated, would pass it; the summary then says ``"out_of_time": True``.
        """
        s = cfg.s3rec
        epochs, prefixes = s.pretrain_epochs, s.pretrain_prefixes
        if cfg.profile == "quick":  # the quick profile must finish in well under a minute on a CPU
            epochs, prefixes = s.quick_pretrain_epochs, "sample"
        self.to(device)
        seqs, lengths = training_sequences(split, self.max_len)
        long_items = seqs[seqs > 0]  # every training sequence, concatenated row by row
        if prefixes == "all":
            rows, ends = every_prefix(lengths)
        elif prefixes != "sample":
            raise ValueError(f"s3rec.pretrain_prefixes must be 'all' or 'sample', got {prefixes!r}")
        optimizer = torch.optim.Adam(self.parameters(), lr=s.pretrain_lr)
        history, seconds, start = [], 0.0, 1
        if checkpoint is not None and Path(checkpoint).exists():
            state = load_training_state(checkpoint, self, optimizer, generator, device)
            history, seconds, start = state["history"], state["seconds"], state["epoch"] + 1
            log.info("S3-Rec pre-training resumed from %s at epoch %d", checkpoint, start)
        out_of_time = False
        bar = tqdm(range(start, epochs + 1), desc="pre-train S3Rec", disable=not progress, leave=False)
        for epoch in bar:
            if prefixes == "sample":  # one random prefix per sequence and epoch
                rows = torch.arange(len(seqs))
                ends = 1 + (torch.rand(len(seqs), generator=generator) * lengths).long()
            self.train()
            sums, n_rows, tic = {k: 0.0 for k in ("aap", "mip", "map", "sp", "total")}, 0, time.perf_counter()
            for seq, end in pretraining_batches(seqs, rows, ends, s.pretrain_batch_size, generator):
                losses = self.pretrain_losses(seq.to(device), end.to(device), long_items, generator)
                total = self.pretrain_loss(losses)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                for k, v in {**losses, "total": total}.items():
                    sums[k] += float(v.detach()) * len(end)
                n_rows += len(end)
            elapsed = time.perf_counter() - tic
            seconds += elapsed
            entry = {"epoch": epoch, **{k: v / max(n_rows, 1) for k, v in sums.items()}, "seconds": elapsed}
            history.append(entry)
            bar.set_postfix(loss=f"{entry['total']:.3f}")
            log.info("S3-Rec pre-train epoch %d: %s", epoch,
                     " ".join(f"{k} {entry[k]:.4f}" for k in ("aap", "mip", "map", "sp", "total")))
            if checkpoint is not None:
                save_training_state(Path(checkpoint), self, optimizer, generator,
                                    history=history, seconds=seconds, epoch=epoch)
            if epoch < epochs and deadline is not None and time.time() + elapsed > deadline:
                out_of_time = True
                log.info("S3-Rec pre-training stopped after epoch %d of %d before the deadline; "
                         "rerun the same command to resume", epoch, epochs)
                break
        bar.close()
        summary = {"epochs": epochs, "epochs_done": len(history), "seconds": round(seconds, 1),
                   "n_sequences": int(len(ends)) if prefixes == "all" else int(len(seqs)),
                   "prefixes": prefixes, "losses": history}
        if out_of_time:
            summary["out_of_time"] = True
        return summary


def every_prefix(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every prefix s[:1], s[:2], ... of sequences of ``lengths`` LongTensor[R] (authors' PretrainDataset).

    Returns (LongTensor[P] row of each prefix, LongTensor[P] its length), P = lengths.sum().
    """
    rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    ends = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths) + 1
    return rows, ends


def pretraining_batches(seqs: torch.Tensor, rows: torch.Tensor, ends: torch.Tensor, batch_size: int,
                        generator: torch.Generator):
    """Yield (LongTensor[b, w] right-padded prefixes, LongTensor[b] their lengths): one pre-training epoch.

    Prefix k is ``seqs[rows[k], :ends[k]]``; batches are length-bucketed and in random order, and
    ``w`` is the longest prefix of the batch.
    """
    for index in _length_bucketed_batches(ends, batch_size, generator):
        end = ends[index]
        width = int(end.max())
        cols = torch.arange(width)
        yield torch.where(cols[None] < end[:, None], seqs[rows[index], :width], 0), end


def _length_bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Yield LongTensor index batches: shuffled, sorted by length within pools, batch order shuffled."""
    order = torch.randperm(len(lengths), generator=generator)
    pool = batch_size * BUCKET_POOL
    chunks = [order[i : i + pool] for i in range(0, len(order), pool)]
    order = torch.cat([c[torch.argsort(lengths[c], stable=True)] for c in chunks])
    batches = list(torch.split(order, batch_size))
    for i in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[i]


def build(cfg, n_items: int, split=None) -> S3Rec:
    """S3-Rec for ``n_items`` items; needs the training ``split`` (its dataset carries the attributes)."""
    if split is None:
        raise ValueError("S3-Rec needs the training split for its item attributes: "
                         "build_model(cfg, n_items, split=split)")
    m, s = cfg.model, cfg.s3rec
    return S3Rec(
        n_items, item_attribute_matrix(split.dataset), max_len=cfg.data.max_len, hidden_dim=m.hidden_dim,
        num_layers=m.num_layers, num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout,
        activation=m.activation, loss=cfg.train.loss, mask_prob=s.mask_prob,
        weights=(s.aap_weight, s.mip_weight, s.map_weight, s.sp_weight),
    )
