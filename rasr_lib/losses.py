"""Full-softmax cross-entropy over an item table, computed in row chunks.

``F.cross_entropy(hidden @ table.T, target)`` writes the whole [N, V] logit matrix, reads it back
for the log-softmax, and in the backward pass writes a dense [N, V] gradient for the NLL, another
for the log-softmax and the products with it. With N ~ 2,000 target positions per batch and V ~
12,000 items (Beauty) these matrices are ~100 MB each, so on a CPU the step is bound by memory
traffic, not arithmetic. Here each chunk of rows (a few MB, cache-sized) is scored, reduced to its
log-sum-exp and dropped; the backward pass scores the chunk again and turns it into
softmax - one-hot in place. Same loss and gradients up to float rounding, about 25 % less time for
the output layer on one CPU thread (``benchmarks/bench_kernels.py``), and no [N, V] buffers.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Logit elements per chunk: ~12 MB of float32 on the CPU (fits a core's share of L2/L3); on a GPU
# launches cost more than memory traffic, so chunks are large there.
CPU_CHUNK_ELEMENTS = 3_000_000
GPU_CHUNK_ELEMENTS = 64_000_000


def chunk_rows(n_columns: int, device: torch.device) -> int:
    """Rows per chunk so that one chunk holds about the device's chunk budget of logits."""
    budget = GPU_CHUNK_ELEMENTS if device.type == "cuda" else CPU_CHUNK_ELEMENTS
    return max(1, budget // max(n_columns, 1))


def _scores(hidden: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None,
            excluded: tuple[int, ...]) -> torch.Tensor:
    """Logits FloatTensor[n, V] of a row chunk (plus ``bias`` [V] if given), ``excluded`` columns at -inf."""
    logits = hidden @ table.T if bias is None else torch.addmm(bias, hidden, table.T)
    if excluded:
        logits[:, list(excluded)] = -torch.inf
    return logits


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean full-softmax cross-entropy; see :func:`full_softmax_cross_entropy`."""

    @staticmethod
    def forward(ctx, hidden, table, bias, target, excluded, rows):
        lse = hidden.new_empty(hidden.size(0))
        for start in range(0, hidden.size(0), rows):
            chunk = _scores(hidden[start : start + rows], table, bias, excluded)
            lse[start : start + rows] = torch.logsumexp(chunk, 1)
        target_logit = (hidden * table[target]).sum(1)
        if bias is not None:
            target_logit += bias[target]
        ctx.save_for_backward(hidden, table, bias, target, lse)
        ctx.excluded, ctx.rows = excluded, rows
        return (lse - target_logit).mean()

    @staticmethod
    @once_differentiable  # lse is saved as a constant: no second derivatives
    def backward(ctx, grad):
        hidden, table, bias, target, lse = ctx.saved_tensors
        scale = grad / hidden.size(0)
        need_hidden, need_table, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_table = torch.zeros_like(table) if need_table else None
        grad_bias = torch.zeros_like(bias) if need_bias else None
        for start in range(0, hidden.size(0), ctx.rows):
            chunk = hidden[start : start + ctx.rows]
            probs = _scores(chunk, table, bias, ctx.excluded).sub_(lse[start : start + ctx.rows, None]).exp_()
            probs[torch.arange(chunk.size(0), device=probs.device), target[start : start + ctx.rows]] -= 1.0
            probs.mul_(scale)  # d loss / d logits of the chunk
            if grad_hidden is not None:
                grad_hidden[start : start + ctx.rows] = probs @ table
            if grad_table is not None:
                grad_table.addmm_(probs.T, chunk)
            if grad_bias is not None:
                grad_bias += probs.sum(0)
        return grad_hidden, grad_table, grad_bias, None, None, None


def full_softmax_cross_entropy(
    hidden: torch.Tensor, table: torch.Tensor, target: torch.Tensor, excluded: tuple[int, ...] = (0,),
    rows: int | None = None, bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over N of -log softmax(hidden @ table.T + bias)[target], a scalar; no [N, V] matrix is kept.

    ``hidden`` FloatTensor[N, d], ``table`` FloatTensor[V, d], ``target`` LongTensor[N] (never an
    ``excluded`` column), ``bias`` FloatTensor[V] or None; ``excluded`` columns (PAD by default)
    get probability 0, as a -inf logit would. ``rows`` sets the chunk height (default:
    :func:`chunk_rows`). Equals ``F.cross_entropy(logits with excluded columns at -inf, target)``
    and its gradients with respect to ``hidden``, ``table`` and ``bias`` up to float rounding.
    """
    if hidden.size(0) == 0:  # an empty batch: zero, still in the graph
        return (hidden.sum() + table.sum() + (0.0 if bias is None else bias.sum())) * 0.0
    rows = rows or chunk_rows(table.size(0), hidden.device)
    return _ChunkedSoftmaxCE.apply(hidden, table, bias, target, tuple(excluded), rows)
