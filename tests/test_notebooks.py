"""The book's notebooks: static shape checks, then quick-profile runs whose records we assert."""

from __future__ import annotations

import json
import math
import re

import jupytext
import pytest

from conftest import NOTEBOOKS, QUICK_DEFAULTS, existing_notebooks

NAMES = existing_notebooks()

# Exact values where the computation is deterministic (data statistics, hand examples).
EXPECTED = {
    "01_formulation": {
        "example/recall@10": 0.6,
        "example/ndcg@10": (1 + 1 / 2 + 1 / 3) / 5,
        "example/recall@20": 0.8,
        "example/ndcg@20": (1 + 1 / 2 + 1 / math.log2(13) + 1 / 3) / 5,
        "example/rank_unmasked": 5,
        "example/rank_masked": 4,
        "user0/length": 5,
        "user0/test_title": "Dr. Scholl's Quick Heat Paraffin Spa Bath",
        "popularity/full/recall@10": 0.019,  # 19 of the 1,000 quick-slice users
    },
    "02_data": {
        **{f"data/beauty/{k}": v for k, v in dict(
            n_users=22363, n_items=12101, n_interactions=198502, avg_len=8.88, sparsity=0.9993).items()},
        **{f"data/sports/{k}": v for k, v in dict(
            n_users=35598, n_items=18357, n_interactions=296337, avg_len=8.32, sparsity=0.9995).items()},
        **{f"data/toys/{k}": v for k, v in dict(
            n_users=19412, n_items=11924, n_interactions=167597, avg_len=8.63, sparsity=0.9993).items()},
        **{f"data/ml-1m/{k}": v for k, v in dict(
            n_users=6040, n_items=3416, n_interactions=999611, avg_len=165.5, sparsity=0.9516).items()},
        "data/beauty/median_len": 6,
        "data/beauty/max_len_share": 0.0068,
        "data/beauty/top20_share": 0.581,
    },
    "04_rasr_graphs": {
        "graph/n_items": 2795, "graph/C_nnz": 3238, "graph/T_nnz": 3238,
        "graph/S_mean_top1": 0.7695,
    },
    "05_rasr_augmentation": {
        "augment/n_variants": 1128, "augment/n_semantic": 599, "augment/n_relational": 529,
        "augment/n_dropped_duplicates": 72, "augment/n_sources": 300, "augment/deterministic": True,
    },
    "06_rasr_regeneration": {
        "regen/n_users": 300, "regen/n_original_rows": 300, "regen/dr4sr/n_patterns": 85,
        "regen/dr4sr/n_pattern_rows": 85, "regen/rasr/n_augmented": 1128, "regen/rasr/n_pairs": 1128,
        "regen/dr4sr/n_pairs": 112, "regen/rasr/n_decoded": 1500, "regen/dr4sr/n_decoded": 1500,
    },
    "08_sagerec_graph": {
        "graph/n_items": 2795, "graph/n_edges": 6275, "graph/n_isolated": 0, "graph/max_degree": 38,
        "prompts/n_over_128_tokens": 5, "grid/k3_tau0.7/edges": 3209, "grid/k10_tau0.5/edges": 19061,
        "grid/k10_tau0.9/edges": 271, "grid/tau0.5/isolated": 13, "grid/tau0.7/isolated": 782,
        "grid/tau0.9/isolated": 2409,
    },
    "09_sagerec_model": {
        "model/n_parameters": 178501, "model/n_parameters_no_graph": 173400,
        "model/edge_mlp_parameters": 5101, "graph/n_edges": 6275, "cold/n_items": 327,
    },
}


def _code_cells(name):
    """Code cells of ``notebooks/<name>.md`` as jupytext reads them."""
    return [c for c in jupytext.read(NOTEBOOKS / f"{name}.md").cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert NAMES[:2] == ["01_formulation", "02_data"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_shape(name):
    """One parameters cell with the quick defaults, short cells, 79 columns, a Record section."""
    cells = _code_cells(name)
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name}: needs exactly one cell tagged 'parameters'"
    namespace: dict = {}
    exec(params[0].source, namespace)  # flat literal assignments only
    assert {k: namespace[k] for k in QUICK_DEFAULTS} == QUICK_DEFAULTS
    for cell in cells:
        lines = cell.source.splitlines()
        assert len(lines) <= 10, f"{name}: a code cell has {len(lines)} lines: {lines[0]!r}"
        wide = [line for line in lines if len(line) > 79]
        assert wide == [], f"{name}: code wider than 79 columns: {wide[0]!r}"
        assert not cell.get("outputs"), f"{name}: the text source must not carry outputs"
    text = (NOTEBOOKS / f"{name}.md").read_text(encoding="utf-8")
    assert "format_name: myst" in text and "name: python3" in text
    assert "record(" in text, f"{name}: records nothing"


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_notebook_records(run_notebook, name):
    """Run with the quick defaults; the deterministic records are exact."""
    records, _ = run_notebook(name)
    assert records, f"{name}: recorded nothing"
    expected = EXPECTED.get(name, {})
    got = {k: records.get(k) for k in expected}
    assert {k: v for k, v in got.items() if isinstance(v, str)} == {
        k: v for k, v in expected.items() if isinstance(v, str)}
    numbers = {k: v for k, v in expected.items() if not isinstance(v, str)}
    assert {k: got[k] for k in numbers} == pytest.approx(numbers, rel=1e-12, abs=1e-12)


@pytest.mark.notebooks
def test_sampled_metrics_inflate_the_popularity_baseline(run_notebook):
    records, _ = run_notebook("01_formulation")
    full, sampled = records["popularity/full/recall@10"], records["popularity/sampled100/recall@10"]
    assert sampled == pytest.approx(0.194, abs=0.03)
    assert sampled > 5 * full


# ----------------------------------------------------------------------------- the runner

TINY = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# tiny

```{code-cell} ipython3
:tags: [parameters]

DATASET = "beauty"
PROFILE = "quick"
SEED = 0
```

```{code-cell} ipython3
from rasr_lib.report import record

record("tiny/seed_plus_one", SEED + 1)
record("tiny/dataset", DATASET)
BODY
```
"""


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    """The runner pointed at a temporary notebooks/, runs/, results/ and book cache."""
    from rasr_lib.experiments import runner

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    (nbdir / "01_tiny.md").write_text(TINY.replace("BODY", "SEED * 10"))
    (nbdir / "02_bad.md").write_text(TINY.replace("BODY", "x = 1 / 0"))
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nbdir)
    monkeypatch.setattr(runner, "BOOK_CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(runner, "git_commit", lambda: "abc1234")
    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.mark.notebooks
def test_runner_writes_results_and_skips_an_up_to_date_run(tiny_repo, monkeypatch):
    from rasr_lib.experiments import runner

    out = runner.run_all("toys", "quick", notebooks=["01"], seed=2)
    path = tiny_repo / "results" / "toys" / "01_tiny-quick.json"
    saved = json.loads(path.read_text())
    assert saved == out["01_tiny"]
    assert saved["records"] == {"tiny/seed_plus_one": 3, "tiny/dataset": "toys"}
    assert saved["parameters"] == {"DATASET": "toys", "PROFILE": "quick", "SEED": 2}
    assert saved["git_commit"] == "abc1234"
    assert (tiny_repo / "runs" / "notebooks" / "toys" / "quick" / "01_tiny.ipynb").is_file()
    assert not (tiny_repo / "cache").exists()  # non-default parameters never reach the book cache

    def fail(*args, **kwargs):
        raise AssertionError("an up-to-date notebook was executed again")

    monkeypatch.setattr(runner, "run_notebook", fail)
    assert runner.run_all("toys", "quick", notebooks=["01_tiny"], seed=2) == {"01_tiny": saved}


@pytest.mark.notebooks
def test_runner_primes_the_book_cache_with_default_parameters(tiny_repo):
    from jupyter_cache import get_cache
    from myst_nb.core.read import read_myst_markdown_notebook

    from rasr_lib.experiments import runner

    runner.run_notebook("01_tiny")
    md = tiny_repo / "notebooks" / "01_tiny.md"
    book_nb = read_myst_markdown_notebook(md.read_text(), add_source_map=True, path=md)
    cache = get_cache(str(tiny_repo / "cache"))
    assert cache.match_cache_notebook(book_nb).pk == 1
    _, merged = cache.merge_match_into_notebook(book_nb)
    last = merged.cells[-1]
    assert last.execution_count == 2
    assert last.outputs[-1]["output_type"] == "execute_result"
    assert last.outputs[-1]["data"]["text/plain"] == "0"


@pytest.mark.notebooks
def test_runner_names_the_failing_notebook_and_cell(tiny_repo):
    from rasr_lib.experiments import runner

    with pytest.raises(runner.NotebookError) as err:
        runner.run_notebook("02_bad")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("notebook 02_bad failed in cell [3] ('from rasr_lib.report import record'): "
                              "ZeroDivisionError: division by zero")
    assert not (tiny_repo / "results" / "beauty" / "02_bad-quick.json").exists()


def test_runner_rejects_unknown_parameters_and_notebooks(tiny_repo):
    from rasr_lib.experiments import runner

    with pytest.raises(ValueError, match=r"unknown parameters \['EPOCHS'\]"):
        runner.run_notebook("01_tiny", parameters={"EPOCHS": 3})
    with pytest.raises(ValueError, match=r"no unique notebook '09'.*\['01_tiny', '02_bad'\]"):
        runner.notebook_path("09")


def test_cli_param_values_are_literals_or_strings(capsys):
    from rasr_lib.cli import main, notebook_parameters

    assert notebook_parameters(["FULL_GENERATOR_EPOCHS=5", "MODELS=sasrec,gru4rec", "RATE=0.5",
                                "NAME='a b'"]) == {"FULL_GENERATOR_EPOCHS": 5, "MODELS": "sasrec,gru4rec",
                                                   "RATE": 0.5, "NAME": "a b"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        notebook_parameters(["EPOCHS"])
    with pytest.raises(ValueError, match="use --seed"):
        notebook_parameters(["SEED=3"])
    assert main(["notebooks", "--only", "01", "--param", "1X=2"]) == 2
    assert "--param expects NAME=VALUE" in capsys.readouterr().err


# ----------------------------------------------------------------------------- results page


def _execute_results_page(tmp_path):
    """Execute book/results.md in a kernel; return (text and HTML outputs joined, number of images)."""
    from nbclient import NotebookClient

    from conftest import ROOT

    nb = jupytext.read(ROOT / "book" / "results.md")
    NotebookClient(nb, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    parts, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts += [data.get("text/markdown", ""), data.get("text/html", ""), out.get("text", "")]
            images += "image/png" in data
    return "\n".join(parts), images


@pytest.mark.notebooks
def test_results_page_without_results(tmp_path, monkeypatch):
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    text, images = _execute_results_page(tmp_path)
    assert "No full runs committed yet" in text
    assert "RaSR Table 1 (original data)" in text and "0.0648" in text
    assert "No plan cell has a committed run yet." in text
    assert images == 0


@pytest.mark.notebooks
def test_results_page_with_a_full_run(tmp_path, monkeypatch):
    from test_report import _experiment

    (tmp_path / "results" / "beauty").mkdir(parents=True)
    from rasr_lib.config import config_to_dict, load_config

    run = _experiment("beauty", "sasrec", 0, 0.0368)
    run["config"] = config_to_dict(load_config("beauty", "full"))  # so it is the plans' SASRec cell
    (tmp_path / "results" / "beauty" / "sasrec-bce-full-seed0.json").write_text(json.dumps(run))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    text, images = _execute_results_page(tmp_path)
    assert "1 full run(s) committed" in text
    assert "ours (full, full ranking, history masked)" in text
    assert re.search(r"<td>1\.0+</td>", text)  # our N@20 0.0368 over DR4SR Table 3's 0.0368
    assert images == 2  # the map of what has been run, the training curve


@pytest.mark.notebooks
def test_regeneration_chapter_generators_learn(run_notebook):
    records, _ = run_notebook("06_rasr_regeneration")
    for method in ("rasr", "dr4sr"):
        assert records[f"regen/{method}/last_ce"] < records[f"regen/{method}/first_ce"]
    assert records["regen/rasr/first_ce"] < math.log(2795 + 3) + 0.05  # about chance (2,795 items + 3)


@pytest.mark.notebooks
def test_sagerec_chapter_training_lowers_the_loss(run_notebook):
    records, _ = run_notebook("09_sagerec_model")
    for run in ("sagerec", "no_graph"):
        assert records[f"train/{run}/last_loss"] < records[f"train/{run}/first_loss"] - 0.05
