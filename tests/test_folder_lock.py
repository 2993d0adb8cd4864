"""Run folders are locked while a process trains into them: a second process is told, not raced."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rasr_lib.config import load_config
from rasr_lib.runtime import FolderBusy, folder_lock, lock_holder

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from rasr_lib.runtime import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def hold():
    """Start a second process that holds a folder's lock until the test ends (or it is killed)."""
    procs = []

    def start(folder) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_held_folder_refuses_a_second_process_and_frees_on_exit(tmp_path, hold):
    folder = tmp_path / "run"
    with folder_lock(folder):
        assert lock_holder(folder) == f"process {os.getpid()} on {socket.gethostname()}"
        with folder_lock(folder):  # re-entering in the same process is allowed
            pass
        assert lock_holder(folder) is not None  # the inner exit did not free the outer hold
    assert lock_holder(folder) is None
    with pytest.raises(RuntimeError), folder_lock(folder):  # freed on an exception too
        raise RuntimeError("boom")
    assert lock_holder(folder) is None
    other = hold(folder)
    assert lock_holder(folder) == f"process {other.pid} on {socket.gethostname()}"
    with pytest.raises(FolderBusy, match=f"process {other.pid} on "), folder_lock(folder):
        pass
    assert lock_holder(folder) == f"process {other.pid} on {socket.gethostname()}"  # left alone


def test_a_lock_whose_process_died_is_free(tmp_path, hold):
    folder = tmp_path / "run"
    other = hold(folder)
    other.kill()  # kill -9: no cleanup code runs, the file stays
    other.wait()
    assert (folder / ".lock").exists() and lock_holder(folder) is None
    with folder_lock(folder):
        assert (folder / ".lock").read_text().split()[0] == str(os.getpid())


def test_training_a_busy_run_is_refused_and_a_plan_goes_on(tmp_path, monkeypatch, hold, capsys):
    from rasr_lib.cli import main
    from rasr_lib.experiments.plans import cell_status, run_plan
    from rasr_lib.experiments.train_run import run_dir, run_experiment

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    cfg = load_config("beauty", "quick", {"data.max_users": 120, "train.epochs": 1})
    other = hold(run_dir(cfg))
    assert cell_status(cfg) == f"training now (process {other.pid} on {socket.gethostname()})"
    with pytest.raises(FolderBusy):
        run_experiment(cfg, progress=False)
    assert not (run_dir(cfg) / "checkpoint.pt").exists()  # nothing was written beside the owner
    assert main(["train", "--profile", "quick", "--set", "data.max_users=120", "--set", "train.epochs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"process {other.pid}" in err and "\n" not in err
    # a plan skips the busy cell and trains the next one
    done = run_plan("zoo", profile="quick", overrides={"data.max_users": 120, "train.epochs": 1},
                    only=["sasrec", "bpr"], progress=False)
    assert "bpr" in done and "sasrec" not in done
    assert done["bpr"]["epochs_run"] == 1


def test_a_regeneration_whose_sasrec_is_busy_stops_before_its_first_stage(tmp_path, monkeypatch, hold):
    from rasr_lib.experiments import regen_run
    from rasr_lib.experiments.train_run import run_dir

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))

    def no_encoding(*args, **kwargs):
        raise AssertionError("the embeddings were encoded before the busy SASRec was noticed")

    monkeypatch.setattr(regen_run, "encode_items", no_encoding)
    cfg = load_config("beauty", "quick", {"data.max_users": 150, "regen.method": "rasr",
                                          "regen.generator_epochs": 1, "device": "cpu"})
    other = hold(run_dir(regen_run.pretrain_config(cfg)))
    with pytest.raises(FolderBusy, match=f"SASRec that starts this generator is being trained by process {other.pid}"):
        regen_run.run_regeneration(cfg, progress=False)
    assert lock_holder(regen_run.regen_dir(cfg)) is None  # the pipeline's own lock was let go
