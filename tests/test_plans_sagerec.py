"""SAGERec's plans: Table 3/4 grid (models x protocols x 5 seeds), Table 5 ablations, the CLI."""

from __future__ import annotations

import dataclasses

import pytest

from rasr_lib.config import config_hash, load_config
from rasr_lib.experiments.plans import (
    PLANS, RASR_PLANS, SAGEREC_ABLATIONS, plan_configs,
)
from rasr_lib.experiments.train_run import run_dir, run_name


def _flat(cfg) -> dict:
    """Every config setting as ``section.key`` -> value (``seed`` etc. at the top level)."""
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def test_table3_is_every_model_two_protocols_five_seeds():
    from rasr_lib.experiments.plans import SAGEREC_TABLE3_MODELS

    cells = plan_configs("sagerec-table3", profile="full", seed=10)
    assert len(cells) == len(SAGEREC_TABLE3_MODELS) * 2 * 5
    assert {"sagerec", "sasrec", "gru4rec", "cl4srec", "bpr", "sine"} <= set(SAGEREC_TABLE3_MODELS)
    labels = [label for label, _ in cells]
    assert len(set(labels)) == len(labels)
    got = {(c.model.name, c.eval.protocol, c.seed) for _, c in cells}
    assert got == {(m, p, s) for m in SAGEREC_TABLE3_MODELS
                   for p in ("full", "sampled100") for s in range(10, 15)}
    cell = dict(cells)["gru4rec/sampled100/seed12"]
    assert (cell.model.name, cell.eval.protocol, cell.seed) == ("gru4rec", "sampled100", 12)
    # each model keeps its own defaults; only SAGERec gets the §5.3 recipe
    sage, sas = dict(cells)["sagerec/full/seed10"], dict(cells)["sasrec/full/seed10"]
    assert sage.model.hidden_dim == 50 and sage.train.neg_exclude_history is True
    assert sas == load_config("beauty", "full", {"seed": 10}, model="sasrec")


def test_every_cell_has_its_own_run_folder():
    for plan in ("sagerec-table3", "sagerec-table5"):
        cells = plan_configs(plan, profile="full")
        assert len({run_dir(c) for _, c in cells}) == len(cells), plan
        assert len({config_hash(c) for _, c in cells}) == len(cells), plan


def test_every_cell_has_its_own_published_name():
    for plan in ("sagerec-table3", "sagerec-table5"):
        cells = plan_configs(plan, profile="full")
        assert len({run_name(c) for _, c in cells}) == len(cells), plan
    assert run_name(load_config("beauty", "full")) == "sasrec-bce-full-seed0"  # published names kept


def test_each_ablation_flips_exactly_its_switch():
    cells = dict(plan_configs("sagerec-table5", profile="full", seed=3))
    assert list(cells) == list(SAGEREC_ABLATIONS) and len(cells) == 5
    full = _flat(cells["A full"])
    assert full["model.name"] == "sagerec" and full["seed"] == 3
    assert (full["sagerec.graph"], full["sagerec.edge_learning"], full["sagerec.position"]) == (
        "semantic", True, True)
    expected = {
        "B w/o edge learning": {"sagerec.edge_learning": False},
        "C w/o graph": {"sagerec.graph": "none"},
        "D random graph": {"sagerec.graph": "random"},
        "E w/o position": {"sagerec.position": False},
    }
    for label, change in expected.items():
        flat = _flat(cells[label])
        diff = {k: v for k, v in flat.items() if full[k] != v}
        assert diff == change, label


def test_ml1m_sagerec_cells_use_the_papers_max_len():
    t3 = dict(plan_configs("sagerec-table3", dataset="ml-1m", profile="full"))
    assert t3["sagerec/full/seed0"].data.max_len == 165
    assert t3["sasrec/full/seed0"].data.max_len == 50  # baselines keep the library default
    t5 = plan_configs("sagerec-table5", dataset="ml1m", profile="full")
    assert {c.data.max_len for _, c in t5} == {165}
    mine = dict(plan_configs("sagerec-table5", dataset="ml-1m", overrides={"data.max_len": 200}))
    assert mine["A full"].data.max_len == 200
    beauty = plan_configs("sagerec-table5", dataset="beauty")
    assert {c.data.max_len for _, c in beauty} == {50}
    # 165 is SAGERec's recipe on ML-1M, not a departure from it: its result has the plain name
    from rasr_lib.experiments.train_run import recipe_overrides, run_name

    assert load_config("ml-1m", "full", model="sagerec").data.max_len == 165
    assert recipe_overrides(t3["sagerec/full/seed0"]) == {}
    assert run_name(t3["sagerec/full/seed0"]) == "sagerec-bce-full-seed0"
    assert run_name(mine["A full"]).startswith("sagerec-bce-full-seed0-o")


def test_rasr_plans_unchanged_and_encoder_plan_pairs_each_backbone_with_its_graph_version():
    assert PLANS[:4] == RASR_PLANS == ("table1", "fig3", "fig4", "fig5")
    assert {"sagerec-table3", "sagerec-table5", "sagerec-encoder"} <= set(PLANS)
    assert len(plan_configs("table1", profile="full")) == 12
    cells = dict(plan_configs("sagerec-encoder"))
    assert {"gru4rec", "gru4rec+graph"} <= set(cells)
    assert len(cells) % 2 == 0
    for label, c in cells.items():
        assert c.model.semantic_graph == label.endswith("+graph")
        assert c.model.name == label.removesuffix("+graph")
    assert run_name(cells["gru4rec+graph"]).endswith("-graph")
    assert config_hash(cells["gru4rec"]) != config_hash(cells["gru4rec+graph"])


def test_cli_plan_choices_come_from_plans(capsys):
    from rasr_lib.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    name = next(a for a in sub.choices["plan"]._actions if a.dest == "name")
    assert list(name.choices) == [*PLANS, "all"]
    assert main(["plan", "sagerec-table5", "--list", "--profile", "full"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("A full")
    # `all` lists every plan's cells in ALL_PLANS_ORDER, each label prefixed with its plan
    from rasr_lib.experiments.plans import ALL_PLANS_ORDER

    assert sorted(ALL_PLANS_ORDER) == sorted(PLANS)
    assert main(["plan", "all", "--list", "--profile", "quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == sum(len(plan_configs(p, profile="quick")) for p in PLANS)
    assert lines[0].startswith("zoo: sasrec") and lines[-1].startswith("fig5: decay 1")
    assert main(["plan", "all", "--list", "--only", "w/o regenerator", "ratio 0.5"]) == 0
    assert [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()] == [
        "fig3: w/o regenerator", "fig4: ratio 0.5"]
    assert main(["plan", "all", "--list", "--only", "no such cell"]) == 2
    with pytest.raises(SystemExit):
        main(["plan", "no-such-plan", "--list"])


def test_zoo_plan_has_every_backbone_with_its_own_recipe():
    from rasr_lib.config import MODEL_DEFAULTS

    cells = dict(plan_configs("zoo"))
    assert set(cells) == set(MODEL_DEFAULTS) - {"sagerec"}
    for name, c in cells.items():
        assert c.model.name == name and c.regen.method == "none"
        assert c.train.loss == MODEL_DEFAULTS[name].get("train.loss", "bce")


def test_a_run_off_its_recipe_gets_its_own_name():
    recipe = load_config("beauty", "full", model="sagerec")
    no_decay = load_config("beauty", "full", {"train.lr_decay_patience": 0}, model="sagerec")
    assert run_name(recipe) == "sagerec-bce-full-seed0"
    assert run_name(no_decay).startswith("sagerec-bce-full-seed0-o") and len(run_name(no_decay)) == 30
    assert run_name(load_config("beauty", "full", {"model.dropout": 0.2})) != run_name(load_config("beauty", "full"))
    # a section the model never reads changes nothing
    assert run_name(load_config("beauty", "full", {"cl4srec.pooling": "last"})) == "sasrec-bce-full-seed0"
    # the evaluation batch size changes no number; named settings are not counted twice
    for named in ({"eval.batch_size": 1024}, {"train.loss": "ce"}, {"seed": 3}, {"eval.protocol": "sampled100"}):
        assert "-o" not in run_name(load_config("beauty", "full", named)), named


def test_committed_results_are_named_by_their_config():
    """Every committed result's file name is what run_name gives its recorded config (no rename, no clash)."""
    import json

    from rasr_lib.config import config_from_dict
    from rasr_lib.runtime import REPO_ROOT

    paths = sorted((REPO_ROOT / "results").glob("*/*-full-seed*.json"))
    assert paths
    for path in paths:
        data = json.loads(path.read_text())
        if "config" in data:
            cfg = config_from_dict(data["config"])
            assert run_name(cfg) == path.stem, path.name
            assert config_hash(cfg) == data["config_hash"], path.name  # the hash it was trained under


def test_cli_output_piped_into_a_reader_that_stops_is_not_an_error():
    import subprocess
    import sys

    cmd = f"'{sys.executable}' -m rasr_lib plan all --list --profile quick | head -1"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("zoo: sasrec") and done.stderr == ""
