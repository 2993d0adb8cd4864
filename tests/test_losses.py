"""The chunked full-softmax cross-entropy equals F.cross_entropy, value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rasr_lib.losses import chunk_rows, full_softmax_cross_entropy


def reference(hidden, table, target, excluded, bias=None):
    """F.cross_entropy over hidden @ table.T (+ bias) with the excluded columns at -inf."""
    logits = hidden @ table.T if bias is None else hidden @ table.T + bias
    logits[:, list(excluded)] = -torch.inf
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
@pytest.mark.parametrize("excluded", [(0,), (0, 3), ()])
def test_value_and_gradients_equal_cross_entropy(rows, excluded):
    gen = torch.Generator().manual_seed(rows)
    n, v, d = 50, 37, 8
    hidden = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    table = torch.randn(v, d, generator=gen, dtype=torch.float64, requires_grad=True)
    allowed = torch.tensor([c for c in range(v) if c not in excluded])
    target = allowed[torch.randint(len(allowed), (n,), generator=gen)]
    ours = full_softmax_cross_entropy(hidden, table, target, excluded, rows=rows)
    grads = torch.autograd.grad(3.0 * ours, (hidden, table))
    ref = reference(hidden, table, target, excluded)
    ref_grads = torch.autograd.grad(3.0 * ref, (hidden, table))
    assert torch.allclose(ours, ref, atol=1e-12, rtol=0)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    # a wrong target changes the loss: the target column is really read
    assert not torch.allclose(full_softmax_cross_entropy(hidden, table, allowed[(target * 0)], excluded), ours)


def test_a_bias_is_added_and_gets_its_gradient():
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(30, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    table = torch.randn(11, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 11, (30,), generator=gen)
    ours = full_softmax_cross_entropy(hidden, table, target, rows=7, bias=bias)
    ref = reference(hidden, table, target, (0,), bias)
    assert torch.allclose(ours, ref, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad(ours, (hidden, table, bias)), torch.autograd.grad(ref, (hidden, table, bias))):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert not torch.allclose(full_softmax_cross_entropy(hidden, table, target, rows=7), ours)  # bias is used
    assert torch.autograd.gradcheck(
        lambda h, t, b: full_softmax_cross_entropy(h, t, target, rows=4, bias=b), (hidden, table, bias))


def test_gradcheck_and_empty_batch():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    table = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 2, 3, 8, 8, 5])
    assert torch.autograd.gradcheck(lambda h, t: full_softmax_cross_entropy(h, t, target, (0,), rows=4),
                                    (hidden, table))
    empty = full_softmax_cross_entropy(hidden[:0], table, target[:0])
    empty.backward()
    assert empty.item() == 0.0 and table.grad.abs().sum() == 0


def test_chunks_fit_the_budget():
    assert chunk_rows(12_103, torch.device("cpu")) == 247
    assert chunk_rows(10**9, torch.device("cpu")) == 1
    assert chunk_rows(12_103, torch.device("cuda")) > 4000


def test_frozen_inputs_get_no_gradient_and_second_derivatives_are_refused():
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(9, 4, generator=gen, requires_grad=True)
    table = torch.randn(6, 4, generator=gen)  # frozen
    target = torch.randint(1, 6, (9,), generator=gen)
    loss = full_softmax_cross_entropy(hidden, table, target, rows=4)
    (grad,) = torch.autograd.grad(loss, hidden, create_graph=True)
    assert torch.allclose(grad, torch.autograd.grad(reference(hidden, table, target, (0,)), hidden)[0], atol=1e-6)
    with pytest.raises(RuntimeError):
        grad.sum().backward()
