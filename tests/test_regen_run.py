"""The regeneration pipelines end to end on a real slice, the merged training data, plans and CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import fake_embeddings
from rasr_lib.config import config_hash, load_config
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.experiments import regen_run
from rasr_lib.experiments.plans import plan_configs
from rasr_lib.experiments.train_run import run_experiment, run_name

ROOT = Path(__file__).resolve().parent.parent
USERS = 150


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Runs and results in a temporary folder; fake item embeddings."""
    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(regen_run, "encode_items", fake_embeddings)
    return tmp_path


def tiny(method: str, **extra):
    """A quick config on the first USERS Beauty users, one generator and one backbone epoch."""
    overrides = {"data.max_users": USERS, "regen.method": method, "regen.generator_epochs": 1,
                 "train.epochs": 1, "device": "cpu", **extra}
    return load_config("beauty", "quick", overrides)


def test_regen_settings_name_only_regenerated_runs():
    """Original-data runs keep the hash (and run folder) they had before the regen section existed."""
    from dataclasses import replace

    cfg = load_config("beauty", "full")
    other = replace(cfg, regen=replace(cfg.regen, window=5))
    assert config_hash(other) == config_hash(cfg) and run_name(cfg) == "sasrec-bce-full-seed0"
    rasr = load_config("beauty", "full", {"regen.method": "rasr"})
    assert config_hash(replace(rasr, regen=replace(rasr.regen, window=5))) != config_hash(rasr)


def test_bad_regen_settings_are_clear_errors():
    with pytest.raises(ValueError, match="regen.method"):
        load_config("beauty", "quick", {"regen.method": "gan"})
    with pytest.raises(ValueError, match="ratio"):
        load_config("beauty", "quick", {"regen.method": "rasr", "regen.ratio": 1.5})
    with pytest.raises(ValueError, match="nothing to regenerate"):
        regen_run.regen_dir(load_config("beauty", "quick"))


def test_rasr_pipeline_runs_then_is_read_back(dirs, monkeypatch):
    cfg = tiny("rasr")
    regenerated, summary = regen_run.run_regeneration(cfg, progress=False)
    assert summary["n_pairs"] == summary["augmented"]["n_variants"] > USERS
    assert len(summary["generator_history"]) == 1
    assert regenerated.n_sequences > 0
    assert regenerated.items.min() >= 1 and regenerated.items.max() <= regenerated.n_items
    assert set(np.unique(regenerated.source)) <= set(range(USERS))
    folder = regen_run.regen_dir(cfg)
    assert (folder / "generator.pt").is_file() and (folder / "regenerated.json").is_file()
    assert (dirs / "runs" / "train" / "beauty").is_dir()  # the SASRec that started the item table

    def never(*args, **kwargs):
        raise AssertionError("a finished pipeline was run again")

    monkeypatch.setattr(regen_run, "fit_generator", never)
    again, summary2 = regen_run.run_regeneration(cfg, progress=False)
    assert summary2 == summary
    np.testing.assert_array_equal(again.items, regenerated.items)


def test_a_deadline_stops_regeneration_and_the_same_call_resumes(dirs, capsys):
    from rasr_lib.cli import main

    cfg = tiny("rasr", **{"regen.generator_epochs": 2, "train.epochs": 2})
    cut = run_experiment(cfg, publish=True, progress=False, deadline=0.0)  # the generator's SASRec stops first
    assert cut["metrics"] is None and cut["stage"] == "regenerate"
    assert cut["prepare"] == {"stage": "the generator's SASRec", "epochs_done": 1, "epochs": 2}
    cut = run_experiment(cfg, publish=True, progress=False, deadline=0.0)  # now the generator, after 1 of 2
    assert cut["prepare"] == {"stage": "the generator", "epochs_done": 1, "epochs": 2}
    assert not (dirs / "results").exists()  # nothing is published before the backbone has trained
    overrides = ["--set", f"data.max_users={USERS}", "--set", "regen.generator_epochs=2", "--set", "train.epochs=2",
                 "--set", "device=cpu"]
    assert main(["regenerate", "--dataset", "beauty", "--seed", "1", *overrides, "--hours", "1e-9"]) == 0
    assert capsys.readouterr().out.strip() == ("the generator's SASRec stopped at epoch 1 of 2 before the deadline: "
                                               "rerun the same command to resume")
    # the same pipeline as cfg's: its generator resumes at epoch 2, its last, so the set is made
    assert main(["regenerate", "--dataset", "beauty", *overrides, "--hours", "1e-9"]) == 0
    assert json.loads(capsys.readouterr().out)["regenerated"]["n_sequences"] > 0
    done = run_experiment(cfg, publish=True, progress=False)
    assert done["metrics"] is not None and len(done["regen"]["generator_history"]) == 2


def test_ratio_shares_one_pipeline_but_not_one_result_name():
    a, b = tiny("rasr"), tiny("rasr", **{"regen.ratio": 0.5})
    assert regen_run.regen_dir(a) == regen_run.regen_dir(b)
    assert run_name(a) != run_name(b)
    assert regen_run.regen_dir(a) != regen_run.regen_dir(tiny("rasr", **{"regen.window": 3}))
    assert regen_run.regen_dir(a) != regen_run.regen_dir(tiny("dr4sr"))


def test_without_regenerator_the_augmented_variants_are_added(dirs, monkeypatch):
    monkeypatch.setattr(regen_run, "fit_generator", lambda *a, **k: pytest.fail("generator trained"))
    cfg = tiny("rasr", **{"regen.regenerator": False, "regen.semantic_aug": False})
    regenerated, summary = regen_run.run_regeneration(cfg, progress=False)
    assert summary["augmented"]["n_semantic"] == 0
    assert regenerated.n_sequences == summary["augmented"]["n_variants"]
    assert set(regenerated.memory.tolist()) == {1}  # kind index: relational only


def test_rasr_training_data_is_original_plus_regenerated_rows(dirs):
    cfg = tiny("rasr", **{"regen.ratio": 0.5})
    split = leave_one_out(load_dataset("beauty", max_users=USERS), cfg.data.max_len)
    merged, info = regen_run.regenerated_split(cfg, split, progress=False)
    regenerated, _ = regen_run.run_regeneration(cfg, progress=False)
    n_added = int((regenerated.lengths >= 2).sum())
    assert info["n_regenerated"] == round(0.5 * regenerated.n_sequences)
    kept = regen_run.subsample(regenerated, 0.5, seed=cfg.seed)
    assert info["regenerated_sha256"] == kept.digest() != regenerated.digest()
    assert len(merged.train_len) - len(split.train_len) <= n_added
    assert (merged.train_user[len(split.train_len):] == -1).all()
    np.testing.assert_array_equal(merged.train_input[: len(split.train_len)], split.train_input)
    np.testing.assert_array_equal(merged.test_input, split.test_input)
    np.testing.assert_array_equal(merged.valid_target, split.valid_target)


def test_dr4sr_training_data_follows_its_merge(dirs):
    cfg = tiny("dr4sr")
    split = leave_one_out(load_dataset("beauty", max_users=USERS), cfg.data.max_len)
    merged, info = regen_run.regenerated_split(cfg, split, progress=False)
    regenerated, summary = regen_run.run_regeneration(cfg, progress=False)
    n = len(split.train_len)
    n_patterns = summary["n_patterns"]  # every mined pattern has >= 2 items: one row each
    n_regen_rows = int((regenerated.lengths >= 2).sum())
    assert len(merged.train_len) == n + n_patterns + n + n_regen_rows
    np.testing.assert_array_equal(merged.train_input[n + n_patterns : 2 * n + n_patterns], split.train_input)
    assert info["n_training_rows"] == len(merged.train_len)
    assert all(np.isfinite(e["ce"]) for e in summary["generator_history"])


def test_dr4sr_targets_only_hold_items_of_their_truncated_source():
    cfg = tiny("dr4sr", **{"data.max_len": 5})
    src, tgt, _ = regen_run.dr4sr_training_pairs(cfg, load_dataset("beauty", max_users=USERS))
    assert src.lengths.max() <= 5 and tgt.n_rows == src.n_rows > 0
    for r in range(src.n_rows):
        s = set(src.items[src.offsets[r] : src.offsets[r + 1]].tolist())
        assert set(tgt.items[tgt.offsets[r] : tgt.offsets[r + 1]].tolist()) <= s


def test_backbone_on_regenerated_data_records_its_variant(dirs):
    cfg = tiny("rasr")
    result = run_experiment(cfg, publish=True, progress=False)
    assert result["data_variant"] == "rasr"
    assert result["regen"]["n_training_rows"] > result["regen"]["n_original_rows"] == USERS
    published = dirs / "results" / "beauty" / f"{run_name(cfg)}.json"
    assert json.loads(published.read_text())["config"]["regen"]["method"] == "rasr"
    from rasr_lib.report import load_results

    assert load_results(dirs / "results")["data"].tolist() == ["rasr"]


def test_plans_vary_one_thing_per_cell():
    table1 = plan_configs("table1", profile="full")
    assert len(table1) == 12 and len({run_name(c) for _, c in table1}) == 12
    fig5 = dict(plan_configs("fig5", profile="full"))
    assert fig5["window 4"].regen.window == 4 and fig5["window 4"].regen.decay == 0.8
    assert run_name(fig5["window 2"]) == run_name(fig5["decay 0.8"])  # the default cell is shared
    fig3 = dict(plan_configs("fig3"))
    assert fig3["w/o regenerator"].regen.regenerator is False
    with pytest.raises(ValueError, match="unknown plan"):
        plan_configs("fig9")


def test_cli_lists_a_plan_and_rejects_bad_input(capsys):
    from rasr_lib.cli import main

    assert main(["plan", "fig4", "--list", "--profile", "full"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [run_name(c) for _, c in plan_configs("fig4", profile="full")]
    assert [line.split()[2] for line in lines] == expected  # label "ratio 0.25", name, status
    assert all(re.search(r"(committed N@20 0\.\d{4}|interrupted at epoch \d+|checkpoint at epoch \d+|missing)"
                         r"( \(resumable\)|; nearest committed: \S+ \(.+ not .+\))?$", line) for line in lines)
    assert main(["plan", "fig4", "--list", "--profile", "full", "--only", "0.25", "0.75"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["0.25", "0.75"]
    assert main(["plan", "fig4", "--list", "--only", "nothing-like-this"]) == 2
    assert "matches no cell" in capsys.readouterr().err
    assert main(["regenerate", "--set", "regen.ratio=2"]) == 2
    assert "regen.ratio" in capsys.readouterr().err


def test_a_committed_result_is_not_retrained_on_a_fresh_clone(dirs):
    """runs/ is a cache: a published result with the same settings is returned as it is."""
    import shutil

    cfg = load_config("beauty", "quick", {"data.max_users": USERS, "train.epochs": 1, "device": "cpu"})
    run_experiment(cfg, publish=True, progress=False)
    published = dirs / "results" / "beauty" / f"{run_name(cfg)}.json"
    shutil.rmtree(dirs / "runs")  # a fresh clone: results/ committed, runs/ empty
    same = load_config("beauty", "quick", {"data.max_users": USERS, "train.epochs": 1, "device": "cpu",
                                           "eval.batch_size": 64})  # changes no number
    assert run_experiment(same, publish=True, progress=False) == json.loads(published.read_text())
    assert not (dirs / "runs").exists()  # nothing was trained
    # a file whose recorded settings differ is not taken for this run
    data = json.loads(published.read_text())
    data["config"]["train"]["lr"] = 0.5
    published.write_text(json.dumps(data))
    again = run_experiment(cfg, publish=True, progress=False)
    assert (dirs / "runs").exists() and again["config"]["train"]["lr"] == cfg.train.lr
    assert json.loads(published.read_text())["config"]["train"]["lr"] == cfg.train.lr  # republished


def test_cell_status_follows_a_run_from_missing_to_committed(dirs):
    from rasr_lib.experiments.plans import cell_status
    from rasr_lib.experiments.train_run import run_experiment, run_name

    cfg = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 3, "train.patience": 10})
    assert cell_status(cfg) == "missing"
    run_experiment(cfg, publish=True, progress=False, deadline=0.0)  # cut after its first epoch
    assert cell_status(cfg) == "interrupted at epoch 1 (resumable)"
    result = run_experiment(cfg, publish=True, progress=False)
    assert cell_status(cfg) == f"committed N@20 {result['metrics']['test']['ndcg@20']:.4f}"
    # a cell that differs in one setting is missing, and points at the committed run it is nearest to
    other = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 3, "train.patience": 10,
                                            "train.lr": 0.0042})
    assert cell_status(other) == (f"missing; nearest committed: {run_name(cfg)} "
                                  f"(train.lr {cfg.train.lr} not 0.0042)")
    assert cell_status(load_config("beauty", "quick", {"seed": 3})) == "missing"  # no run of seed 3


def test_committed_state_and_coverage_read_results_alone(dirs, capsys):
    from rasr_lib.experiments.plans import committed_state, coverage
    from rasr_lib.experiments.train_run import run_experiment, run_name
    from rasr_lib.report import coverage_summary, plot_coverage

    cfg = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 2, "train.patience": 10})
    assert committed_state(cfg) == ("missing", "")
    run_experiment(cfg, publish=True, progress=False, deadline=0.0)
    assert committed_state(cfg) == ("interrupted", "at epoch 1")
    result = run_experiment(cfg, publish=True, progress=False)
    assert committed_state(cfg) == ("committed", f"N@20 {result['metrics']['test']['ndcg@20']:.4f}")
    # a longer training budget is the same cell under a smaller budget; another lr is not
    longer = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 7, "train.patience": 10})
    assert committed_state(longer) == ("smaller budget", f"{run_name(cfg)}: train.epochs 2 not 7")
    other_lr = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 2, "train.patience": 10,
                                               "train.lr": 0.0042})
    assert committed_state(other_lr)[0] == "missing"
    shorter = load_config("beauty", "quick", {"data.max_users": 200, "train.epochs": 1, "train.patience": 10})
    assert committed_state(shorter)[0] == "missing"  # a run longer than the cell is not the cell either
    # the quick zoo's SASRec differs from this run in its slice and epochs, not only in its budget
    cov = coverage(plans=("zoo", "table1"), datasets=("beauty", "toys"), profile="quick")
    assert set(cov["state"]) == {"missing"} and len(cov) == 2 * (12 + 12)
    cov.loc[0, "state"], cov.loc[1, "state"] = "committed", "smaller budget"
    summary = coverage_summary(cov)
    assert list(summary.index) == ["zoo", "table1"] and list(summary.columns) == ["beauty", "toys"]
    assert summary.loc["zoo", "beauty"] == "1 (+1) / 12" and summary.loc["table1", "toys"] == "0 / 12"
    assert len(plot_coverage(cov).axes) == 2  # the map and its colour bar
    from rasr_lib.cli import main

    assert main(["coverage", "--datasets", "toys", "--plans", "fig3", "--profile", "quick", "--cells"]) == 0
    out = capsys.readouterr().out
    assert "fig3     0 / 4" in out and out.count("missing") == 4 and "w/o regenerator" in out
