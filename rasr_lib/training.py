"""One model-agnostic training loop: batches, negatives, early stopping, resumable checkpoints."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

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


def iterate_train_batches(
    split: SplitData,
    batch_size: int,
    generator: torch.Generator,
    need_negatives: bool,
    device: torch.device,
):
    """Yield shuffled training batches of right-padded rows, trimmed to the longest row in the batch.

    Each batch is a dict with ``item_seq``/``target``/``negative`` LongTensor[B, L'] and
    ``seq_len`` LongTensor[B]; negatives are uniform over ``1..n_items`` (DR4SR: unfiltered).
    """
    inputs = torch.from_numpy(split.train_input)
    targets = torch.from_numpy(split.train_target)
    lengths = torch.from_numpy(split.train_len)
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
        }
        if need_negatives:
            batch["negative"] = torch.randint(
                1, split.n_items + 1, (len(rows), width), generator=generator
            )
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file then rename, so a crash never leaves half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
) -> TrainResult:
    """Train ``model`` on ``split`` with Adam and early stopping on ``cfg.valid_metric`` (validation).

    With ``checkpoint`` set, the full state (model, optimiser, generator, history, best weights)
    is written after every epoch and a later call resumes from it. The best weights are loaded
    into ``model`` before returning. ``stop_now`` trains no further epoch: it restores the best
    weights of an interrupted run's checkpoint (to report a run cut short by a time budget).
    """
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    best_metric, start_epoch, bad_epochs = -np.inf, 1, 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # dropout draws continue exactly where they stopped
        result = state["result"]
        best_state, best_metric = state["best_state"], state["best_metric"]
        start_epoch, bad_epochs = state["epoch"] + 1, state["bad_epochs"]
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
        for batch in iterate_train_batches(split, cfg.batch_size, generator, model.loss == "bce", device):
            optimizer.zero_grad(set_to_none=True)
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n_batches += 1
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
        result.history.append(entry)
        bar.set_postfix(loss=f"{entry['loss']:.4f}", valid=f"{best_metric:.4f}")
        log.info("epoch %d loss %.4f best valid %s %.4f", epoch, entry["loss"], cfg.valid_metric, best_metric)
        done = bad_epochs >= cfg.patience
        result.stopped_early = done and epoch < cfg.epochs
        if checkpoint is not None:
            _save_atomic(
                {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "result": result, "best_state": best_state,
                    "best_metric": best_metric, "epoch": epoch, "bad_epochs": bad_epochs,
                },
                Path(checkpoint),
            )
    bar.close()
    model.load_state_dict(best_state)
    return result
