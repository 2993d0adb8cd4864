"""Run folders are locked while a process trains into them: a second process is told, not raced."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from rasr_lib.config import load_config
from rasr_lib.runtime import FolderBusy, folder_lock, lock_holder


@pytest.fixture
def other_process():
    """A live process that is not this one (its pid stands for a second training run)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def hold_as(folder, pid: int) -> None:
    """Write ``folder``'s lock as if process ``pid`` on this machine held it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(f"{pid} {socket.gethostname()}\n")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Runs and results in a temporary folder."""
    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def test_a_held_folder_refuses_a_second_process_and_frees_on_exit(tmp_path, other_process):
    folder = tmp_path / "run"
    with folder_lock(folder):
        assert lock_holder(folder).startswith(f"process {__import__('os').getpid()} on ")
        with folder_lock(folder):  # re-entering in the same process is allowed
            pass
        assert (folder / ".lock").exists()  # the inner exit did not free the outer hold
    assert not (folder / ".lock").exists() and lock_holder(folder) is None
    with pytest.raises(RuntimeError), folder_lock(folder):  # freed on an exception too
        raise RuntimeError("boom")
    assert not (folder / ".lock").exists()
    hold_as(folder, other_process.pid)
    with pytest.raises(FolderBusy, match=f"process {other_process.pid} on "), folder_lock(folder):
        pass
    assert (folder / ".lock").read_text().split()[0] == str(other_process.pid)  # left alone


def test_a_lock_whose_process_died_is_taken_over(tmp_path, other_process):
    folder = tmp_path / "run"
    hold_as(folder, other_process.pid)
    other_process.kill()
    other_process.wait()
    assert lock_holder(folder) is None
    with folder_lock(folder):
        assert (folder / ".lock").read_text().split()[0] != str(other_process.pid)
    (folder / ".lock").write_text("half-writ")  # a crash between create and write
    with folder_lock(folder):
        pass


def test_training_a_busy_run_is_refused_and_a_plan_goes_on(dirs, other_process, capsys):
    from rasr_lib.cli import main
    from rasr_lib.experiments.plans import cell_status, run_plan
    from rasr_lib.experiments.train_run import run_dir, run_experiment

    cfg = load_config("beauty", "quick", {"data.max_users": 120, "train.epochs": 1})
    hold_as(run_dir(cfg), other_process.pid)
    assert cell_status(cfg) == f"training now (process {other_process.pid} on {socket.gethostname()})"
    with pytest.raises(FolderBusy):
        run_experiment(cfg, progress=False)
    assert not (run_dir(cfg) / "checkpoint.pt").exists()  # nothing was written beside the owner
    assert main(["train", "--profile", "quick", "--set", "data.max_users=120", "--set", "train.epochs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"process {other_process.pid}" in err and "\n" not in err
    # a plan skips the busy cell and trains the next one
    done = run_plan("zoo", profile="quick", overrides={"data.max_users": 120, "train.epochs": 1},
                    only=["sasrec", "bpr"], progress=False)
    assert "bpr" in done and "sasrec" not in done
    assert done["bpr"]["epochs_run"] == 1
