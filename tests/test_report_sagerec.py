"""Chapter 10's readers: SAGERec Tables 3-5, t-tests, claims and coverage from synthetic result files."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rasr_lib import report_sagerec as rs
from rasr_lib.config import SageRecConfig
from rasr_lib.report import load_results

PROTOCOL_LABELS = {"full": "full ranking, history masked",
                   "sampled100": "1+100 sampled negatives, history excluded"}

# N@10 per seed 0..4 (hand-picked): SAGERec beats SASRec on every seed, GRU4Rec is far behind.
SAGE = [0.030, 0.032, 0.031, 0.033, 0.034]
SAS = [0.029, 0.030, 0.030, 0.031, 0.031]
GRU = [0.010, 0.011, 0.012, 0.011, 0.010]


def _write_run(root, *, model="sagerec", seed=0, protocol="full", ndcg10=0.03, dataset="beauty",
               profile="full", loss="bce", n_edges=None, name=None, graph_module=False, interrupted=False,
               **sagerec):
    """One results JSON in run_experiment's layout (R@10 = 2 N@10, N@20 = 1.25 N@10, R@20 = 3 N@10)."""
    test = {"recall@10": 2 * ndcg10, "ndcg@10": ndcg10, "recall@20": 3 * ndcg10, "ndcg@20": 1.25 * ndcg10}
    config = {"data": {"dataset": dataset, "max_len": 50, "max_users": 0}, "model": {"name": model},
              "train": {"loss": loss}, "eval": {"protocol": protocol}, "seed": seed, "profile": profile}
    if graph_module:  # SAGERec §5.6: the backbone with the semantic graph module
        config["model"]["semantic_graph"] = True
    if model == "sagerec" or graph_module:
        config["sagerec"] = {**dataclasses.asdict(SageRecConfig()), **sagerec}
    run = {"dataset": dataset, "model": model, "loss": loss, "profile": profile, "seed": seed,
           "protocol": PROTOCOL_LABELS[protocol], "device": "cpu", "wall_time_s": 10.0,
           "train_seconds": 40.0, "epochs_run": 8, "n_parameters": 1234, "config": config,
           "best_epoch": 3, "metrics": {"valid": test, "test": test}, "history": [], "interrupted": interrupted}
    if n_edges:
        run["graph"] = {"n_nodes": 100, "n_edges": n_edges}
    if model in ("sagerec", "sasrec") and protocol == "full":  # §5.8 block: cold N@10 = N@10 / 2
        run["cold_start"] = {"n_users": 7, "recall@10": ndcg10, "ndcg@10": ndcg10 / 2}
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or (f"{model}-{loss}-{profile}-{protocol}-seed{seed}{'-graph' if graph_module else ''}"
                    f"-{abs(hash(json.dumps(sagerec))) % 10**6}")
    (folder / f"{stem}.json").write_text(json.dumps(run))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for seed in range(5):
        _write_run(root, seed=seed, ndcg10=SAGE[seed], n_edges=300)
        _write_run(root, model="sasrec", seed=seed, ndcg10=SAS[seed])
        _write_run(root, model="gru4rec", seed=seed, ndcg10=GRU[seed])
    # must be ignored by Table 3: other protocol, profile, loss, dataset, an ablation
    _write_run(root, seed=0, protocol="sampled100", ndcg10=0.2)
    _write_run(root, seed=0, profile="quick", ndcg10=0.9)
    _write_run(root, model="sasrec", seed=0, loss="ce", ndcg10=0.9)
    _write_run(root, seed=0, dataset="toys", ndcg10=0.9)
    _write_run(root, seed=0, ndcg10=0.020, graph="random")
    _write_run(root, seed=0, ndcg10=0.025, edge_learning=False)
    _write_run(root, seed=1, ndcg10=0.028, edge_learning=False)
    _write_run(root, seed=0, ndcg10=0.028, position=False)
    _write_run(root, model="gru4rec", seed=0, ndcg10=0.013, graph_module=True)  # §5.6, not Table 3
    _write_run(root, seed=0, ndcg10=0.9, name="sagerec-bce-full-seed0-o343228")  # a --set run, no cell
    return root


def test_table3_means_std_and_paired_ttest(results):
    df = rs.load_sagerec_results(results)
    t = rs.table3(df, "beauty", "full").set_index("model")
    assert t.loc["sagerec", "ndcg@10"] == pytest.approx(0.032)  # (30+32+31+33+34)/5 e-3
    assert t.loc["sasrec", "ndcg@10"] == pytest.approx(0.0302)
    assert t.loc["sagerec", "ndcg@10 std"] == pytest.approx(math.sqrt(0.00001 / 4))  # sum sq dev 1e-5
    assert t.loc["sagerec", "recall@10"] == pytest.approx(0.064)
    assert t.loc["sagerec", "seeds"] == 5
    assert (t.loc[["sagerec", "sasrec", "gru4rec"], "status"] == "ok").all()
    assert (t.drop(index=["sagerec", "sasrec", "gru4rec"])["status"] == rs.NOT_RUN).all()  # zoo rows wait
    assert t.loc["sagerec", "vs ndcg@10"] == "sasrec"
    # differences 1,2,1,2,3 (e-3): mean 1.8, sd sqrt(0.7), t = 1.8 / (sqrt(0.7) / sqrt(5))
    t_hand = 1.8 / (math.sqrt(0.7) / math.sqrt(5))
    sig = rs.significance(df, "beauty", "full", ["ndcg@10"]).iloc[0]
    assert sig["t"] == pytest.approx(t_hand)
    from scipy import stats
    assert sig["p"] == pytest.approx(2 * stats.t.sf(t_hand, df=4))
    assert 0.005 < sig["p"] < 0.01 and bool(sig["significant"])
    assert t.loc["sagerec", "p ndcg@10"] == pytest.approx(sig["p"])
    assert t.loc["sagerec", "paper gain ndcg@10"] == 3.2
    assert sig["gain_pct"] == pytest.approx(100 * (0.032 / 0.0302 - 1))
    t4 = rs.table4(df, "beauty", "full").set_index("model")
    assert t4.loc["gru4rec", "ndcg@20"] == pytest.approx(1.25 * np.mean(GRU))


def test_significance_text_gives_each_verdict(results):
    df = rs.load_sagerec_results(results)
    text = rs.significance_text(df, "beauty", ["ndcg@10"])
    assert text.splitlines()[0] == "- **full ranking**:" and text.splitlines()[2].startswith("- **1 + 100")
    full, sampled = text.splitlines()[1::2]
    # SAGERec above SASRec on every seed: p in (0.005, 0.01), see the table test above
    assert full.startswith("  - N@10: +6.0 % vs SASRec over 5 paired seeds, p = 0.00")
    assert full.endswith(": significantly above.")
    assert sampled.endswith(f"N@10: {rs.NOT_RUN}.")  # no sampled-protocol baseline run
    _write_run(results, model="sasrec", seed=0, protocol="sampled100", ndcg10=0.25)
    sampled = rs.significance_text(rs.load_sagerec_results(results), "beauty", ["ndcg@10"]).splitlines()[3]
    assert sampled == "  - N@10: -20.0 % vs SASRec, not testable (1 paired seed)."
    for seed, value in enumerate(SAGE):  # now SAGERec loses on every seed
        _write_run(results, model="cl4srec", seed=seed, ndcg10=2 * value)
    full = rs.significance_text(rs.load_sagerec_results(results), "beauty", ["ndcg@10"]).splitlines()[1]
    assert "-50.0 % vs CL4SRec over 5 paired seeds" in full and full.endswith(": significantly below.")
    for seed, (value, noise) in enumerate(zip(SAGE, [0.002, -0.002, 0.001, -0.001, 0.0005])):
        _write_run(results, model="cl4srec", seed=seed, ndcg10=value + noise)  # a tie within noise
    full = rs.significance_text(rs.load_sagerec_results(results), "beauty", ["ndcg@10"]).splitlines()[1]
    assert "vs CL4SRec over 5 paired seeds" in full and full.endswith(": not significant at p < 0.01.")
    # the strongest baseline has one seed: the strongest one with paired seeds is tested too
    _write_run(results, model="dssrec", seed=0, ndcg10=0.1, loss="ce")  # its own recipe
    full = rs.significance_text(rs.load_sagerec_results(results), "beauty", ["ndcg@10"]).splitlines()[1]
    assert full.startswith("  - N@10: -68.0 % vs DSSRec, not testable (1 paired seed); ")
    assert full.endswith("vs CL4SRec over 5 paired seeds, p = " + full.split("p = ")[1].split(":")[0]
                         + ": not significant at p < 0.01 (the strongest baseline with paired seeds).")
    # two paired seeds: the verdict says how little such a test can tell
    _write_run(results, model="dssrec", seed=1, ndcg10=0.05, loss="ce")  # gaps .070 and .018: p = .34
    full = rs.significance_text(rs.load_sagerec_results(results), "beauty", ["ndcg@10"]).splitlines()[1]
    assert "vs DSSRec over 2 paired seeds, p = 0.34" in full
    assert full.endswith("not significant at p < 0.01 (two seeds give the test one degree of freedom).")


def test_runs_cut_short_stay_out_of_the_means_and_tests(results):
    _write_run(results, model="sasrec", seed=5, ndcg10=0.001, interrupted=True)  # an unfinished sixth seed
    _write_run(results, seed=5, ndcg10=0.5, interrupted=True)
    df = rs.load_sagerec_results(results)
    t = rs.table3(df, "beauty", "full").set_index("model")
    assert t.loc["sasrec", "seeds"] == 5 and t.loc["sasrec", "ndcg@10"] == pytest.approx(np.mean(SAS))
    assert t.loc["sagerec", "seeds"] == 5 and t.loc["sagerec", "ndcg@10"] == pytest.approx(np.mean(SAGE))
    assert rs.significance(df, "beauty", "full", ["ndcg@10"]).iloc[0]["n_pairs"] == 5
    assert len(rs.select(df, "beauty", "sasrec")) == 6  # still listed where a table shows it as cut


def test_ttest_needs_matched_seeds():
    import pandas as pd

    a = pd.Series([0.3, 0.4, 0.5], index=[0, 1, 2])
    b = pd.Series([0.1, 0.3], index=[1, 7])
    one = rs.paired_ttest(a, b)  # only seed 1 in common
    assert one["n_pairs"] == 1 and math.isnan(one["t"]) and math.isnan(one["p"])
    got = rs.paired_ttest(a, pd.Series([0.2, 0.3, 0.2], index=[2, 0, 1]))
    assert got["n_pairs"] == 3  # aligned by seed, not position: diffs 0.0, 0.2, 0.3
    d = np.array([0.0, 0.2, 0.3])
    assert got["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(3)))


def test_sampled_protocol_is_its_own_table(results):
    df = rs.load_sagerec_results(results)
    t = rs.table3(df, "beauty", "sampled100").set_index("model")
    assert t.loc["sagerec", "ndcg@10"] == pytest.approx(0.2) and t.loc["sagerec", "seeds"] == 1
    assert math.isnan(t.loc["sagerec", "ndcg@10 std"])
    assert t.loc["sasrec", "status"] == rs.NOT_RUN and math.isnan(t.loc["sasrec", "ndcg@10"])
    assert math.isnan(t.loc["sagerec", "p ndcg@10"])  # no baseline under this protocol
    assert rs.mean_std_text(t.reset_index(), "ndcg@10").tolist() == ["0.2000"] + [rs.NOT_RUN] * (len(rs.MODELS) - 1)


def test_plain_load_results_frame_reads_protocol_from_label(results):
    t = rs.table3(load_results(results), "beauty", "sampled100").set_index("model")
    assert t.loc["sagerec", "seeds"] == 1  # protocol parsed from "1+100 sampled ..."


def test_table5_variants_and_order(results):
    df = rs.load_sagerec_results(results)
    t5 = rs.table5(df, "beauty").set_index("variant")
    assert t5.loc["A full", "ndcg@20"] == pytest.approx(1.25 * 0.032)
    assert t5.loc["B w/o edge learning", "ndcg@20"] == pytest.approx(1.25 * 0.0265)
    assert t5.loc["B w/o edge learning", "seeds"] == 2
    # B's seeds 0, 1 paired with A's (30, 32 e-3): differences -5e-3, -4e-3 (x 1.25), one degree of freedom
    expected = stats.ttest_rel([0.025, 0.028], [0.030, 0.032]).pvalue
    assert t5.loc["B w/o edge learning", "pairs vs A"] == 2
    assert t5.loc["B w/o edge learning", "p vs A ndcg@20"] == pytest.approx(expected)
    assert t5.loc["D random graph", "pairs vs A"] == 1 and math.isnan(t5.loc["D random graph", "p vs A ndcg@20"])
    assert math.isnan(t5.loc["A full", "p vs A ndcg@20"])
    assert t5.loc["C w/o graph", "status"] == rs.NOT_RUN
    assert t5.loc["D random graph", "vs A ndcg@20"] == pytest.approx(0.020 / 0.032 - 1)
    got = rs.table5_claims(t5.reset_index())
    assert got["best"] == "A full" and got["worst"] == "D random graph"
    assert got["a_best"] is None  # C is missing: no verdict yet
    # A: N@20 = 1.25 x (30, 32, 31, 33, 34)e-3 (mean .040, std 1.98e-3), so +-9.9 % of A is seed noise:
    # D (-37.5 %) and E (-12.5 %) lie beyond it; B (two seeds) gets its paired test instead
    sd = 1.25 * float(np.std([0.030, 0.032, 0.031, 0.033, 0.034], ddof=1))
    assert t5.loc["A full", "ndcg@20 std"] == pytest.approx(sd)
    assert math.isnan(t5.loc["D random graph", "ndcg@20 std"])
    text = rs.table5_noise(t5.reset_index())
    assert f"N@20 std {sd:.4f}" in text and "±10 % of A" in text and "from it: none is." in text
    assert text.endswith(f"B w/o edge learning -17 % (its 2 seeds paired with A's, p = {expected:.2g}).")
    near = t5.reset_index().assign(**{"ndcg@20": [0.040, 0.037, math.nan, 0.039, 0.041]})
    assert "is not distinguishable from it: D random graph, E w/o position. Paired" in rs.table5_noise(near)
    assert "not measured" in rs.table5_noise(t5.reset_index().assign(**{"ndcg@20 std": math.nan}))


def test_claims_compare_with_the_best_baseline_present(results):
    df = rs.load_sagerec_results(results)
    c = rs.claims(df)
    row = c[(c["dataset"] == "beauty") & (c["protocol"] == "full") & (c["metric"] == "ndcg@10")].iloc[0]
    assert row["our_vs"] == "sasrec" and row["paper_gain_pct"] == 3.2 and row["holds"] is True
    assert row["our_gain_pct"] == pytest.approx(100 * (0.032 / 0.0302 - 1))
    assert "CL4SRec" in row["note"]
    ml = c[c["dataset"] == "ml-1m"]
    assert len(ml) == 8 and (ml["status"] == rs.NOT_RUN).all() and ml["holds"].isna().all()
    text = rs.claim_sentences(c)
    assert "paper +3.2 %, ours +6.0 % vs SASRec" in text and rs.NOT_RUN in text


def test_everything_handles_no_results(tmp_path):
    df = rs.load_sagerec_results(tmp_path)
    assert df.empty
    t = rs.table3(df, "beauty", "full")
    assert (t["status"] == rs.NOT_RUN).all() and t["ndcg@10"].isna().all()
    assert (rs.table5(df, "toys")["status"] == rs.NOT_RUN).all()
    assert (rs.claims(df)["status"] == rs.NOT_RUN).all()
    cov = rs.plan_coverage(df, "beauty")
    from rasr_lib.experiments.plans import plan_configs

    n_cells = sum(len(plan_configs(p)) for p in ("sagerec-table3", "sagerec-table5", "sagerec-encoder"))
    assert len(cov) == n_cells == len(rs.MODELS) * 10 + 5 + len(plan_configs("sagerec-encoder"))
    assert not cov["committed"].any()
    assert rs.encoder_table(df, "beauty")["ndcg@10"].isna().all()
    assert rs.efficiency(df, "beauty").empty
    rs.plot_table3(df, "beauty")
    rs.plot_table5(df, "beauty")


def test_coverage_and_efficiency(results):
    df = rs.load_sagerec_results(results)
    cov = rs.plan_coverage(df, "beauty").set_index("cell")
    assert cov.loc["sagerec/full/seed4", "committed"] and not cov.loc["sasrec/sampled100/seed0", "committed"]
    assert cov.loc["D random graph", "committed"] and not cov.loc["C w/o graph", "committed"]
    assert f"sagerec-table3**: 16 of {len(rs.MODELS) * 10} committed" in rs.missing_text(cov.reset_index())
    eff = rs.efficiency(df, "beauty")
    full = eff[eff["graph/n_edges"] == 300]
    assert len(full) == 5 and full["s_per_epoch"].tolist() == [5.0] * 5


def test_encoder_table_pairs_backbone_with_its_graph_version(results):
    df = rs.load_sagerec_results(results)
    t3 = rs.table3(df, "beauty", "full").set_index("model")
    assert t3.loc["gru4rec", "ndcg@10"] == pytest.approx(np.mean(GRU))  # the +graph run stays out
    enc = rs.encoder_table(df, "beauty").set_index("model")
    # GRU4Rec has seeds 0-4, its +graph twin seed 0 only: both sides are read on seed 0
    assert enc.loc["gru4rec", "paired seeds"] == 1
    assert enc.loc["gru4rec", "ndcg@10"] == pytest.approx(GRU[0])
    assert enc.loc["gru4rec", "ndcg@10 +graph"] == pytest.approx(0.013)
    assert enc.loc["gru4rec", "ndcg@10 gain %"] == pytest.approx(100 * (0.013 / GRU[0] - 1))
    assert enc.loc["gru4rec", "n_runs"] == 6
    gain = 100 * (0.013 / GRU[0] - 1)
    assert f"GRU4Rec {gain:+.1f} %" in rs.encoder_text(enc.reset_index(), "beauty")
    assert rs.NOT_RUN in rs.encoder_text(enc.reset_index().iloc[0:0], "beauty")
    cov = rs.plan_coverage(df, "beauty").set_index("cell")
    assert cov.loc["gru4rec+graph", "committed"] and cov.loc["gru4rec", "committed"]
    _write_run(results, model="gru4rec", seed=1, ndcg10=0.02, graph_module=True)  # a second pair
    enc = rs.encoder_table(rs.load_sagerec_results(results), "beauty").set_index("model")
    assert enc.loc["gru4rec", "paired seeds"] == 2
    assert enc.loc["gru4rec", "ndcg@10"] == pytest.approx(np.mean(GRU[:2]))
    assert enc.loc["gru4rec", "ndcg@10 +graph"] == pytest.approx(np.mean([0.013, 0.02]))


def test_cold_start_table_reads_the_cold_block(results):
    df = rs.load_sagerec_results(results)
    cold = rs.cold_start_table(df, "beauty").set_index("model")
    assert cold.loc["sagerec", "ndcg@10"] == pytest.approx(np.mean(SAGE) / 2)
    assert cold.loc["sasrec", "ndcg@10"] == pytest.approx(np.mean(SAS) / 2)
    assert cold.loc["sagerec", "n_runs"] == 5 and cold.loc["sagerec", "cold users"] == 7
    assert cold.loc["gru4rec", "n_runs"] == 0 and np.isnan(cold.loc["gru4rec", "ndcg@10"])
    assert cold.loc["sagerec", "paper N@10"] == rs.PAPER_COLD_START_NDCG10["sagerec"]


def test_table6_reads_benchmark_files_and_ratios_within_one_file(tmp_path):
    rows = [{"model": "sasrec", "epoch_s": 10.0, "n_parameters": 100, "peak_memory_mib": 400.0, "graph": None},
            {"model": "sagerec", "epoch_s": 27.0, "n_parameters": 90, "peak_memory_mib": 450.0,
             "graph": {"n_nodes": 12, "n_edges": 30}},
            {"model": "bpr", "epoch_s": 3.0, "n_parameters": 5, "peak_memory_mib": 1.0, "graph": None},
            {"model": "sine", "error": "ValueError: broken"}]
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "bench-models-cpu.json").write_text(json.dumps({"benchmark": "bench_models",
                                                                          "rows": rows}))
    t6 = rs.table6("beauty", tmp_path).set_index("model")
    assert list(t6.index) == ["sagerec", "sasrec"]  # bpr is not a Table 6 model, sine failed
    assert t6.loc["sagerec", "x SASRec"] == pytest.approx(2.7)
    assert t6.loc["sagerec", "graph edges"] == 30 and np.isnan(t6.loc["sasrec", "graph edges"])
    assert rs.table6("toys", tmp_path).empty
    df = load_results(tmp_path)
    assert df["kind"].tolist() == ["benchmark"]  # never mistaken for a training run


def test_schedule_table_groups_sagerec_runs_by_training_recipe(tmp_path):
    root = tmp_path / "results"
    cases = [("sagerec-bce-full-seed0", {}, 5, 1e-5, 0.016), ("sagerec-bce-full-seed0-o343228", {}, 0, 1e-5, 0.030),
             ("sagerec-bce-full-seed0-sg8a7028", {"graph": "none"}, 5, 1e-5, 0.010),
             ("sagerec-bce-full-seed0-sg8a7028-ocae3dd", {"graph": "none"}, 0, 0.0, 0.025)]
    for stem, sagerec, patience, l2, value in cases:
        _write_run(root, seed=0, ndcg10=value, name=stem, **sagerec)
        path = root / "beauty" / f"{stem}.json"
        run = json.loads(path.read_text())
        run["config"]["train"].update(lr_decay_patience=patience, lr_decay_factor=0.1, lr_decay_on="loss",
                                      emb_l2=l2)
        run["interrupted"] = stem.endswith("-o343228")  # one run cut at the time budget
        run["history"] = [{"epoch": e, "valid_ndcg@10": value * e / 3,
                           "lr": 1e-3 if patience == 0 else 10.0 ** -(2 + e)} for e in (1, 2, 3)]
        path.write_text(json.dumps(run))
    _write_run(root, seed=0, ndcg10=0.5, edge_learning=False)  # ablation B: no recipe row
    df = rs.load_sagerec_results(root)
    table = rs.schedule_table(df, "beauty")
    paper = "lr x0.1 after 5 epochs without a lower validation loss, L2 1e-05"
    assert table[["variant", "schedule"]].values.tolist() == [
        ["A full", "constant lr, L2 1e-05"], ["A full", paper],
        ["C w/o graph", "constant lr, no L2"], ["C w/o graph", paper]]
    assert table["ndcg@10"].tolist() == pytest.approx([0.030, 0.016, 0.025, 0.010])
    assert rs.schedule_table(load_results(root), "beauty").empty  # a plain frame has no train/ columns
    text = rs.schedule_text(table, "beauty")
    assert f"A full, constant lr, L2 1e-05: **{100 * (0.030 / 0.016 - 1):+.1f} %**" in text
    assert f"C w/o graph, constant lr, no L2: **{100 * (0.025 / 0.010 - 1):+.1f} %**" in text
    assert table["interrupted"].tolist() == [True, False, False, False]
    # A vs C only where both ran to the end under one recipe: the paper's (0.016 vs 0.010)
    assert f"{paper}: **{100 * (0.016 / 0.010 - 1):+.1f} %**" in text and text.count("A against C") == 1
    assert text.count("cut short") == 1
    assert "not run yet" in rs.schedule_text(table[table["schedule"] == paper], "beauty")
    fig = rs.plot_schedule(table, root)
    assert len(fig.axes[0].lines) == 4 and fig.axes[1].get_yscale() == "log"


def test_cold_rank_table_and_plot_read_cold_ranks_json(tmp_path):
    _write_run(tmp_path, name="sagerec-bce-full-seed0")
    _write_run(tmp_path, model="sasrec", name="sasrec-bce-full-seed0")
    store = {"analysis": "cold-ranks", "dataset": "beauty", "runs": {
        "sagerec-bce-full-seed0": {"ranks": [1, 50, 60, 90], "n_items": 100, "metrics": {"ndcg@10": 0.25},
                                   "reproduces_committed": True},
        "sasrec-bce-full-seed0": {"ranks": [99, 100, 98], "n_items": 100, "metrics": {"ndcg@10": 0.0},
                                  "reproduces_committed": False}}}
    (tmp_path / "beauty" / "cold-ranks.json").write_text(json.dumps(store))
    table = rs.cold_rank_table("beauty", tmp_path).set_index("run")
    assert list(table.index) == ["sagerec-bce-full-seed0", "sasrec-bce-full-seed0"]  # by median rank
    assert table.loc["sagerec-bce-full-seed0", "median rank"] == 55
    assert table.loc["sagerec-bce-full-seed0", "top half"] == 0.5
    assert table.loc["sasrec-bce-full-seed0", "median percentile"] == 99
    assert not table.loc["sasrec-bce-full-seed0", "reproduced"]
    assert table.loc["sagerec-bce-full-seed0", "label"].startswith("SAGERec A full, ")
    ax = rs.plot_cold_ranks("beauty", tmp_path).axes[0]  # default: SAGERec only under the fixed recipe
    assert [line.get_label() for line in ax.get_lines()] == ["SASRec, seed 0", "uninformed (uniform rank)"]
    ax = rs.plot_cold_ranks("beauty", tmp_path, runs=["sasrec-bce-full-seed0", "sagerec-bce-full-seed0"]).axes[0]
    assert len(ax.get_lines()) == 3  # two runs + the uninformed diagonal
    assert list(ax.get_lines()[0].get_xdata()) == [1, 50, 60, 90]  # best median first
    assert load_results(tmp_path).set_index("path").loc["beauty/cold-ranks.json", "kind"] == "analysis"
    assert rs.cold_rank_table("toys", tmp_path).empty


def test_cold_rank_plot_draws_more_curves_than_colours(tmp_path):
    runs = {}
    for seed in range(23):  # 23 runs, picked explicitly: one curve each, past tab20's 20 colours
        _write_run(tmp_path, model="sasrec", seed=seed, name=f"sasrec-bce-full-seed{seed}")
        runs[f"sasrec-bce-full-seed{seed}"] = {"ranks": [seed + 1], "n_items": 100, "metrics": {},
                                              "reproduces_committed": True}
    (tmp_path / "beauty" / "cold-ranks.json").write_text(json.dumps({"analysis": "cold-ranks", "runs": runs}))
    lines = rs.plot_cold_ranks("beauty", tmp_path, runs=list(runs)).axes[0].get_lines()[:-1]
    assert len(lines) == 23
    assert lines[20].get_color() == lines[0].get_color() and lines[20].get_linestyle() != lines[0].get_linestyle()


def test_cli_cold_ranks_and_sampled_eval_without_checkpoints_write_nothing(tmp_path, monkeypatch, capsys):
    from rasr_lib.cli import main

    monkeypatch.setenv("RASR_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RASR_RESULTS_DIR", str(tmp_path))
    _write_run(tmp_path, model="sasrec", name="sasrec-bce-full-seed0", dataset="toys")
    assert main(["cold-ranks", "--dataset", "toys"]) == 0
    assert "nothing to rank" in capsys.readouterr().out
    assert not (tmp_path / "toys" / "cold-ranks.json").exists()
    assert main(["cold-ranks", "--dataset", "toys", "--runs", "sasrec-bce-full-seed0"]) == 2
    assert "no local checkpoint" in capsys.readouterr().err
    assert main(["sampled-eval", "--dataset", "toys"]) == 0
    assert "nothing to evaluate" in capsys.readouterr().out
    assert not (tmp_path / "toys" / "sampled-eval.json").exists()
    assert main(["sampled-eval", "--dataset", "toys", "--runs", "sasrec-bce-full-seed0"]) == 2
    assert "no local checkpoint" in capsys.readouterr().err
    assert main(["sampled-eval", "--dataset", "toys", "--runs", "nope"]) == 2
    assert "no committed result nope" in capsys.readouterr().err


def test_table5_under_a_recipe_reads_only_runs_trained_with_it(tmp_path):
    root = tmp_path / "results"
    cases = [("sagerec-bce-full-seed0", {}, 5, 1e-5, 0.016),
             ("sagerec-bce-full-seed0-ocae3dd", {}, 0, 0.0, 0.032),
             ("sagerec-bce-full-seed0-o343228", {}, 0, 1e-5, 0.027),  # constant lr but the L2: neither table
             ("sagerec-bce-full-seed0-sge03768-ocae3dd", {"graph": "random"}, 0, 0.0, 0.024)]
    for stem, sagerec, patience, l2, value in cases:
        _write_run(root, seed=0, ndcg10=value, name=stem, **sagerec)
        path = root / "beauty" / f"{stem}.json"
        run = json.loads(path.read_text())
        run["config"]["train"].update(lr_decay_patience=patience, emb_l2=l2)
        path.write_text(json.dumps(run))
    df = rs.load_sagerec_results(root)
    paper = rs.table5(df, "beauty").set_index("variant")
    fixed = rs.table5(df, "beauty", recipe=rs.FIXED_RECIPE).set_index("variant")
    assert paper.loc["A full", "ndcg@10"] == 0.016 and paper.loc["D random graph", "status"] == rs.NOT_RUN
    assert fixed.loc["A full", "ndcg@10"] == 0.032 and fixed.loc["D random graph", "ndcg@10"] == 0.024
    assert fixed.loc["D random graph", "vs A ndcg@20"] == pytest.approx(0.024 / 0.032 - 1)
    assert (fixed["seeds"] == [1, 0, 0, 1, 0]).all()
    ax = rs.plot_table5(df, "beauty", recipes={"paper": None, "fixed": rs.FIXED_RECIPE}).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([1.25 * 0.016, 0, 0, 0, 0, 1.25 * 0.032, 0, 0, 1.25 * 0.024, 0])


def test_graph_strength_table_reads_graph_strength_json(tmp_path):
    _write_run(tmp_path, name="sagerec-bce-full-seed0")
    _write_run(tmp_path, name="sagerec-bce-full-seed0-sga3b9ba", edge_learning=False)
    runs = {"sagerec-bce-full-seed0": {"learned": True, "weight": {"p50": 1e-9}, "a_hat": {"p50": 1e-3},
                                       "message_ratio": 0.02, "test_ndcg@20": 0.03},
            "sagerec-bce-full-seed0-sga3b9ba": {"learned": False, "weight": {"p50": 0.76},
                                                "a_hat": {"p50": 0.2}, "message_ratio": 0.6, "test_ndcg@20": 0.04}}
    (tmp_path / "beauty" / "graph-strength.json").write_text(json.dumps({"analysis": "graph-strength", "runs": runs}))
    table = rs.graph_strength_table("beauty", tmp_path)
    assert table["message %"].tolist() == pytest.approx([2.0, 60.0])
    assert table["edge weights"].tolist() == ["learned", "cosine"]
    assert table["label"].str.startswith("SAGERec A full").iloc[0]
    assert table["label"].str.startswith("SAGERec B w/o edge learning").iloc[1]
    assert rs.graph_strength_table("toys", tmp_path).empty


def test_fixed_recipe_words_are_its_schedule_label():
    r = rs.FIXED_RECIPE
    assert rs.schedule_label(r["lr_decay_patience"], 0.1, "loss", r["emb_l2"]) == rs.FIXED_RECIPE_WORDS


def test_protocol_agreement_counts_the_pairs_the_protocols_order_differently(tmp_path):
    full = {"a": 0.04, "b": 0.03, "c": 0.02, "d": 0.01}
    sampled = {"a": 0.30, "b": 0.20, "c": 0.35, "d": 0.10}  # c jumps over a and b: 2 of 6 pairs swap
    for name, n10 in full.items():
        _write_run(tmp_path, model="sasrec", ndcg10=n10, name=f"sasrec-bce-full-seed0-o{name * 6}")
    store = {"analysis": "sampled-eval", "runs": {f"sasrec-bce-full-seed0-o{k * 6}": {
        "metrics": {"test": {"ndcg@10": v}}} for k, v in sampled.items()}}
    # another seed of configuration a, ordered differently: left out unless every seed is asked for
    _write_run(tmp_path, model="sasrec", ndcg10=0.005, seed=1, name="sasrec-bce-full-seed1-oaaaaaa")
    store["runs"]["sasrec-bce-full-seed1-oaaaaaa"] = {"metrics": {"test": {"ndcg@10": 0.5}}}
    (tmp_path / "beauty" / "sampled-eval.json").write_text(json.dumps(store))
    assert rs.protocol_agreement("beauty", results_dir=tmp_path, seed=None)[1]["n_runs"] == 5
    assert rs.protocol_agreement("beauty", results_dir=tmp_path, seed=1)[1]["n_runs"] == 1
    table, summary = rs.protocol_agreement("beauty", results_dir=tmp_path)
    assert summary["n_runs"] == 4 and summary["n_swapped"] == 2
    assert summary["kendall_tau"] == pytest.approx((4 - 2) / 6)
    assert list(table["full rank"]) == [1, 2, 3, 4] and list(table["sampled rank"]) == [2, 3, 1, 4]
    assert rs._short_label("SAGERec B w/o edge learning, constant lr, no L2, seed 3") == "B fixed"
    assert rs._short_label("GRU4Rec, cross-entropy, seed 0") == "GRU4Rec CE"
    assert "0.33" in rs.plot_protocol_agreement("beauty", results_dir=tmp_path).axes[0].get_title()
    empty, none = rs.protocol_agreement("toys", results_dir=tmp_path)
    assert empty.empty and none["n_runs"] == 0
    assert rs.plot_protocol_agreement("toys", results_dir=tmp_path).axes[0].texts[0].get_text() == rs.NOT_RUN


def test_protocol_agreement_text_names_leaders_moves_and_graph_models(tmp_path):
    runs = {  # name: (model, graph_module, sagerec overrides, full N@10, sampled N@10)
        "sasrec-bce-full-seed0": ("sasrec", False, {}, 0.04, 0.20),
        "cl4srec-bce-full-seed0-graph": ("cl4srec", True, {}, 0.03, 0.30),
        "sagerec-bce-full-seed0-sgrand": ("sagerec", False, {"graph": "random"}, 0.02, 0.10),
        "sagerec-bce-full-seed0": ("sagerec", False, {}, 0.01, 0.40),
    }
    store = {"analysis": "sampled-eval", "runs": {}}
    for name, (model, module, overrides, full, sampled) in runs.items():
        _write_run(tmp_path, model=model, graph_module=module, ndcg10=full, name=name, **overrides)
        store["runs"][name] = {"metrics": {"test": {"ndcg@10": sampled}}}
    (tmp_path / "beauty" / "sampled-eval.json").write_text(json.dumps(store))
    table, summary = rs.protocol_agreement("beauty", results_dir=tmp_path)
    # a random graph (Table 5 D) is not the semantic graph
    assert table.set_index("run")["graph"].to_dict() == {
        "sasrec-bce-full-seed0": False, "cl4srec-bce-full-seed0-graph": True,
        "sagerec-bce-full-seed0-sgrand": False, "sagerec-bce-full-seed0": True}
    assert "+ semantic graph" in table.set_index("run").loc["cl4srec-bce-full-seed0-graph", "label"]
    assert rs._run_label({"model": {"name": "gcegnn"}, "train": {"loss": "ce", "lr_step_every": 3,
                                                                   "lr_step_factor": 0.1}, "seed": 0}) == (
        "GCE-GNN, cross-entropy, lr x0.1 every 3 epochs, seed 0")
    text = rs.protocol_agreement_text(table, summary, n_movers=1)
    # sampled order: sagerec A (1), CL4SRec (2), SASRec (3), D (4): pairs (A, .) x 3 + (CL4, SAS) swap
    assert text.startswith("4 checkpoints: Kendall τ -0.33, and 4 of 6 pairs swap.")
    assert "First under full ranking, SASRec is 3rd under sampled negatives" in text
    # the fixture records no lr schedule, so SAGERec's short label says so
    assert "first under sampled negatives, SAGERec A schedule not recorded is 4th under full ranking" in text
    assert "Of the five best under sampled negatives, 2 carry a semantic item graph; " \
           "of the five best under full ranking, 2." in text
    assert text.endswith("Largest rises: SAGERec A schedule not recorded (4th → 1st). "
                         "Largest falls: SASRec (1st → 3rd).")
    assert rs._ordinal(11) == "11th" and rs._ordinal(22) == "22nd" and rs._ordinal(103) == "103rd"
    one = rs.protocol_agreement_text(table.iloc[:1], {**summary, "n_runs": 1})
    assert rs.NOT_RUN in one


def test_claims_name_a_baseline_stronger_than_cl4srec(tmp_path):
    _write_run(tmp_path, ndcg10=0.030)
    _write_run(tmp_path, model="cl4srec", ndcg10=0.020)
    table = rs.claims(rs.load_sagerec_results(tmp_path), ["full"]).set_index(["dataset", "metric"])
    assert table.loc[("beauty", "ndcg@10"), "note"] == "" and table.loc[("beauty", "ndcg@10"), "holds"]
    _write_run(tmp_path, model="sasrec", ndcg10=0.025)
    table = rs.claims(rs.load_sagerec_results(tmp_path), ["full"]).set_index(["dataset", "metric"])
    assert table.loc[("beauty", "ndcg@10"), "note"] == "SASRec is stronger than CL4SRec here"
    assert table.loc[("toys", "ndcg@10"), "note"] == "CL4SRec has no committed run here"


def test_claims_also_test_the_papers_own_comparison_with_cl4srec(tmp_path):
    for seed, (sage, cl4, sas) in enumerate([(0.030, 0.020, 0.040), (0.032, 0.021, 0.044), (0.031, 0.019, 0.039)]):
        _write_run(tmp_path, seed=seed, ndcg10=sage)
        _write_run(tmp_path, model="cl4srec", seed=seed, ndcg10=cl4)
        _write_run(tmp_path, model="sasrec", seed=seed, ndcg10=sas)
    table = rs.claims(rs.load_sagerec_results(tmp_path), ["full"])
    row = table.set_index(["dataset", "metric"]).loc[("beauty", "ndcg@10")]
    assert row["our_vs"] == "sasrec" and not row["holds"]  # below the strongest baseline ...
    assert row["cl4srec_gain_pct"] == pytest.approx(100 * (0.031 / 0.020 - 1))  # ... above the paper's
    assert row["cl4srec_pairs"] == 3 and row["cl4srec_p"] < 0.01
    assert (f"ours -{100 * (1 - 0.031 / 0.041):.1f} % vs SASRec (+55.0 % vs CL4SRec, p = "
            in rs.claim_sentences(table))
    toys = table.set_index(["dataset", "metric"]).loc[("toys", "ndcg@10")]
    assert math.isnan(toys["cl4srec_gain_pct"]) and toys["cl4srec_pairs"] == 0


def test_table3_reads_each_model_under_its_own_recipe_loss(tmp_path):
    _write_run(tmp_path, model="sine", loss="ce", ndcg10=0.04)  # SINE's recipe: cross-entropy
    _write_run(tmp_path, model="sine", loss="bce", ndcg10=0.01, name="sine-bce-full-seed0")  # off-recipe loss
    _write_run(tmp_path, model="sasrec", loss="ce", ndcg10=0.05, name="sasrec-ce-full-seed0")  # SASRec's is BCE
    table = rs.table3(rs.load_sagerec_results(tmp_path), "beauty").set_index("model")
    assert table.loc["sine", "ndcg@10"] == 0.04 and table.loc["sine", "seeds"] == 1
    assert table.loc["sasrec", "status"] == rs.NOT_RUN


def test_table5_across_datasets_sets_each_variant_against_its_own_a(results):
    root = results  # Toys: A over two seeds, B one seed 10 % above; Sports and ML-1M: nothing
    _write_run(root, dataset="toys", seed=0, ndcg10=0.020)
    _write_run(root, dataset="toys", seed=1, ndcg10=0.022)
    _write_run(root, dataset="toys", seed=0, ndcg10=0.023, edge_learning=False)
    across = rs.table5_across(rs.load_sagerec_results(root)).set_index("dataset")
    assert list(across.index) == ["beauty", "toys"]
    toys = across.loc["toys"]
    assert toys["A seeds"] == 2 and toys["A ndcg@20"] == pytest.approx(1.25 * 0.021)
    assert toys["B w/o edge learning"] == pytest.approx(0.023 / 0.021 - 1)
    assert math.isnan(toys["C w/o graph"]) and toys["variants"] == 2 and toys["variant seeds"] == "1"
    assert toys["best"] == "B w/o edge learning" and toys["worst"] == "A full"
    sd = 1.25 * float(np.std([0.020, 0.022], ddof=1))
    assert toys["noise ±"] == pytest.approx(2 * sd / (1.25 * 0.021))
    beauty = across.loc["beauty"]
    assert beauty["D random graph"] == pytest.approx(0.020 / 0.032 - 1) and beauty["worst"] == "D random graph"
    assert beauty["variant seeds"] == "1–2"  # B has two seeds, D and E one
    _write_run(root, dataset="sports", seed=0, ndcg10=0.010)  # A alone: nothing to rank
    sports = rs.table5_across(rs.load_sagerec_results(root)).set_index("dataset").loc["sports"]
    assert sports["variants"] == 1 and pd.isna(sports["best"]) and pd.isna(sports["worst"])
    assert rs.table5_across(rs.load_sagerec_results(root / "none")).empty
