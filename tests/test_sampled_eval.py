"""Sampled-protocol evaluation of committed full-ranking runs (SAGERec Tables 3/4)."""

import dataclasses
import json

import pytest

from rasr_lib.config import load_config


def test_rescored_run_equals_a_run_trained_under_the_sampled_protocol(tmp_path, monkeypatch):
    from rasr_lib.experiments.sampled_eval import collect_sampled
    from rasr_lib.experiments.train_run import run_experiment
    from rasr_lib.report_sagerec import load_sagerec_results, select

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    # one epoch: the sampled run keeps the same (only) epoch, so its test numbers must match
    overrides = {"data.max_users": 300, "device": "cpu", "train.epochs": 1}
    full = run_experiment(load_config("beauty", "full", overrides, model="sasrec"), progress=False)
    store = collect_sampled("beauty", progress=False)
    (name, entry), = store["runs"].items()  # a 300-user slice is off the recipe: "-o<hash>" in the name
    assert entry["reproduces_committed"] and entry["best_epoch"] == 1
    for k, v in entry["metrics"]["test"].items():  # a rank among 101 never exceeds the full rank
        assert v >= full["metrics"]["test"][k]
    assert entry["metrics"]["test"]["recall@20"] > full["metrics"]["test"]["recall@20"]

    df = load_sagerec_results(tmp_path / "results")
    rescored = select(df, "beauty", "sasrec", "sampled100", recipe_overrides=True)
    assert len(rescored) == 1 and bool(rescored["rescored"].iloc[0])
    assert rescored["test/ndcg@10"].iloc[0] == entry["metrics"]["test"]["ndcg@10"]
    committed = select(df, "beauty", "sasrec", "full", recipe_overrides=True)
    assert committed["test/ndcg@10"].iloc[0] == full["metrics"]["test"]["ndcg@10"]

    trained = run_experiment(load_config("beauty", "full", {**overrides, "eval.protocol": "sampled100"},
                                         model="sasrec"), progress=False)
    for k, v in trained["metrics"]["test"].items():
        assert entry["metrics"]["test"][k] == pytest.approx(v, abs=1e-12)
    df = load_sagerec_results(tmp_path / "results")
    # the trained run replaces the rescored one
    replaced = select(df, "beauty", "sasrec", "sampled100", recipe_overrides=True)
    assert len(replaced) == 1 and not bool(replaced["rescored"].iloc[0])

    path = tmp_path / "results" / "beauty" / f"{name}.json"
    tampered = json.loads(path.read_text())
    tampered["metrics"]["test"]["ndcg@20"] += 0.01
    path.write_text(json.dumps(tampered))
    assert collect_sampled("beauty", force=True, progress=False)["runs"] == store["runs"]  # kept, not replaced
    with pytest.raises(FileNotFoundError, match="no committed result"):
        collect_sampled("beauty", ["caser-bce-full-seed0"])


def test_unmasked_rescoring_ranks_the_history_too(tmp_path, monkeypatch):
    """Without the mask the user's earlier items compete with the target: no metric can rise."""
    from rasr_lib.evaluation import evaluate
    from rasr_lib.experiments.sampled_eval import collect_sampled
    from rasr_lib.experiments.train_run import load_trained_run, result_checkpoint, run_experiment

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    overrides = {"data.max_users": 300, "device": "cpu", "train.epochs": 2}
    cfg = load_config("beauty", "full", overrides, model="sasrec")
    full = run_experiment(cfg, progress=False)
    store = collect_sampled("beauty", progress=False, protocol="unmasked")
    assert (tmp_path / "results" / "beauty" / "unmasked-eval.json").exists()
    assert not (tmp_path / "results" / "beauty" / "sampled-eval.json").exists()
    (name, entry), = store["runs"].items()
    assert store["protocol"] == "unmasked" and entry["reproduces_committed"]
    for k, v in entry["metrics"]["test"].items():
        assert v <= full["metrics"]["test"][k] + 1e-12, k
    # the same numbers as evaluating the checkpoint with eval.mask_history off by hand
    result = json.loads((tmp_path / "results" / "beauty" / f"{name}.json").read_text())
    model, split, _ = load_trained_run(result, result_checkpoint(name, result, required=True))
    by_hand = evaluate(model, split, "test", dataclasses.replace(cfg.eval, mask_history=False), device="cpu")
    assert entry["metrics"]["test"]["ndcg@20"] == pytest.approx(by_hand["ndcg@20"], abs=1e-12)
    with pytest.raises(ValueError, match="unknown rescoring protocol"):
        collect_sampled("beauty", force=True, progress=False, protocol="sampled50")


def test_unmasked_eval_cli_says_what_is_missing(tmp_path, monkeypatch, capsys):
    from rasr_lib.cli import main

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    (tmp_path / "results" / "toys").mkdir(parents=True)
    assert main(["unmasked-eval", "--dataset", "toys"]) == 0
    assert "nothing to evaluate" in capsys.readouterr().out
    assert main(["unmasked-eval", "--dataset", "toys", "--runs", "sasrec-bce-full-seed0"]) == 2
    assert "no committed result sasrec-bce-full-seed0" in capsys.readouterr().err


def test_plan_rescores_each_finished_cell_while_its_checkpoint_exists(tmp_path, monkeypatch, capsys):
    """``plan --sampled-eval`` writes the same entry ``sampled-eval`` would, right after each cell."""
    from rasr_lib.cli import main
    from rasr_lib.experiments.sampled_eval import collect_sampled

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path / "results"))
    tiny = ["--set", "data.max_users=300", "--set", "device=cpu", "--set", "train.epochs=1"]
    plan = ["plan", "sagerec-table3", "--dataset", "beauty", "--profile", "full", *tiny]
    store_path = tmp_path / "results" / "beauty" / "sampled-eval.json"
    assert main([*plan, "--only", "bpr/full/seed0"]) == 0
    assert not store_path.exists()  # without the flag nothing is rescored
    assert main([*plan, "--only", "bpr/full/seed0", "gru4rec/full/seed0", "gru4rec/sampled100/seed0",
                 "--sampled-eval"]) == 0
    store = json.loads(store_path.read_text())
    names = sorted(store["runs"])  # the trained sampled100 cell is not rescored
    assert [n.split("-")[0] for n in names] == ["bpr", "gru4rec"] and "sampled100" not in "".join(names)
    assert all(e["reproduces_committed"] for e in store["runs"].values())
    by_hand = collect_sampled("beauty", names, force=True, progress=False)
    assert by_hand["runs"] == {n: {**store["runs"][n], "seconds": by_hand["runs"][n]["seconds"]} for n in names}
