"""Leave-one-out evaluation: full ranking or 1 + n sampled negatives, Recall@k and NDCG@k.

Conventions shared by every function here:

* scores are ``[B, n_items + 1]``; column 0 is the padding item and never ranks;
* ranks are 1-based and *pessimistic*: an item whose score ties the target's is counted as
  ranked above it, and so is an item whose score is NaN (a NaN target score gets the worst
  rank) -- a constant or broken scorer can never look good;
* ``exclude`` marks items removed from the ranking (the user's history); the target itself is
  never removed, even when it also occurs in the history (repeat purchases).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from rasr_lib.config import EvalConfig

logger = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled100")
PARTS = ("valid", "test")


# int16 sums of uint8 are exact up to this many columns and about twice as fast as int32 on CPU.
_INT16_BLOCK = 32767


def _check_target(scores: torch.Tensor, target: torch.Tensor) -> None:
    """Validate shapes of scores [B, N+1] and target [B] (ids in 1..N)."""
    if scores.dim() != 2 or target.dim() != 1 or scores.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected scores [B, n_items + 1] and target [B], got {tuple(scores.shape)} "
            f"and {tuple(target.shape)}"
        )
    if target.numel() and (int(target.min()) < 1 or int(target.max()) >= scores.shape[1]):
        raise ValueError(f"target ids must lie in 1..{scores.shape[1] - 1} (0 is padding)")


def _dense_to_pairs(
    exclude: torch.Tensor | None, shape: torch.Size, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows int64[E], cols int64[E]) of the True cells of a dense exclude bool[B, N+1], or None."""
    if exclude is None:
        return None
    if tuple(exclude.shape) != tuple(shape):
        raise ValueError(f"exclude has shape {tuple(exclude.shape)}, scores {tuple(shape)}")
    rows, cols = exclude.to(device=device, dtype=torch.bool).nonzero(as_tuple=True)
    return rows, cols


def _count_below(scores: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """int64[B]: per row of scores[B, C], how many cells are strictly below t[B, 1] (NaN never is)."""
    total = torch.zeros(scores.shape[0], dtype=torch.int64, device=scores.device)
    for lo in range(0, scores.shape[1], _INT16_BLOCK):
        below = torch.lt(scores[:, lo : lo + _INT16_BLOCK], t).view(torch.uint8)
        total += below.sum(1, dtype=torch.int16 if below.device.type == "cpu" else torch.int32)
    return total


def _ranks_full(
    scores: torch.Tensor, target: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor] | None
) -> torch.Tensor:
    """Pessimistic full-ranking ranks int64[B]; ``pairs`` = (rows, cols) of excluded cells, no duplicates."""
    n_rows, n_real = scores.shape[0], scores.shape[1] - 1
    rows = torch.arange(n_rows, device=scores.device)
    t = scores[rows, target].unsqueeze(1)  # [B, 1]
    # Count the competitors strictly *below* the target; the rest (ties, NaN on either side) is
    # counted against it: rank = n_competitors + 1 - n_below. The target is never below itself.
    below = _count_below(scores, t) - (scores[:, 0:1] < t).squeeze(1).long()
    n_dropped = torch.zeros_like(below)
    if pairs is not None:
        ex_rows, ex_cols = (p.to(scores.device) for p in pairs)
        keep = (ex_cols != 0) & (ex_cols != target[ex_rows])  # padding is already out; target stays
        ex_rows, ex_cols = ex_rows[keep], ex_cols[keep]
        ex_below = (scores[ex_rows, ex_cols] < t.squeeze(1)[ex_rows]).long()
        below -= torch.zeros_like(below).index_add_(0, ex_rows, ex_below)
        n_dropped.index_add_(0, ex_rows, torch.ones_like(ex_rows))
    n_competitors = n_real - 1 - n_dropped
    return n_competitors + 1 - below


def target_ranks(
    scores: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Pessimistic 1-based rank int64[B] of target[B] among all real items of scores[B, N+1], minus exclude[B, N+1]."""
    _check_target(scores, target)
    target = target.to(scores.device)
    return _ranks_full(scores, target, _dense_to_pairs(exclude, scores.shape, scores.device))


def _draw_negatives(
    target: torch.Tensor,
    pairs: tuple[torch.Tensor, torch.Tensor] | None,
    n_cols: int,
    n_negatives: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids int64[B, n], valid bool[B, n]): per row, n distinct uniform items that are not padding, target or excluded.

    Vectorised rejection: draw ``n + margin`` iid ids per row in 1..N and keep the first ``n``
    distinct allowed ones in draw order (a uniform n-subset of the allowed items). Rows where
    that falls short are redrawn exactly by random keys over the whole catalogue (the ``n``
    smallest keys among allowed items); ``valid`` is False only where a row has fewer than ``n``
    allowed items at all. All draws come from ``generator`` on its own device, so a CPU generator
    gives the same negatives whatever device the scores live on.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    device, n_rows, n_real = target.device, target.shape[0], n_cols - 1
    if n_real < 1:
        raise ValueError("the catalogue has no real items")
    gen_device = generator.device
    if pairs is not None:
        ex_rows, ex_cols = (p.to(device) for p in pairs)
        ex_keys = torch.sort(ex_rows * n_cols + ex_cols).values
    else:
        ex_rows = ex_cols = ex_keys = torch.zeros(0, dtype=torch.int64, device=device)

    # 1) Rejection sampling on a small [B, M] candidate matrix.
    n_draw = n_negatives + max(16, n_negatives // 2)
    cand = torch.randint(1, n_cols, (n_rows, n_draw), generator=generator, device=gen_device).to(device)
    allowed = cand != target.unsqueeze(1)
    if ex_keys.numel():
        cand_keys = torch.arange(n_rows, device=device).unsqueeze(1) * n_cols + cand
        pos = torch.searchsorted(ex_keys, cand_keys).clamp_(max=ex_keys.numel() - 1)
        allowed &= ex_keys[pos] != cand_keys
    sorted_cand, order = torch.sort(cand, dim=1, stable=True)
    dup_sorted = torch.zeros_like(allowed)
    dup_sorted[:, 1:] = sorted_cand[:, 1:] == sorted_cand[:, :-1]  # later repeats of an id
    dup = torch.zeros_like(allowed).scatter_(1, order, dup_sorted)
    keep = allowed & ~dup
    taken = keep & (keep.cumsum(1) <= n_negatives)
    ok = taken.sum(1) == n_negatives
    neg_idx = torch.zeros((n_rows, n_negatives), dtype=torch.int64, device=device)
    valid = torch.ones((n_rows, n_negatives), dtype=torch.bool, device=device)
    neg_idx[ok] = cand[ok][taken[ok]].view(-1, n_negatives)

    # 2) Exact random-key fallback for the (rare) rows that came up short.
    bad = (~ok).nonzero(as_tuple=True)[0]
    if bad.numel():
        slot = torch.full((n_rows,), -1, dtype=torch.int64, device=device)
        slot[bad] = torch.arange(bad.numel(), device=device)
        drop = torch.zeros((bad.numel(), n_cols), dtype=torch.bool, device=device)
        drop[:, 0] = True
        drop[torch.arange(bad.numel(), device=device), target[bad]] = True
        sel = slot[ex_rows] >= 0
        drop[slot[ex_rows[sel]], ex_cols[sel]] = True
        keys = torch.rand((bad.numel(), n_cols), generator=generator, device=gen_device).to(device)
        keys.masked_fill_(drop, float("inf"))
        k = min(n_negatives, n_cols)
        neg_keys, idx = torch.topk(keys, k, dim=1, largest=False, sorted=False)
        fill_idx = torch.zeros((bad.numel(), n_negatives), dtype=torch.int64, device=device)
        fill_valid = torch.zeros((bad.numel(), n_negatives), dtype=torch.bool, device=device)
        fill_valid[:, :k] = torch.isfinite(neg_keys)
        fill_idx[:, :k] = torch.where(fill_valid[:, :k], idx, torch.zeros_like(idx))
        neg_idx[bad], valid[bad] = fill_idx, fill_valid
        short = (~fill_valid).any(1)
        if bool(short.any()):
            logger.warning(
                "%d of %d users have fewer than %d allowed negatives; they are ranked against fewer",
                int(short.sum()), n_rows, n_negatives,
            )
    return neg_idx, valid


def sampled_negatives(
    exclude: torch.Tensor | None,
    target: torch.Tensor,
    n_items: int,
    n_negatives: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Negatives int64[B, n] that :func:`sampled_target_ranks` draws from the same generator state (-1 = none left)."""
    shape = torch.Size((target.shape[0], n_items + 1))
    pairs = _dense_to_pairs(exclude, shape, target.device)
    neg_idx, valid = _draw_negatives(target, pairs, n_items + 1, n_negatives, generator)
    return torch.where(valid, neg_idx, torch.full_like(neg_idx, -1))


def _ranks_sampled(
    scores: torch.Tensor,
    target: torch.Tensor,
    pairs: tuple[torch.Tensor, torch.Tensor] | None,
    n_negatives: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Pessimistic ranks int64[B] in 1..n+1 of the target among itself and n sampled negatives."""
    neg_idx, valid = _draw_negatives(target, pairs, scores.shape[1], n_negatives, generator)
    rows = torch.arange(scores.shape[0], device=scores.device)
    t = scores[rows, target].unsqueeze(1)
    not_below = ~(scores.gather(1, neg_idx) < t)  # ties and NaN count against the target
    return 1 + (not_below & valid).sum(1)


def sampled_target_ranks(
    scores: torch.Tensor,
    target: torch.Tensor,
    exclude: torch.Tensor | None,
    n_negatives: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Pessimistic rank int64[B] in 1..n+1 of target[B] among itself and n uniform negatives per row of scores[B, N+1]."""
    _check_target(scores, target)
    target = target.to(scores.device)
    pairs = _dense_to_pairs(exclude, scores.shape, scores.device)
    return _ranks_sampled(scores, target, pairs, n_negatives, generator)


def metrics_from_ranks(ranks: Any, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Recall@k and NDCG@k (single target) averaged over ranks[n_users] (1-based), as floats."""
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based; got a rank below 1")
    out: dict[str, float] = {}
    for k in ks:
        if ranks.size == 0:
            out[f"recall@{k}"] = out[f"ndcg@{k}"] = float("nan")
            continue
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out



def cold_target_users(split: Any, part: str = "test") -> np.ndarray:
    """bool[n_users]: users whose ``part`` target never occurs in any training row (SAGERec §5.8).

    Training rows are every input and target of ``split.train_*`` (synthetic rows included):
    such a target item got no gradient as a positive, so only a model that reaches it
    through side information (SAGERec's semantic graph) can rank it.
    """
    seen = np.zeros(split.n_items + 1, dtype=bool)
    seen[split.train_input.ravel()] = True
    seen[split.train_target.ravel()] = True
    seen[0] = False
    _, _, targets = split.eval_arrays(part)
    return ~seen[targets]


def protocol_name(cfg: EvalConfig) -> str:
    """Human-readable label of an evaluation protocol, e.g. ``'full ranking, history masked'``."""
    if cfg.protocol == "full":
        return "full ranking, " + ("history masked" if cfg.mask_history else "history not masked")
    if cfg.protocol == "sampled100":
        excl = "history excluded" if cfg.mask_history else "history not excluded"
        return f"1+{cfg.n_negatives} sampled negatives, {excl}"
    raise ValueError(f"unknown evaluation protocol {cfg.protocol!r}; expected one of {PROTOCOLS}")


def _history_pairs(
    hist: sp.csr_matrix, lo: int, hi: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows int64[E], cols int64[E]) of the history cells of CSR rows lo..hi-1, rows relative to lo."""
    indptr = hist.indptr[lo : hi + 1]
    cols = hist.indices[indptr[0] : indptr[-1]].astype(np.int64)
    rows = np.repeat(np.arange(hi - lo, dtype=np.int64), np.diff(indptr))
    return torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)


def evaluate(
    model: torch.nn.Module,
    split: Any,
    part: str = "test",
    cfg: EvalConfig | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    return_ranks: bool = False,
) -> dict:
    """Rank each user's ``part`` target with ``model.full_sort_predict`` ([B, L], [B] -> [B, N+1]); return metrics."""
    cfg = cfg or EvalConfig()
    if part not in PARTS:
        raise ValueError(f"unknown evaluation part {part!r}; expected one of {PARTS}")
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {cfg.protocol!r}; expected one of {PROTOCOLS}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    device = torch.device(device)
    if cfg.protocol == "sampled100" and generator is None:
        generator = torch.Generator().manual_seed(0)

    inputs, lengths, targets = split.eval_arrays(part)
    # Users sorted by history length so each batch is trimmed to its longest real input;
    # ranks are put back in user order at the end.
    order = np.argsort(lengths, kind="stable")
    inputs, lengths, targets = inputs[order], lengths[order], targets[order]
    hist = None
    if cfg.mask_history:
        hist = split.history_matrix(part).tocsr()[order]
        hist.sum_duplicates()  # unique, sorted column indices per row
    n_users, n_cols = len(targets), split.n_items + 1
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for lo in range(0, n_users, cfg.batch_size):
                hi = min(lo + cfg.batch_size, n_users)
                width = max(int(lengths[lo:hi].max()), 1)
                seq = torch.from_numpy(np.ascontiguousarray(inputs[lo:hi, :width], dtype=np.int64)).to(device)
                seq_len = torch.from_numpy(np.asarray(lengths[lo:hi], dtype=np.int64)).to(device)
                target = torch.from_numpy(np.asarray(targets[lo:hi], dtype=np.int64)).to(device)
                if getattr(model, "needs_user", False):  # user-embedding models (BPR-MF)
                    user = torch.from_numpy(order[lo:hi].astype(np.int64)).to(device)
                    scores = model.full_sort_predict(seq, seq_len, user=user)
                else:
                    scores = model.full_sort_predict(seq, seq_len)
                if tuple(scores.shape) != (hi - lo, n_cols):
                    raise ValueError(
                        f"full_sort_predict returned shape {tuple(scores.shape)}, "
                        f"expected {(hi - lo, n_cols)} (column 0 = padding)"
                    )
                target = target.to(scores.device)
                pairs = _history_pairs(hist, lo, hi, scores.device) if hist is not None else None
                if cfg.protocol == "full":
                    ranks = _ranks_full(scores, target, pairs)
                else:
                    ranks = _ranks_sampled(scores, target, pairs, cfg.n_negatives, generator)
                chunks.append(ranks.cpu())
    finally:
        model.train(was_training)

    all_ranks = np.zeros(n_users, dtype=np.int64)
    if chunks:
        all_ranks[order] = torch.cat(chunks).numpy().astype(np.int64)
    result: dict[str, Any] = metrics_from_ranks(all_ranks, cfg.ks)
    result.update(
        protocol=cfg.protocol, mask_history=bool(cfg.mask_history), part=part, n_users=int(n_users)
    )
    logger.info(
        "evaluated %s on %d users (%s) in %.2fs: %s",
        part, n_users, protocol_name(cfg), time.perf_counter() - started,
        ", ".join(f"{k}={result[k]:.4f}" for k in result if "@" in k),
    )
    if return_ranks:
        result["ranks"] = all_ranks
    return result
