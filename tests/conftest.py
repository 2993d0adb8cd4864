"""Shared fixtures: repository paths and a cached papermill execution of the book's notebooks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
QUICK_DEFAULTS = {"DATASET": "beauty", "PROFILE": "quick", "SEED": 0}


def existing_notebooks() -> list[str]:
    """Stems of the notebooks present in ``notebooks/`` (the parametrisation of notebook tests)."""
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.md"))


@pytest.fixture(scope="session")
def run_notebook(tmp_path_factory):
    """Execute ``notebooks/<name>.md`` once per parameter set; return (records, executed path).

    When ``RASR_BOOK_CACHE`` names a folder (scripts/test.sh sets it to the book's
    jupyter-cache), runs with the default parameters also store their outputs there, so the
    book build that follows does not execute the notebooks a second time.
    """
    from rasr_lib.experiments.runner import execute_notebook, notebook_path, prime_book_cache
    from rasr_lib.report import read_records

    done: dict = {}
    out_dir = tmp_path_factory.mktemp("executed")

    def _run(name: str, **params):
        params = {**QUICK_DEFAULTS, **params}
        key = (name, tuple(sorted(params.items())))
        if key not in done:
            md = notebook_path(name)
            out = out_dir / f"{md.stem}-{len(done)}.ipynb"
            executed = execute_notebook(md, out, params)
            cache = os.environ.get("RASR_BOOK_CACHE")
            if cache and params == QUICK_DEFAULTS:
                prime_book_cache(md, executed, Path(cache))
            done[key] = (read_records(executed), out)
        return done[key]

    return _run


def fake_embeddings(ds, **kwargs):
    """Deterministic random unit vectors float32[n_items + 1, 16] instead of MiniLM (tested on its own)."""
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(ds.n_items + 1, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[0] = 0
    return emb


@pytest.fixture
def one_thread():
    """Bitwise comparisons at one intra-op thread: with several, some CPU kernels may reduce in a different order."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
