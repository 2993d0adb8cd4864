"""The same code on a CUDA device: every backbone ranks as on the CPU and trains there (issue 5).

Marked ``gpu``: deselected by default and skipped without CUDA. On the lent GPU machine,
``bash scripts/gpu_session.sh`` runs these, then the per-model benchmark and the full-profile
RaSR regeneration on the GPU. :func:`check_device` holds the checks, so that they can be
exercised on the CPU too (``test_the_device_check_runs_on_the_cpu``, not marked ``gpu``).
"""

from __future__ import annotations

import math

import pytest
import torch

from rasr_lib.config import MODEL_DEFAULTS, load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.evaluation import evaluate
from rasr_lib.models import build_model
from rasr_lib.runtime import get_device, set_seed
from rasr_lib.sagerec.graph import random_graph
from rasr_lib.training import iterate_train_batches

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TRAIN_STEPS = 8
TRAIN_BATCH = 32  # 300 users at 32 rows a batch: 10 batches, enough for TRAIN_STEPS


@pytest.fixture(scope="module")
def split():
    """The first 300 Beauty users, leave-one-out."""
    return leave_one_out(load_dataset("beauty", max_users=300), max_len=50)


def _build(name: str, split, semantic_graph: bool = False):
    """The quick-profile ``name`` from seed 0 on the CPU (the same weights for every device)."""
    cfg = load_config("beauty", "quick", {"seed": 0, "model.semantic_graph": semantic_graph}, model=name)
    graph = random_graph(split.n_items, 4 * split.n_items, seed=0) if name == "sagerec" or semantic_graph else None
    set_seed(0)
    return cfg, build_model(cfg, split.n_items, graph=graph, split=split)


def check_device(name: str, split, device: torch.device, semantic_graph: bool = False) -> dict:
    """Rank the validation targets with one set of weights on the CPU and on ``device``, then train on ``device``.

    Returns both metric dicts and the training losses; asserts nothing (the tests do).
    """
    cfg, model = _build(name, split, semantic_graph)
    model.eval()
    on_cpu = evaluate(model, split, "valid", cfg.eval, device="cpu")
    model.to(device)
    on_device = evaluate(model, split, "valid", cfg.eval, device=device)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    batches = iterate_train_batches(split, TRAIN_BATCH, generator, model.loss == "bce", device)
    for _, batch in zip(range(TRAIN_STEPS), batches):
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    moved = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    return {"cpu": on_cpu, "device": on_device, "losses": losses, "moved": moved, "devices": devices}


def _assert_same_ranking(got: dict, n_users: int) -> None:
    """Metrics on the device equal the CPU's up to one user's hit (float ties may break differently)."""
    for key, value in got["cpu"].items():
        if "@" in key:
            assert got["device"][key] == pytest.approx(value, abs=1.0 / n_users + 1e-9), key


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("name", sorted(MODEL_DEFAULTS))
def test_every_model_ranks_as_on_the_cpu_and_trains_on_cuda(split, name):
    got = check_device(name, split, torch.device("cuda"))
    _assert_same_ranking(got, split.n_users)
    assert all(math.isfinite(x) for x in got["losses"]) and len(got["losses"]) == TRAIN_STEPS
    assert got["moved"] and got["devices"] == {"cuda"}


@pytest.mark.gpu
@requires_cuda
def test_a_backbone_with_the_semantic_graph_module_on_cuda(split):
    got = check_device("gru4rec", split, torch.device("cuda"), semantic_graph=True)
    _assert_same_ranking(got, split.n_users)
    assert got["moved"] and got["devices"] == {"cuda"}


@pytest.mark.gpu
@requires_cuda
def test_auto_picks_cuda():
    assert get_device("auto").type == "cuda"


@pytest.mark.gpu
@requires_cuda
def test_the_chunked_softmax_loss_on_cuda_equals_the_cpu():
    from rasr_lib.losses import full_softmax_cross_entropy

    gen = torch.Generator().manual_seed(0)
    hidden, table = torch.randn(3000, 64, generator=gen), 0.1 * torch.randn(12104, 64, generator=gen)
    target = torch.randint(1, 12104, (3000,), generator=gen)
    results = []
    for device in ("cpu", "cuda"):
        h = hidden.to(device).requires_grad_()
        t = table.to(device).requires_grad_()
        loss = full_softmax_cross_entropy(h, t, target.to(device))
        loss.backward()
        results.append([x.detach().cpu() for x in (loss, h.grad, t.grad)])
    for on_cpu, on_cuda in zip(*results):
        assert torch.allclose(on_cpu, on_cuda, rtol=1e-4, atol=1e-6)


def test_the_device_check_runs_on_the_cpu(split):
    """The body of the CUDA tests, on the CPU: same weights give the same metrics; training moves them."""
    got = check_device("sasrec", split, torch.device("cpu"))
    assert got["device"] == got["cpu"] and got["moved"] and got["devices"] == {"cpu"}
    assert all(math.isfinite(x) for x in got["losses"]) and len(got["losses"]) == TRAIN_STEPS
