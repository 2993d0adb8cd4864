"""UniformDropout is nn.Dropout's random function, and every model uses it."""

from __future__ import annotations

import torch
from torch import nn

from rasr_lib.config import load_config
from rasr_lib.dropout import UniformDropout, use_uniform_dropout
from rasr_lib.models import build_model


def test_it_keeps_one_minus_p_scaled_and_passes_gradients_through_the_mask():
    layer = UniformDropout(0.3).train()
    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d y / d x is the scaled mask
    torch.manual_seed(0)
    assert torch.equal(layer(x), y)  # one seed, one mask
    assert layer.eval()(x) is x and UniformDropout(0.0).train()(x) is x
    assert UniformDropout(1.0).train()(x).abs().sum() == 0


def test_every_dropout_of_a_model_is_swapped_and_its_state_dict_is_unchanged():
    cfg = load_config("beauty", "quick", model="sasrec")
    model = build_model(cfg, 50)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert sum(isinstance(m, UniformDropout) for m in model.modules()) >= 3
    stock = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.5)))
    keys = list(stock.state_dict())
    swapped = use_uniform_dropout(stock)
    assert swapped is stock and list(stock.state_dict()) == keys
    assert [m.p for m in stock.modules() if isinstance(m, UniformDropout)] == [0.2, 0.5]
