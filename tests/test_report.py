"""record/read_records through a real kernel, value coercion, array rejection, results tables."""

from __future__ import annotations

import json
import math

import nbformat
import numpy as np
import pytest
import torch

from rasr_lib import report
from rasr_lib.report import load_results, read_records, record, results_table


@pytest.fixture
def glued(monkeypatch):
    """Capture what record() hands to myst_nb.glue (no kernel needed)."""
    import myst_nb

    calls = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.update({name: (value, display)}))
    return calls


def test_record_round_trips_through_a_real_kernel(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np\nfrom rasr_lib.report import record"),
        nbformat.v4.new_code_cell('record("test/ndcg@10/sasrec", np.float32(0.25))\nrecord("data/n_items", np.int64(12101))'),
        nbformat.v4.new_code_cell('record("example/table", {"users": [1, 2], "name": "beauty", "ok": True})'),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, str(path))
    # Pin the glue format we rely on: display_data + scrapbook metadata + papermill mime prefix.
    out = nb.cells[1].outputs[0]
    assert out["output_type"] == "display_data"
    assert out["metadata"]["scrapbook"] == {"name": "test/ndcg@10/sasrec", "mime_prefix": "application/papermill.record/"}
    assert out["data"] == {"application/papermill.record/text/plain": "0.25"}
    expected = {
        "test/ndcg@10/sasrec": 0.25,
        "data/n_items": 12101,
        "example/table": {"users": [1, 2], "name": "beauty", "ok": True},
    }
    assert read_records(path) == expected
    assert read_records(nb) == expected


def test_record_coerces_numpy_and_torch_scalars(glued):
    record("a", np.float64(0.125))
    record("b", np.int32(7))
    record("c", torch.tensor(3))
    record("d", np.array(2.5))
    record("e", [np.int64(1), np.float32(0.5)])
    record("f", {"k": np.bool_(True)})
    assert glued == {
        "a": (0.125, False), "b": (7, False), "c": (3, False), "d": (2.5, False),
        "e": ([1, 0.5], False), "f": ({"k": True}, False),
    }
    assert type(glued["b"][0]) is int and type(glued["c"][0]) is int and type(glued["f"][0]["k"]) is bool


def test_record_rejects_arrays_with_a_clear_error(glued):
    with pytest.raises(TypeError, match=r"record\('x'\): got an array of shape \(3,\)"):
        record("x", np.arange(3))
    with pytest.raises(TypeError, match=r"shape \(2, 2\)"):
        record("y", torch.zeros(2, 2))
    with pytest.raises(TypeError, match=r"shape \(2,\)"):
        record("z", [np.zeros(2)])
    assert glued == {}


def test_record_rejects_non_literals(glued):
    with pytest.raises(ValueError, match="not a plain Python literal"):
        record("nan", float("nan"))
    with pytest.raises(ValueError, match="not a plain Python literal"):
        record("obj", object())
    with pytest.raises(ValueError, match="non-empty string"):
        record("", 1)
    assert glued == {}


def test_read_records_skips_displayed_non_literal_glue():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 640x480>"},
                               metadata={"scrapbook": {"name": "fig", "mime_prefix": ""}}),
        nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "3"},
                               metadata={"scrapbook": {"name": "n", "mime_prefix": "application/papermill.record/"}}),
    ]
    nb.cells = [cell]
    assert read_records(nb) == {"n": 3}


def _experiment(dataset, model, seed, ndcg20):
    """A results JSON in the schema of rasr_lib.experiments.run_experiment."""
    test = {"recall@10": 0.05, "recall@20": 0.08, "ndcg@10": 0.03, "ndcg@20": ndcg20}
    return {
        "dataset": dataset, "model": model, "loss": "bce", "profile": "full", "seed": seed,
        "protocol": "full ranking, history masked", "device": "cpu", "wall_time_s": 10.0,
        "git_commit": "abc1234", "config": {"train": {"loss": "bce"}}, "best_epoch": 3,
        "metrics": {"valid": dict(test), "test": test},
        "history": [{"epoch": 1, "loss": 0.7, "valid_ndcg@20": 0.01}, {"epoch": 2, "loss": 0.6, "valid_ndcg@20": 0.02}],
    }


def test_load_results_and_results_table(tmp_path):
    (tmp_path / "beauty").mkdir()
    for seed, value in [(0, 0.040), (1, 0.042)]:
        path = tmp_path / "beauty" / f"sasrec-bce-full-seed{seed}.json"
        path.write_text(json.dumps(_experiment("beauty", "sasrec", seed, value)))
    (tmp_path / "beauty" / "02_data-quick.json").write_text(json.dumps(
        {"notebook": "02_data", "dataset": "beauty", "profile": "quick", "records": {"data/beauty/n_users": 22363}}))
    variants = ("sasrec-bce-full-seed0-graph", "sasrec-bce-full-seed0-sg1a2b3c", "sasrec-bce-full-seed0-o1a2b3c")
    for variant in variants:
        (tmp_path / "beauty" / f"{variant}.json").write_text(json.dumps(_experiment("beauty", "sasrec", 0, 0.9)))
    df = load_results(tmp_path)
    assert len(df) == 6
    runs = df[(df["kind"] == "experiment") & (df["test/ndcg@20"] < 0.5)]
    assert list(runs["test/ndcg@20"]) == [0.040, 0.042]
    assert list(runs["n_epochs"]) == [2, 2]
    table = results_table(df)
    ours = table[table["source"].str.startswith("ours")]
    assert len(ours) == 1
    assert ours.iloc[0]["seeds"] == 2
    assert ours.iloc[0]["ndcg@20"] == pytest.approx(0.041)
    paper = table[table["source"] == "RaSR Table 1 (original data)"]
    assert paper.iloc[0]["recall@10"] == 0.0648
    comparison = report.paper_comparison(df)
    assert comparison["ratio"].round(4).tolist() == [round(0.041 / 0.0423, 4), round(0.041 / 0.0368, 4)]
    records = report.load_notebook_records(tmp_path)
    assert records.to_dict("records") == [
        {"dataset": "beauty", "profile": "quick", "notebook": "02_data", "name": "data/beauty/n_users", "value": 22363}]
    spread = report.seed_spread(df, "ndcg@20").iloc[0]  # two seeds .040 and .042; variants left out
    assert spread["seeds"] == 2 and spread["mean"] == pytest.approx(0.041)
    assert spread["std"] == pytest.approx(0.002 / 2 ** 0.5) and spread["cv %"] == pytest.approx(100 * 0.002 / 2 ** 0.5 / 0.041)
    assert report.seed_spread(df[df["seed"] == 0], "ndcg@20").empty  # one seed: no spread


def test_a_run_resumed_under_older_code_reports_at_least_its_training_time(tmp_path):
    (tmp_path / "toys").mkdir()
    for name, wall, trained in [("sasrec", 593.5, 5571.7), ("gru4rec", 120.0, 100.0), ("caser", 50.0, None)]:
        data = {**_experiment("toys", name, 0, 0.02), "wall_time_s": wall, "train_seconds": trained}
        (tmp_path / "toys" / f"{name}-bce-full-seed0.json").write_text(json.dumps(data))
    walls = load_results(tmp_path).set_index("model")["wall_time_s"]
    assert walls.to_dict() == {"sasrec": 5571.7, "gru4rec": 120.0, "caser": 50.0}


def test_capped_runs_are_the_finished_runs_that_never_stopped_early(tmp_path):
    (tmp_path / "toys").mkdir()
    climbing = [{"epoch": e, "valid_ndcg@20": 0.001 * e} for e in range(1, 31)]
    runs = {"bpr-bce-full-seed0": {"stopped_early": False, "interrupted": False, "best_epoch": 30},
            "sasrec-bce-full-seed0": {"stopped_early": True, "interrupted": False, "best_epoch": 8},
            "caser-bce-full-seed0": {"stopped_early": False, "interrupted": True, "best_epoch": 30}}
    for name, flags in runs.items():
        data = {**_experiment("toys", name.split("-")[0], 0, 0.02), **flags, "history": climbing}
        data["config"] = {"train": {"loss": "bce", "epochs": 30}}
        (tmp_path / "toys" / f"{name}.json").write_text(json.dumps(data))
    capped = report.capped_runs(load_results(tmp_path), window=20, results_dir=tmp_path)
    assert capped[["model", "epochs", "best_epoch"]].values.tolist() == [["bpr", 30, 30]]
    assert capped["gain"].iloc[0] == pytest.approx(0.020)  # epoch 30 against epoch 10


def test_load_results_on_an_empty_folder(tmp_path):
    df = load_results(tmp_path)
    assert len(df) == 0
    assert "test/ndcg@20" in df.columns
    table = results_table(df)
    assert set(table["source"]) == {"RaSR Table 1 (original data)", "DR4SR Table 3 (original data)",
                                    "RaSR Table 1 'GCE-GNN' row (original data)"}
    assert set(table["model"]) == {"sasrec", "gru4rec", "fmlprec", "gcegnn", "cl4srec", "dr4sr_gnn"}


def test_load_results_names_a_broken_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_results(tmp_path)


def test_paper_references_are_the_papers_numbers():
    refs = report.PAPER_REFERENCES["beauty"]
    assert refs["sasrec"]["RaSR Table 1 (original data)"] == {
        "recall@10": 0.0648, "recall@20": 0.0966, "ndcg@10": 0.0343, "ndcg@20": 0.0423}
    assert refs["gru4rec"]["DR4SR Table 3 (original data)"] == {
        "recall@10": 0.0204, "recall@20": 0.0382, "ndcg@10": 0.0107, "ndcg@20": 0.0150}
    assert all(not math.isnan(v) for ds in report.PAPER_REFERENCES.values() for m in ds.values()
               for s in m.values() for v in s.values())


def test_profile_banner_names_the_profile():
    assert report.profile_banner("quick").startswith("**Profile `quick`**")
    from rasr_lib.config import PROFILES

    assert f"data.max_users={PROFILES['quick']['data.max_users']}" in report.profile_banner("quick")
    with pytest.raises(ValueError, match="unknown profile"):
        report.profile_banner("nope")


def test_model_benchmark_reads_bench_models_output(tmp_path):
    rows = [{"model": "sasrec", "epoch_s": 8.0, "n_parameters": 10, "peak_memory_mib": 500.0, "machine": "cpu"},
            {"model": "bpr", "epoch_s": 2.0, "n_parameters": 20, "peak_memory_mib": 400.0, "machine": "cpu"},
            {"model": "s3rec", "epoch_s": 9.0, "pretrain_epoch_s": 480.0, "n_parameters": 30, "machine": "cpu"},
            {"model": "sine", "error": "RuntimeError: out of memory"}]
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "bench-models-cpu.json").write_text(json.dumps({"benchmark": "bench_models", "rows": rows}))
    table = report.model_benchmark("beauty", tmp_path)
    assert table["model"].tolist() == ["bpr", "sasrec", "s3rec"]  # fastest first; the failed model is left out
    assert table["x SASRec"].tolist() == [0.25, 1.0, 1.125]
    assert table["pre-train s/epoch"].fillna(-1).tolist() == [-1, -1, 480.0]
    assert report.model_benchmark("toys", tmp_path).empty


def test_kernel_benchmark_reads_bench_kernels_output(tmp_path):
    run = {"benchmark": "bench_kernels", "device": "cpu", "threads": 1, "git_commit": "abc1234",
           "rows": [{"kernel": "dropout 0.5", "case": "x", "stock": "nn.Dropout", "ours": "UniformDropout",
                     "stock_s": 0.02, "ours_s": 0.008, "speedup": 2.5}]}
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "bench-kernels-cpu.json").write_text(json.dumps(run))
    table = report.kernel_benchmark("beauty", tmp_path)
    assert table[["kernel", "speed-up", "device", "commit"]].values.tolist() == [
        ["dropout 0.5", 2.5, "cpu (1 thread(s))", "abc1234"]]
    assert report.kernel_benchmark("toys", tmp_path).empty
    committed = report.kernel_benchmark("beauty")  # the committed file: every row timed both ways
    assert len(committed) == 3 and (committed["stock s"] > 0).all() and (committed["ours s"] > 0).all()


def test_paper_gaps_flags_only_gaps_beyond_the_threshold(tmp_path):
    (tmp_path / "beauty").mkdir()
    dr4sr = "DR4SR Table 3 (original data)"

    def write(model, scale):
        run = _experiment("beauty", model, 0, 0.0)
        paper = report.PAPER_REFERENCES["beauty"][model][dr4sr]
        run["metrics"]["test"] = {m: scale * v for m, v in paper.items()}
        (tmp_path / "beauty" / f"{model}-bce-full-seed0.json").write_text(json.dumps(run))

    write("sasrec", 1.10)  # +10 % over DR4SR's row and 3.5-6.7 % under RaSR's: no gap
    assert report.paper_gaps(load_results(tmp_path)).empty
    write("gru4rec", 2.0)  # twice DR4SR's row: +100 % on every metric
    gaps = report.paper_gaps(load_results(tmp_path))
    assert set(gaps["model"]) == {"gru4rec"}
    gru = gaps[gaps["paper"] == dr4sr].iloc[0]
    assert gru["gap"] == pytest.approx(1.0)
    assert gru["note"] == ""  # nobody explained this invented run
    rasr = gaps[gaps["paper"] == "RaSR Table 1 (original data)"].iloc[0]
    assert rasr["metric"] == "ndcg@10" and rasr["gap"] == pytest.approx(2 * 0.0107 / 0.0127 - 1)
    assert report.paper_gaps(load_results(tmp_path), threshold=10.0).empty


def test_every_committed_gap_to_a_paper_has_a_note():
    from rasr_lib.runtime import REPO_ROOT

    df = load_results(REPO_ROOT / "results")
    full = df[(df["kind"] == "experiment") & (df["profile"] == "full")]
    gaps = report.paper_gaps(full)
    missing = gaps[gaps["note"] == ""]
    assert missing.empty, (
        "results differ from a paper by more than 15 % with no PAPER_GAP_NOTES entry: "
        + "; ".join(f"{r.dataset} {r.model} {r.loss} vs {r.paper} ({r.metric} {100 * r.gap:+.0f} %)"
                    for r in missing.itertuples()))


def test_full_run_table_puts_this_page_beside_the_committed_full_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RECORDED", {"graph/n_items": 2795, "graph/share": 0.25, "only/here": True})
    assert report.full_run_table("04_rasr_graphs", "beauty", tmp_path).empty
    assert "No full-profile run" in report.full_run_caption("04_rasr_graphs", "beauty", tmp_path)
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "04_rasr_graphs-full.json").write_text(json.dumps({
        "notebook": "04_rasr_graphs", "profile": "full", "git_commit": "abc1234", "wall_time_s": 9.6,
        "device": "cpu", "records": {"graph/n_items": 12101, "graph/share": 0.5, "only/there": 3}}))
    table = report.full_run_table("04_rasr_graphs", "beauty", tmp_path)
    assert table.index.tolist() == ["graph/n_items", "graph/share", "only/here", "only/there"]
    assert table["this page"].tolist() == [2795, 0.25, True, None]
    assert table["full run"].tolist() == [12101, 0.5, None, 3]
    assert isinstance(table.loc["graph/n_items", "full run"], int)  # counts are not turned into floats
    caption = report.full_run_caption("04_rasr_graphs", "beauty", tmp_path)
    assert "commit `abc1234`, 10 s on cpu" in caption and "--only 04_rasr_graphs" in caption
    assert report.full_run_table("04_rasr_graphs", "toys", tmp_path).empty
    # another dataset's full run of the same page comes as one more column
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "04_rasr_graphs-full.json").write_text(json.dumps({
        "notebook": "04_rasr_graphs", "profile": "full", "records": {"graph/n_items": 3416}}))
    table = report.full_run_table("04_rasr_graphs", "beauty", tmp_path)
    assert table.columns.tolist() == ["this page", "full run", "ml-1m full run"]
    assert table["ml-1m full run"].tolist() == [3416, None, None, None]
    assert report.full_run_caption("04_rasr_graphs", "beauty", tmp_path).endswith("full runs on ml-1m.")
    # a run made with --param names it in the command that remakes it
    (tmp_path / "beauty" / "06_rasr_regeneration-full.json").write_text(json.dumps({
        "notebook": "06_rasr_regeneration", "profile": "full", "wall_time_s": 60, "device": "cpu", "records": {},
        "parameters": {"DATASET": "beauty", "PROFILE": "full", "SEED": 0, "FULL_GENERATOR_EPOCHS": 5}}))
    assert "--only 06_rasr_regeneration --param FULL_GENERATOR_EPOCHS=5`" in report.full_run_caption(
        "06_rasr_regeneration", "beauty", tmp_path)


def test_record_remembers_what_this_process_recorded(monkeypatch):
    pytest.importorskip("myst_nb")
    monkeypatch.setattr(report, "RECORDED", {})
    record("a/b", np.int64(3))
    assert report.RECORDED == {"a/b": 3} and type(report.RECORDED["a/b"]) is int


def test_a_gap_note_that_cites_unmasked_eval_quotes_its_numbers():
    """A note citing ``unmasked-eval`` gives that file's test metrics, to 4 decimals, for the run it names."""
    from rasr_lib.runtime import REPO_ROOT

    cited = {key: note for key, note in report.PAPER_GAP_NOTES.items() if "unmasked-eval" in note}
    assert cited  # the ML-1M SASRec note
    for (dataset, _, _, _), note in cited.items():
        store = json.loads((REPO_ROOT / "results" / dataset / "unmasked-eval.json").read_text())
        run = next(name for name in store["runs"] if name in note)
        test = store["runs"][run]["metrics"]["test"]
        for metric in ("recall@10", "ndcg@10", "ndcg@20"):
            assert f"{test[metric]:.4f}"[1:] in note, (dataset, run, metric)
