"""scripts/gpu_carry.sh packs what a GPU regeneration needs; gpu_session.sh unpacks it the same there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from rasr_lib.config import load_config
from rasr_lib.data import load_dataset
from rasr_lib.experiments.regen_run import pretrain_config, regen_dir
from rasr_lib.experiments.train_run import run_dir
from rasr_lib.rasr.embeddings import embedding_cache_path, item_prompts
from rasr_lib.runtime import REPO_ROOT


@pytest.mark.skipif(shutil.which("gunzip") is None or shutil.which("git") is None, reason="needs gunzip and git")
def test_carried_files_unpack_byte_identical_on_the_other_side(tmp_path, monkeypatch):
    here, there = tmp_path / "here", tmp_path / "there"
    monkeypatch.setenv("RASR_RUNS_DIR", str(here))
    cfg = load_config("beauty", "full", {"regen.method": "rasr"})
    npy = embedding_cache_path(item_prompts(load_dataset("beauty")))
    npy.parent.mkdir(parents=True)
    np.save(npy, np.arange(12, dtype=np.float32))
    npy.with_suffix(".json").write_text('{"model": "all-MiniLM-L6-v2"}')
    pretrain = run_dir(pretrain_config(cfg))
    pretrain.mkdir(parents=True)
    (pretrain / "result.json").write_text('{"best_epoch": 3}')
    table = torch.arange(6.0).reshape(3, 2)
    torch.save({"best_state": {"item_embedding.weight": table, "other.weight": torch.ones(9)},
                "optimizer": {"state": {}}}, pretrain / "checkpoint.pt")
    generator = regen_dir(cfg) / "generator.pt"
    generator.parent.mkdir(parents=True)
    generator.write_bytes(os.urandom(4096))
    env = {**os.environ, "CARRY": str(tmp_path / "carry"), "PY": sys.executable}
    packed = subprocess.run(["bash", "scripts/gpu_carry.sh", "beauty", "rasr"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True)
    assert packed.returncode == 0, packed.stderr
    assert "limit 64 MiB" in packed.stdout

    # the other side starts bare; a bad setting stops the regeneration at once, so only the
    # unpacking and the packing back run
    env |= {"RUNS": str(there), "OUT": str(tmp_path / "out"), "CHECKS": "0", "DEVICE": "cpu",
            "BUDGET_S": "120", "EXTRA": "--set regen.window=0"}
    session = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True)
    assert session.returncode == 0, session.stderr
    assert "regen.window = 0" in session.stdout
    for path in (npy, npy.with_suffix(".json"), pretrain / "result.json", generator):
        assert (there / path.relative_to(here)).read_bytes() == path.read_bytes(), path.name
    trimmed = torch.load(there / (pretrain / "checkpoint.pt").relative_to(here), weights_only=False)
    assert list(trimmed) == ["best_state"] and list(trimmed["best_state"]) == ["item_embedding.weight"]
    assert torch.equal(trimmed["best_state"]["item_embedding.weight"], table)
    assert list((tmp_path / "out").glob("back.tgz.part-*"))
