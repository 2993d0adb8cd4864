"""Run the book's notebooks per dataset and profile with papermill and harvest their records.

``run_notebook("02_data", dataset="toys", profile="quick")`` converts ``notebooks/02_data.md``
with jupytext, executes it with papermill (kernel ``python3``, working directory = repository
root) into ``runs/notebooks/toys/quick/02_data.ipynb``, reads the values the notebook recorded
with :func:`rasr_lib.report.record`, and writes them with their provenance to
``results/toys/02_data-quick.json``. When the parameters are the notebook's own defaults, the
executed outputs are also stored in the book's jupyter-cache, so the next ``jupyter-book build``
shows them instead of executing the notebook again.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Mapping

from rasr_lib.report import read_records
from rasr_lib.runtime import REPO_ROOT, git_commit, results_dir, runs_dir

logger = logging.getLogger(__name__)

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BOOK_CACHE_DIR = REPO_ROOT / "_build" / ".jupyter_cache"  # myst-nb's default for `jupyter-book build .`
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 900  # same per-cell limit as the book build (_config.yml)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookError(RuntimeError):
    """A notebook failed to execute; the message names the notebook and the failing cell."""


def list_notebooks() -> list[str]:
    """Names (stems) of the book's notebooks in run order: ``["01_formulation", ...]``."""
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.md"))


def notebook_path(name: str) -> Path:
    """Resolve ``"02"``, ``"02_data"`` or ``"02_data.md"`` to ``notebooks/02_data.md``."""
    stem = name[:-3] if name.endswith(".md") else name
    exact = NOTEBOOKS_DIR / f"{stem}.md"
    if exact.is_file():
        return exact
    matches = sorted(NOTEBOOKS_DIR.glob(f"{stem}_*.md"))
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"no unique notebook {name!r} in {NOTEBOOKS_DIR}; available: {list_notebooks()}")


def default_parameters(nb: Mapping) -> dict[str, Any]:
    """Literal assignments of the ``parameters``-tagged cell (the notebook's defaults)."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse(cell["source"]).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
            return out
    raise ValueError("the notebook has no code cell tagged 'parameters'")


def _source_sha256(path: Path) -> str:
    """Hash of a notebook's text source (part of the skip key of :func:`run_all`)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _device_description() -> str:
    """``cpu`` or ``cuda (<GPU name>)`` for the machine the runner runs on."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace and ANSI colours; cut to ``limit`` characters."""
    text = " ".join(_ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def execute_notebook(
    md_path: Path, out_path: Path, parameters: Mapping[str, Any], timeout: int = CELL_TIMEOUT_S
):
    """Execute a MyST-markdown notebook with papermill into ``out_path``; return the executed node."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = jupytext.read(md_path)
    defaults = default_parameters(nb)  # fails early, with a clear message, without a parameters cell
    unknown = sorted(set(parameters) - set(defaults))
    if unknown:
        raise ValueError(f"{md_path.name}: unknown parameters {unknown}; the notebook defines {sorted(defaults)}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return papermill.execute_notebook(
            nb, str(out_path), parameters=dict(parameters), kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT),
            progress_bar=False, log_output=False, execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        first = next((line for line in err.source.splitlines() if line.strip()), "")
        raise NotebookError(
            f"notebook {md_path.stem} failed in cell [{err.exec_count}] ({_one_line(first, 60)!r}): "
            f"{err.ename}: {_one_line(err.evalue)} — executed copy with the traceback: {out_path}"
        ) from None
    except Exception as err:  # kernel death, timeouts: still one line, naming the notebook
        raise NotebookError(
            f"notebook {md_path.stem} did not finish: {type(err).__name__}: {_one_line(err)} "
            f"— partial copy: {out_path}"
        ) from None


def prime_book_cache(md_path: Path, executed, cache_path: Path | None = None, seconds: float | None = None) -> bool:
    """Store an executed notebook's outputs in the book's jupyter-cache; False if sources differ."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    book_nb = read_myst_markdown_notebook(
        md_path.read_text(encoding="utf-8"), config=MdParserConfig(), add_source_map=True, path=md_path
    )
    ran = [c for c in executed["cells"]
           if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    book_cells = [c for c in book_nb.cells if c.cell_type == "code"]
    if len(ran) != len(book_cells) or any(a["source"].strip() != b.source.strip() for a, b in zip(ran, book_cells)):
        logger.warning("%s: executed cells do not match the book's reading; book cache not primed", md_path.name)
        return False
    for count, (src, dst) in enumerate(zip(ran, book_cells), start=1):
        dst.execution_count = count
        dst.outputs = [nbformat.from_dict({**o, "execution_count": count} if "execution_count" in o else o)
                       for o in src["outputs"]]
    cache = get_cache(str(cache_path or BOOK_CACHE_DIR))
    bundle = CacheBundleIn(book_nb, str(md_path), data={"execution_seconds": seconds})
    cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
    logger.info("%s: outputs stored in the book cache %s", md_path.name, cache_path or BOOK_CACHE_DIR)
    return True


def _results_path(stem: str, dataset: str, profile: str, out_results: Path | None) -> Path:
    """``results/<dataset>/<notebook>-<profile>.json``."""
    return (out_results or results_dir()) / dataset / f"{stem}-{profile}.json"


def run_notebook(
    name: str,
    dataset: str = "beauty",
    profile: str = "quick",
    seed: int = 0,
    parameters: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    results_root: str | Path | None = None,
    prime_cache: bool = True,
) -> dict[str, Any]:
    """Execute one notebook for a dataset/profile, harvest its records into the results JSON."""
    md_path = notebook_path(name)
    params = {"DATASET": dataset, "PROFILE": profile, "SEED": seed, **dict(parameters or {})}
    out_dir = Path(out_dir) if out_dir is not None else runs_dir() / "notebooks" / dataset / profile
    out_path = out_dir / f"{md_path.stem}.ipynb"
    logger.info("running %s with %s -> %s", md_path.stem, params, out_path)
    start = time.perf_counter()
    executed = execute_notebook(md_path, out_path, params)
    wall = round(time.perf_counter() - start, 2)
    result = {
        "notebook": md_path.stem,
        "dataset": dataset,
        "profile": profile,
        "seed": seed,
        "parameters": params,
        "records": read_records(executed),
        "git_commit": git_commit(),
        "source_sha256": _source_sha256(md_path),
        "wall_time_s": wall,
        "device": _device_description(),
        "python": platform.python_version(),
        "executed_notebook": str(out_path),
    }
    target = _results_path(md_path.stem, dataset, profile, Path(results_root) if results_root else None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    logger.info("%s: %d records in %.1f s -> %s", md_path.stem, len(result["records"]), wall, target)
    defaults = default_parameters(executed)
    if prime_cache and all(k in defaults and defaults[k] == v for k, v in params.items()):
        try:  # best effort: the outputs equal what the book build would compute itself
            prime_book_cache(md_path, executed, seconds=wall)
        except Exception as err:  # a broken cache only costs a re-execution in the book build
            logger.warning("%s: book cache not primed (%s: %s)", md_path.stem, type(err).__name__, err)
    return result


def run_all(
    dataset: str = "beauty",
    profile: str = "quick",
    notebooks: list[str] | None = None,
    seed: int = 0,
    parameters: Mapping[str, Any] | None = None,
    force: bool = False,
    results_root: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Run notebooks in order (all by default), skipping those already run at this commit."""
    from tqdm import tqdm

    names = [notebook_path(n).stem for n in (notebooks or list_notebooks())]
    if not names:
        raise ValueError(f"no notebooks found in {NOTEBOOKS_DIR}")
    commit = git_commit()
    out: dict[str, dict[str, Any]] = {}
    bar = tqdm(names, desc=f"notebooks {dataset}/{profile}", unit="nb")
    for stem in bar:
        bar.set_postfix_str(stem)
        params = {"DATASET": dataset, "PROFILE": profile, "SEED": seed, **dict(parameters or {})}
        target = _results_path(stem, dataset, profile, Path(results_root) if results_root else None)
        if not force and commit != "unknown" and target.is_file():
            previous = json.loads(target.read_text(encoding="utf-8"))
            same = (previous.get("parameters") == params and previous.get("git_commit") == commit
                    and previous.get("source_sha256") == _source_sha256(notebook_path(stem)))
            if same:
                logger.info("%s: up to date at %s (%s); skipped, use force=True to rerun", stem, commit, target)
                out[stem] = previous
                continue
        out[stem] = run_notebook(stem, dataset, profile, seed, parameters, results_root=results_root)
    return out
