"""The commit a run records: dirty only when code changed, not when earlier runs rewrote results/."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rasr_lib.runtime import git_commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_git_commit_is_dirty_for_code_changes_only(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sampled-eval.json").write_text("{}")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty") and clean != "unknown"

    (tmp_path / "results" / "sampled-eval.json").write_text('{"run": 1}')
    (tmp_path / "results" / "new-run.json").write_text("{}")
    assert git_commit(tmp_path) == clean

    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
