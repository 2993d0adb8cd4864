"""Config layering, overrides, hashing."""

import re

import pytest

from rasr_lib.config import config_hash, load_config


def test_layering_order():
    cfg = load_config("Toys_and_Games", "quick", {"train.epochs": 7}, model="gru4rec")
    assert cfg.data.dataset == "toys"
    assert cfg.model.inner_dim == 256  # GRU4Rec default from DR4SR
    assert cfg.train.weight_decay == 1e-4
    assert cfg.data.max_users == 1000  # quick profile
    assert cfg.train.epochs == 7  # explicit override wins over the profile
    full = load_config("beauty", "full")
    assert (full.data.max_users, full.train.epochs, full.train.patience) == (0, 200, 20)
    assert (full.model.inner_dim, full.model.dropout, full.model.layer_norm) == (128, 0.5, "post")


def test_string_overrides_are_typed():
    cfg = load_config("beauty", "full", {"train.lr": "0.01", "eval.mask_history": "false", "eval.ks": "5,10"})
    assert cfg.train.lr == 0.01
    assert cfg.eval.mask_history is False
    assert cfg.eval.ks == (5, 10)


@pytest.mark.parametrize("bad", [{"train.nope": 1}, {"nosection.x": 1}, {"train.epochs": "many"}])
def test_bad_overrides_are_clear_errors(bad):
    with pytest.raises(ValueError, match="config key|config section"):
        load_config("beauty", "full", bad)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_config("amazon")
    with pytest.raises(ValueError, match="unknown profile"):
        load_config("beauty", "huge")
    with pytest.raises(ValueError, match="unknown model"):
        load_config("beauty", model="bert")


def test_hash_ignores_device_but_not_settings():
    a = load_config("beauty", "full", {"device": "cpu"})
    b = load_config("beauty", "full", {"device": "cuda"})
    c = load_config("beauty", "full", {"seed": 1})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 10


@pytest.mark.parametrize("override, message", [
    ({"train.epochs": -1}, "train.epochs = -1"),
    ({"train.lr": 0.0, "regen.window": 0}, "train.lr = 0.0 (must be > 0); regen.window = 0"),
    ({"regen.generator_epochs": -5}, "regen.generator_epochs = -5"),
    ({"eval.ks": (10, 0)}, "eval.ks"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_out_of_range_settings_are_named(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config("beauty", "quick", override)
    assert load_config("beauty", "quick", {"device": "cuda:1", "regen.generator_epochs": 0}).device == "cuda:1"


def test_the_cli_turns_a_bad_setting_into_one_line(capsys):
    from rasr_lib.cli import main

    assert main(["train", "--profile", "quick", "--set", "train.epochs=0"]) == 2
    assert capsys.readouterr().err.strip() == "error: out of range: train.epochs = 0 (must be > 0)"
