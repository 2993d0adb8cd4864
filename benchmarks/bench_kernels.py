"""Speed of two hot kernels against the stock ones: the full-softmax loss and dropout.

Usage: ``python benchmarks/bench_kernels.py [--device auto] [--repeats 5] [--out FILE]``.
Loss: F.cross_entropy over [N, V] logits vs :func:`rasr_lib.losses.full_softmax_cross_entropy`,
on the shapes of a Beauty batch (V = 12,104 tokens of the regenerator; N = 2,000 target positions,
about one batch of 256 sequences) and of an ML-1M batch (V = 3,417, N = 12,800). Dropout:
``nn.Dropout(0.5)`` vs :class:`rasr_lib.dropout.UniformDropout` on a feed-forward activation
[256, 50, 128] of SASRec. Prints one JSON line per case with the seconds of forward + backward and
their ratio; ``--out`` also writes them as JSON (chapter 03 reads
``results/beauty/bench-kernels-cpu.json``). Not a test: it never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from torch import nn

from rasr_lib.dropout import UniformDropout
from rasr_lib.losses import full_softmax_cross_entropy
from rasr_lib.runtime import get_device, git_commit, write_json

SHAPES = {"beauty": (2_000, 12_104, 64), "ml-1m": (12_800, 3_417, 64)}


def dense_cross_entropy(hidden: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The plain way: the whole logit matrix, PAD at -inf, then F.cross_entropy."""
    logits = hidden @ table.T
    logits[:, 0] = -torch.inf
    return F.cross_entropy(logits, target)


def mean_seconds(loss_fn, inputs: tuple[torch.Tensor, ...], repeats: int) -> float:
    """Mean seconds of ``loss_fn(*inputs).backward()`` (after one warm-up call)."""
    leaves = [x for x in inputs if x.requires_grad]

    def once():
        loss_fn(*inputs).backward()
        for leaf in leaves:
            leaf.grad = None

    once()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(repeats):
        once()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - tic) / repeats


def main() -> None:
    """Time both losses on each shape and both dropouts; print one JSON object per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    device = get_device(args.device)
    gen = torch.Generator().manual_seed(0)
    for name, (n, v, d) in SHAPES.items():
        hidden = torch.randn(n, d, generator=gen).to(device).requires_grad_()
        table = (0.1 * torch.randn(v, d, generator=gen)).to(device).requires_grad_()
        target = torch.randint(1, v, (n,), generator=gen).to(device)
        dense = mean_seconds(dense_cross_entropy, (hidden, table, target), args.repeats)
        chunked = mean_seconds(full_softmax_cross_entropy, (hidden, table, target), args.repeats)
        rows.append({"kernel": "full-softmax loss", "case": f"{name}: N {n}, V {v}, d {d}",
                     "stock": "F.cross_entropy", "ours": "full_softmax_cross_entropy",
                     "stock_s": round(dense, 5), "ours_s": round(chunked, 5), "speedup": round(dense / chunked, 2)})
        print(json.dumps(rows[-1]))
    x = torch.randn(256, 50, 128, generator=gen).to(device).requires_grad_()
    stock = mean_seconds(lambda x: nn.Dropout(0.5).train()(x).sum(), (x,), 10 * args.repeats)
    uniform = mean_seconds(lambda x: UniformDropout(0.5).train()(x).sum(), (x,), 10 * args.repeats)
    rows.append({"kernel": "dropout 0.5", "case": "SASRec FFN activation [256, 50, 128]",
                 "stock": "nn.Dropout", "ours": "UniformDropout",
                 "stock_s": round(stock, 5), "ours_s": round(uniform, 5), "speedup": round(stock / uniform, 2)})
    print(json.dumps(rows[-1]))
    if args.out:
        write_json({"benchmark": "bench_kernels", "command": " ".join(sys.argv), "git_commit": git_commit(),
                    "device": str(device), "threads": torch.get_num_threads(), "rows": rows}, Path(args.out))


if __name__ == "__main__":
    main()
