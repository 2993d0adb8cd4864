"""requirements.txt, pyproject.toml and environment.yml name the same exact pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def _normalise(requirement: str) -> tuple[str, str]:
    """``"PyYAML==6.0.3"`` -> ``("pyyaml", "6.0.3")``; anything but an exact pin fails."""
    match = PIN.match(requirement.strip())
    assert match, f"not an exact pin: {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)


def _requirements() -> set[tuple[str, str]]:
    """Pins of requirements.txt (comments and blank lines skipped)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {_normalise(line.split("#")[0]) for line in lines if line.split("#")[0].strip()}


def _pyproject() -> set[tuple[str, str]]:
    """Pins of ``[project] dependencies``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_normalise(dep) for dep in data["project"]["dependencies"]}


def _environment() -> set[tuple[str, str]]:
    """Pins of the ``- pip:`` list of environment.yml."""
    data = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in data["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one '- pip:' list"
    return {_normalise(dep) for dep in pip_lists[0]}


def test_the_three_files_pin_the_same_set():
    req = _requirements()
    assert _pyproject() == req
    assert _environment() == req


def test_torch_is_pinned_to_the_cpu_wheel_version():
    assert ("torch", "2.13.0") in _requirements()


def test_environment_names_python_311():
    data = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert data["name"] == "rasr"
    assert "python=3.11" in data["dependencies"]
    assert "pip" in data["dependencies"]
