"""Seconds per training epoch of every backbone on one dataset, in one table (issue #5).

Usage: ``python benchmarks/bench_models.py [--dataset beauty] [--device auto] [--batches 30]
[--models sasrec gru4rec ...] [--threads N] [--out results/beauty/bench-models-cpu.json]``.
Each model (its MODEL_DEFAULTS recipe) trains ``--batches`` steps on the real training rows
after two warm-up steps. Batches are length-bucketed (1 to 50 items wide) and a step's time
grows with its width, so seconds per epoch = timed seconds per unit of width x the summed
width of one epoch's batches (timing whole epochs of every model would take hours on this
CPU). One full-ranking validation pass is
timed too. A pre-training stage (S3-Rec's ``prepare``) is timed the same way, over its own
batches (every prefix of every training sequence), as ``pretrain_epoch_s``. Each model runs in its
own process, so its peak memory is its own: the process's peak resident set on the CPU, or
torch's peak allocation on a GPU. Prints a JSON line per model and a table with each model's
ratio to SASRec; ``--out`` also writes the rows as JSON (SAGERec's Table 6 reads
``results/<dataset>/bench-models-*.json``). Not a test: it never asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import torch

from rasr_lib.config import MODEL_DEFAULTS, load_config
from rasr_lib.data import load_dataset
from rasr_lib.data.split import leave_one_out
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.runtime import get_device, git_commit, set_seed
from rasr_lib.experiments.train_run import describe_device as describe_machine
from rasr_lib.training import iterate_train_batches

WARMUP_STEPS = 2


def timed_steps(loss_of, stream, optimizer, device: torch.device, batches: int, width_of) -> list[tuple[float, int]]:
    """(seconds, batch width) of each optimiser step on ``loss_of(batch)`` over ``batches`` batches, after warm-up."""
    timed = []
    for step, batch in enumerate(stream):
        if step >= batches + WARMUP_STEPS:
            break
        tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_of(batch).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= WARMUP_STEPS:
            timed.append((time.perf_counter() - tic, width_of(batch)))
    return timed


def epoch_seconds(timed: list[tuple[float, int]], epoch_width: int) -> float:
    """An epoch's seconds from timed (seconds, width) steps: seconds per unit of width x the epoch's summed width.

    Batches are length-bucketed, 1 to ``max_len`` items wide, and a step's time grows with the
    width, so the mean of a few random steps says little about an epoch; their time per unit of
    width does.
    """
    return sum(t for t, _ in timed) / max(sum(w for _, w in timed), 1) * epoch_width


def time_pretraining(model, cfg, split, device: torch.device, generator: torch.Generator, batches: int) -> dict:
    """Seconds per pre-training step and per pre-training epoch (every prefix of every sequence) of an S3-Rec ``model``."""
    from rasr_lib.models.s3rec import every_prefix, pretraining_batches, training_sequences

    seqs, lengths = training_sequences(split, model.max_len)
    rows, ends = every_prefix(lengths)
    long_items = seqs[seqs > 0]
    size = cfg.s3rec.pretrain_batch_size
    epoch_width = sum(seq.shape[1] for seq, _ in pretraining_batches(seqs, rows, ends, size, generator))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.s3rec.pretrain_lr)
    timed = timed_steps(
        lambda batch: model.pretrain_loss(model.pretrain_losses(batch[0].to(device), batch[1].to(device),
                                                                long_items, generator)),
        pretraining_batches(seqs, rows, ends, size, generator), optimizer, device, batches,
        lambda batch: batch[0].shape[1])
    steps = math.ceil(len(ends) / size)
    seconds = epoch_seconds(timed, epoch_width)
    return {"pretrain_steps_per_epoch": steps, "pretrain_step_s": round(seconds / steps, 4),
            "pretrain_epoch_s": round(seconds, 1), "pretrain_epochs": cfg.s3rec.pretrain_epochs}


def time_model(name: str, dataset, split, device: torch.device, batches: int) -> dict:
    """Mean training-step seconds, extrapolated epoch seconds and one validation pass for ``name``."""
    cfg = load_config(dataset.name, "full", {"device": str(device)}, model=name)
    generator = set_seed(0)
    graph = None
    if name == "sagerec" or cfg.model.semantic_graph:
        from rasr_lib.sagerec.graph import graph_for

        graph = graph_for(cfg, dataset)
    model = build_model(cfg, dataset.n_items, graph=graph, split=split).to(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    n_rows = int((split.train_len > 0).sum())
    steps_per_epoch = math.ceil(n_rows / cfg.train.batch_size)
    model.train()
    pretraining = time_pretraining(model, cfg, split, device, generator, batches) if hasattr(
        model, "pretrain_losses") else {}
    epoch_width = sum(batch["item_seq"].shape[1] for batch in iterate_train_batches(
        split, cfg.train.batch_size, torch.Generator().manual_seed(0), False, torch.device("cpu")))
    stream = iterate_train_batches(split, cfg.train.batch_size, generator, model.loss == "bce", device)
    timed = timed_steps(model.calculate_loss, stream, optimizer, device, batches,
                        lambda batch: batch["item_seq"].shape[1])
    step_s = epoch_seconds(timed, epoch_width) / steps_per_epoch
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    evaluate(model, split, "valid", cfg.eval, device=device)
    return {"model": name, "batch_size": cfg.train.batch_size, "steps_per_epoch": steps_per_epoch,
            "step_s": round(step_s, 4), "epoch_s": round(step_s * steps_per_epoch, 1),
            "valid_pass_s": round(time.perf_counter() - tic, 1),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "peak_memory_mib": round(peak_mib, 1), "rss_before_training_mib": round(rss_before, 1),
            "graph": graph.stats() if graph is not None else None, **pretraining}


def _child(name: str, dataset_name: str, device: str, batches: int, threads: int, queue) -> None:
    """Process body: load the data, time one model, put its row (or its error) on ``queue``."""
    try:
        if threads:
            torch.set_num_threads(threads)
        dataset = load_dataset(dataset_name)
        split = leave_one_out(dataset, 50)
        queue.put(time_model(name, dataset, split, get_device(device), batches))
    except Exception as err:  # one broken model must not hide the others' timings
        queue.put({"model": name, "error": f"{type(err).__name__}: {err}"})


def main() -> None:
    """Time every requested model and print one JSON line each, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=30, help="timed training steps per model")
    parser.add_argument("--models", nargs="*", default=sorted(MODEL_DEFAULTS), choices=sorted(MODEL_DEFAULTS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--out", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    context = multiprocessing.get_context("spawn")  # a fresh process per model: its own peak memory
    rows, commit = [], git_commit()  # the code being timed
    for name in args.models:
        queue = context.Queue()
        proc = context.Process(target=_child, args=(name, args.dataset, str(device), args.batches,
                                                    args.threads, queue))
        proc.start()
        row = queue.get()
        proc.join()
        row.update(device=str(device), threads=args.threads or torch.get_num_threads(), dataset=args.dataset,
                   machine=describe_machine(device))
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.out:  # after every model, so a run cut short keeps the rows it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"benchmark": "bench_models", "command": " ".join(sys.argv),
                                                  "git_commit": commit, "rows": rows}, indent=1) + "\n")
    base = next((r["epoch_s"] for r in rows if r["model"] == "sasrec" and "epoch_s" in r), None)
    print(f"\n{'model':<12}{'s/epoch':>10}{'x SASRec':>10}{'valid s':>9}{'params':>11}{'peak MiB':>10}"
          f"{'pre-train s/epoch':>19}")
    for r in rows:
        if "epoch_s" not in r:
            print(f"{r['model']:<12}  {r['error']}")
            continue
        ratio = f"{r['epoch_s'] / base:.2f}" if base else "-"
        print(f"{r['model']:<12}{r['epoch_s']:>10.1f}{ratio:>10}{r['valid_pass_s']:>9.1f}{r['n_parameters']:>11,}"
              f"{r['peak_memory_mib']:>10.0f}{r.get('pretrain_epoch_s', ''):>19}")


if __name__ == "__main__":
    main()
