"""Seeds, devices, repository paths and provenance (git commit)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import random
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# Training steps between two calls of release_freed_memory() in the CPU training loops.
RELEASE_MEMORY_EVERY = 32
_libc_trim = None  # glibc's malloc_trim once looked up; False where there is none (macOS, musl)


def data_dir() -> Path:
    """Folder with the bundled datasets (``RASR_DATA_DIR`` overrides)."""
    return Path(os.environ.get("RASR_DATA_DIR", REPO_ROOT / "data"))


def runs_dir() -> Path:
    """Folder for run artefacts: checkpoints, caches, executed notebooks (``RASR_RUNS_DIR``)."""
    return Path(os.environ.get("RASR_RUNS_DIR", REPO_ROOT / "runs"))


def results_dir() -> Path:
    """Folder of committed results JSON (``RASR_RESULTS_DIR`` overrides)."""
    return Path(os.environ.get("RASR_RESULTS_DIR", REPO_ROOT / "results"))


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def get_device(device: str = "auto") -> torch.device:
    """Resolve ``auto`` to CUDA when available, else CPU; validate explicit names."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def git_commit() -> str:
    """Short commit hash of the repository, with ``-dirty`` when there are local changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(obj: dict, path: Path) -> None:
    """Write ``obj`` as indented JSON atomically (temporary file, then rename), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    tmp.replace(path)


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save ``obj`` to a temporary file then rename it, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, **extra) -> None:
    """Atomically save what resuming needs: weights, optimiser, both random streams, and ``extra``."""
    save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), **extra}, path)


def load_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, device: torch.device) -> dict:
    """Restore a :func:`save_training_state` file into ``model``, ``optimizer`` and the random streams.

    Returns the whole saved dict (for its extra entries). Restoring the global torch stream too
    means dropout draws continue exactly where they stopped, so a resumed run equals an
    uninterrupted one on the CPU.
    """
    state = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    # map_location moves every tensor, the random states too, but these two live on the CPU
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    return state


class FolderBusy(ValueError):
    """Another live process is writing a run folder (its ``.lock`` names the process)."""


_held_locks: set[Path] = set()


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a ``.lock`` file, or None when it is unreadable or half-written."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def lock_holder(folder: Path) -> str | None:
    """``process N on HOST`` holding ``folder``'s :func:`folder_lock`, or None (free, or a stale lock)."""
    owner = _lock_owner(Path(folder) / ".lock")
    if owner is None or (owner[1] == socket.gethostname() and not _process_alive(owner[0])):
        return None
    return f"process {owner[0]} on {owner[1]}"


@contextmanager
def folder_lock(folder: Path):
    """Hold ``folder/.lock`` while this process trains into ``folder``.

    Two processes asked for the same run (e.g. two plans that both need the SASRec that starts a
    generator) would otherwise resume from and overwrite one checkpoint in turn. The second one
    raises :class:`FolderBusy` instead. A lock left by a process that died (a crash, ``kill -9``)
    is taken over; re-entering a folder this process already holds is allowed.
    """
    folder = Path(folder).resolve()
    if folder in _held_locks:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock, host = folder / ".lock", socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = lock_holder(folder)
            if holder is not None:
                raise FolderBusy(f"{folder} is being written by {holder}; let it finish (or stop it) and "
                                 f"run again (if no such run is going, delete {lock})") from None
            lock.unlink(missing_ok=True)  # its process is gone (or the file is half-written): stale
    else:
        raise FolderBusy(f"{folder}: could not take {lock.name}; another process keeps taking it")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()} {host}\n")
    _held_locks.add(folder)
    try:
        yield
    finally:
        _held_locks.discard(folder)
        lock.unlink(missing_ok=True)


def release_freed_memory() -> bool:
    """Return heap pages freed by torch to the OS (glibc ``malloc_trim(0)``); False where there is no glibc.

    Batches whose tensors change size every step (FMLP-Rec's prefix sets, regenerated rows of any
    length) fragment glibc's heap: freed blocks stay resident. Measured on full Beauty with FMLP-Rec
    (one thread): the resident set grew from 0.6 to 1.9 GiB in two epochs and to 8.2 GiB by epoch 54;
    calling it every 22 steps kept it at 0.43 GiB, with step times within 6 % (both timed under load).
    """
    global _libc_trim
    if _libc_trim is None:
        _libc_trim = False
        name = ctypes.util.find_library("c")
        try:
            trim = ctypes.CDLL(name).malloc_trim if name else None
        except (OSError, AttributeError):
            trim = None
        if trim is not None:
            trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
            _libc_trim = trim
    if _libc_trim is False:
        return False
    _libc_trim(0)
    return True
