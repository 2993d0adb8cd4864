"""One model-agnostic training loop: batches, negatives, early stopping, resumable checkpoints."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rasr_lib import runtime
from rasr_lib.config import EvalConfig, TrainConfig
from rasr_lib.data.split import SplitData
from rasr_lib.evaluation import evaluate
from rasr_lib.models.base import SequentialRecommender

log = logging.getLogger(__name__)

BUCKET_POOL = 32  # batches per length-sorting pool (1 = plain shuffling)


@dataclass
class TrainResult:
    """What :func:`fit` returns: the per-epoch history and the best validation point."""

    history: list[dict] = field(default_factory=list)  # one dict per epoch: loss, valid metrics, seconds
    best_epoch: int = 0  # 1-based epoch of the best validation metric (0 = never validated)
    best_valid: dict = field(default_factory=dict)  # validation metrics at best_epoch
    stopped_early: bool = False  # True when patience ran out before cfg.epochs
    train_seconds: float = 0.0  # wall time spent in training epochs (validation excluded)
    out_of_time: bool = False  # True when fit stopped at its deadline (the run can be resumed)
    elapsed_seconds: float = 0.0  # wall time of every epoch so far (validation included), all segments
    resumed_seconds: float = 0.0  # elapsed_seconds of the earlier segments when this call resumed


def iterate_train_batches(
    split: SplitData,
    batch_size: int,
    generator: torch.Generator,
    need_negatives: bool,
    device: torch.device,
    exclude_history: bool = False,
):
    """Yield shuffled training batches of right-padded rows, trimmed to the longest row in the batch.

    Each batch is a dict with ``item_seq``/``target``/``negative`` LongTensor[B, L'] and
    ``seq_len``/``user`` LongTensor[B] (``user`` = -1 on synthetic rows); negatives are uniform over ``1..n_items`` (DR4SR: unfiltered).
    ``exclude_history`` redraws negatives that occur in the row's own inputs or targets
    (SAGERec §4.5, pmixer's SASRec: items the user has not interacted with).
    """
    inputs = torch.from_numpy(split.train_input)
    targets = torch.from_numpy(split.train_target)
    lengths = torch.from_numpy(split.train_len)
    users = torch.from_numpy(split.train_user)
    keep = torch.nonzero(lengths > 0).squeeze(1)  # rows with at least one training target
    order = keep[torch.randperm(len(keep), generator=generator)]
    # Length bucketing: sort rows by length inside pools of `BUCKET_POOL` batches, so each batch
    # is trimmed to a similar width; batch order is shuffled again, keeping the epoch random.
    pool = batch_size * BUCKET_POOL
    chunks = [order[i : i + pool] for i in range(0, len(order), pool)]
    order = torch.cat([c[torch.argsort(lengths[c], stable=True)] for c in chunks]) if chunks else order
    batches = list(torch.split(order, batch_size))
    for index in torch.randperm(len(batches), generator=generator).tolist():
        rows = batches[index]
        seq_len = lengths[rows]
        width = int(seq_len.max())
        batch = {
            "item_seq": inputs[rows, :width],
            "target": targets[rows, :width],
            "seq_len": seq_len,
            "user": users[rows],
        }
        if need_negatives:
            batch["negative"] = torch.randint(
                1, split.n_items + 1, (len(rows), width), generator=generator
            )
            if exclude_history:
                batch["negative"] = _redraw_seen(
                    batch["negative"], torch.cat([batch["item_seq"], batch["target"]], 1),
                    split.n_items, generator,
                )
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _redraw_seen(
    negative: torch.Tensor, seen: torch.Tensor, n_items: int, generator: torch.Generator,
    max_rounds: int = 50,
) -> torch.Tensor:
    """Redraw negatives LongTensor[B, L] that occur in their row of ``seen`` LongTensor[B, S].

    Rejection sampling, vectorised per round; after ``max_rounds`` (reached only when a row has
    seen almost the whole catalogue) the remaining draws are kept as they are.
    """
    negative = negative.clone()
    for _ in range(max_rounds):
        bad = (negative.unsqueeze(2) == seen.unsqueeze(1)).any(2)  # [B, L]
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        negative[bad] = torch.randint(1, n_items + 1, (n_bad,), generator=generator)
    return negative


def validation_loss(
    model: SequentialRecommender, split: SplitData, batch_size: int, device: torch.device,
    exclude_history: bool = False,
) -> float:
    """Mean loss of predicting each user's validation target from its validation history.

    The model's own ``calculate_loss`` on the last position only, in eval mode (no dropout);
    BCE negatives come from a generator seeded 0, so the value changes only with the model.
    """
    inputs, lengths, targets = split.eval_arrays("valid")
    users = np.flatnonzero(lengths > 0)
    generator = torch.Generator().manual_seed(0)
    was_training, total = model.training, 0.0
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, len(users), batch_size):
                rows = users[lo : lo + batch_size]
                seq_len = torch.from_numpy(lengths[rows])
                width = int(seq_len.max())
                item_seq = torch.from_numpy(np.ascontiguousarray(inputs[rows, :width]))
                target = torch.zeros_like(item_seq)
                target[torch.arange(len(rows)), seq_len - 1] = torch.from_numpy(targets[rows])
                batch = {"item_seq": item_seq, "target": target, "seq_len": seq_len}
                if model.loss == "bce":
                    negative = torch.randint(1, split.n_items + 1, item_seq.shape, generator=generator)
                    if exclude_history:
                        negative = _redraw_seen(negative, torch.cat([item_seq, target], 1), split.n_items,
                                                generator)
                    batch["negative"] = negative
                batch = {k: v.to(device) for k, v in batch.items()}
                total += float(model.calculate_loss(batch)) * len(rows)
    finally:
        model.train(was_training)
    return total / max(len(users), 1)


def fit(
    model: SequentialRecommender,
    split: SplitData,
    cfg: TrainConfig,
    eval_cfg: EvalConfig,
    device: torch.device,
    generator: torch.Generator,
    checkpoint: Path | None = None,
    progress: bool = True,
    stop_now: bool = False,
    deadline: float | None = None,
) -> TrainResult:
    """Train ``model`` on ``split`` with Adam and early stopping on ``cfg.valid_metric`` (validation).

    With ``checkpoint`` set, the full state (model, optimiser, generator, history, best weights)
    is written after every epoch and a later call resumes from it. The best weights are loaded
    into ``model`` before returning. ``stop_now`` trains no further epoch: it restores the best
    weights of an interrupted run's checkpoint (to report a run cut short by a time budget).
    ``deadline`` (a ``time.time()`` value) stops after the epoch whose duration, repeated, would
    pass it; the result says ``out_of_time`` and the checkpoint resumes where it stopped.

    Opt-in (SAGERec §4.5/§5.3; off by default): ``cfg.emb_l2`` adds lambda * ||item table||^2
    to the loss, ``cfg.lr_decay_patience`` multiplies the lr by ``cfg.lr_decay_factor`` after
    that many validations without a lower :func:`validation_loss` (``cfg.lr_decay_on="loss"``)
    or a better ``cfg.valid_metric`` (``"metric"``), ``cfg.lr_step_every`` multiplies it by
    ``cfg.lr_step_factor`` after every that many epochs (GCE-GNN's code), and
    ``cfg.neg_exclude_history`` filters negatives.
    """
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    best_metric, start_epoch, bad_epochs = -np.inf, 1, 0
    plateau = 0  # validations without improvement since the last lr decay (lr_decay_patience)
    best_loss = np.inf  # lowest validation loss so far (lr_decay_on = "loss")
    if checkpoint is not None and Path(checkpoint).exists():
        state = runtime.load_training_state(checkpoint, model, optimizer, generator, device)
        result = state["result"]
        result.out_of_time = False
        # Checkpoints written before elapsed_seconds existed know only their training time.
        result.resumed_seconds = result.elapsed_seconds or result.train_seconds
        result.elapsed_seconds = result.resumed_seconds
        best_state, best_metric = state["best_state"], state["best_metric"]
        start_epoch, bad_epochs = state["epoch"] + 1, state["bad_epochs"]
        plateau, best_loss = state.get("plateau", 0), state.get("best_loss", np.inf)
        log.info("resumed from %s at epoch %d", checkpoint, start_epoch)
    done = stop_now or start_epoch > cfg.epochs or bad_epochs >= cfg.patience
    bar = tqdm(
        range(start_epoch, cfg.epochs + 1), desc=f"train {type(model).__name__}",
        disable=not progress or done, leave=False,
    )
    for epoch in bar:
        if done:
            break
        model.train()
        t0, total, n_batches = time.perf_counter(), 0.0, 0
        batches = iterate_train_batches(split, cfg.batch_size, generator, model.loss == "bce", device,
                                        exclude_history=cfg.neg_exclude_history)
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = model.calculate_loss(batch)
            if cfg.emb_l2 > 0:
                loss = loss + cfg.emb_l2 * model.item_embedding.weight.pow(2).sum()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n_batches += 1
            if device.type == "cpu" and n_batches % runtime.RELEASE_MEMORY_EVERY == 0:
                runtime.release_freed_memory()
        seconds = time.perf_counter() - t0
        result.train_seconds += seconds
        entry = {"epoch": epoch, "loss": total / max(n_batches, 1), "train_seconds": seconds}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = evaluate(model, split, "valid", eval_cfg, device=device)
            entry.update({f"valid_{k}": v for k, v in valid.items() if "@" in k})
            metric = valid[cfg.valid_metric]
            if metric > best_metric:
                best_metric, bad_epochs = metric, 0
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch = epoch
                result.best_valid = {k: v for k, v in valid.items() if "@" in k}
            else:
                bad_epochs += 1
            if cfg.lr_decay_patience > 0:  # plateau decay on the validation loss or metric
                if cfg.lr_decay_on == "loss":
                    entry["valid_loss"] = validation_loss(model, split, eval_cfg.batch_size, device,
                                                          cfg.neg_exclude_history)
                    improved = entry["valid_loss"] < best_loss
                    best_loss = min(best_loss, entry["valid_loss"])
                else:
                    improved = bad_epochs == 0
                plateau = 0 if improved else plateau + 1
                if plateau >= cfg.lr_decay_patience:
                    plateau = 0
                    for group in optimizer.param_groups:
                        group["lr"] *= cfg.lr_decay_factor
                    log.info("epoch %d: no better validation %s for %d validations, lr -> %.3g", epoch,
                             cfg.lr_decay_on, cfg.lr_decay_patience, optimizer.param_groups[0]["lr"])
                entry["lr"] = optimizer.param_groups[0]["lr"]
        if cfg.lr_step_every > 0 and epoch % cfg.lr_step_every == 0:  # fixed step decay (GCE-GNN's StepLR)
            for group in optimizer.param_groups:
                group["lr"] *= cfg.lr_step_factor
        if cfg.lr_step_every > 0:
            entry["lr"] = optimizer.param_groups[0]["lr"]  # the rate the next epoch trains with
        result.history.append(entry)
        result.elapsed_seconds += time.perf_counter() - t0
        bar.set_postfix(loss=f"{entry['loss']:.4f}", valid=f"{best_metric:.4f}")
        log.info("epoch %d loss %.4f best valid %s %.4f", epoch, entry["loss"], cfg.valid_metric, best_metric)
        done = bad_epochs >= cfg.patience
        result.stopped_early = done and epoch < cfg.epochs
        if checkpoint is not None:
            runtime.save_training_state(
                Path(checkpoint), model, optimizer, generator, result=result, best_state=best_state,
                best_metric=best_metric, epoch=epoch, bad_epochs=bad_epochs, plateau=plateau,
                best_loss=best_loss,
            )
        # One more epoch of the same length (training and validation) would end past the deadline.
        if not done and deadline is not None and time.time() + (time.perf_counter() - t0) > deadline:
            result.out_of_time = True
            log.info("epoch %d: stopping before the deadline; rerun the same command to resume", epoch)
            break
    bar.close()
    model.load_state_dict(best_state)
    return result
