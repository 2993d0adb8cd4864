"""Chapter 07's readers: Table 1 cells, claim checks and Figs. 2-5 from synthetic result files."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from rasr_lib import report_rasr as rr
from rasr_lib.config import RegenConfig
from rasr_lib.report import load_results

DATASETS = ("beauty", "sports", "toys", "ml-1m")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")

# The paper's Delta rows (percent, Beauty/Sports/Toys/ML-1M x R@10 R@20 N@10 N@20), transcribed
# separately from the numbers in RASR_TABLE1: first DR4SR over the backbone, then RaSR over it.
PAPER_DELTAS = {
    "gru4rec": (
        [15.30, 13.21, 16.54, 17.22, 18.13, 19.12, 17.89, 19.05, 17.83, 12.03, 14.40, 10.18,
         5.79, 9.27, 4.24, 6.76],
        [18.86, 19.31, 20.47, 21.11, 20.73, 24.14, 22.11, 24.60, 21.32, 17.92, 21.60, 16.17,
         13.22, 9.69, 14.84, 12.27],
    ),
    "sasrec": (
        [5.71, 5.69, 8.16, 7.57, 12.19, 8.01, 16.87, 13.55, 16.62, 11.94, 20.91, 17.79,
         8.39, 6.03, 9.68, 7.88],
        [7.41, 10.46, 8.75, 9.46, 24.38, 21.29, 29.52, 26.64, 20.03, 17.70, 24.40, 22.52,
         11.21, 7.05, 12.87, 9.83],
    ),
}


# ----------------------------------------------------------------------------- synthetic results


def _metrics(ndcg20, recall20=None):
    """Test metrics derived from N@20 (R@20 = 2.2 x N@20 unless given)."""
    recall20 = 2.2 * ndcg20 if recall20 is None else recall20
    return {"recall@10": 0.7 * recall20, "ndcg@10": 0.8 * ndcg20, "recall@20": recall20, "ndcg@20": ndcg20}


def _write_run(root, *, model="sasrec", loss="bce", data="original", seed=0, ndcg20=0.04, recall20=None,
               dataset="beauty", profile="full", gen_epochs=10, legacy=False, n_epochs=5, suffix="",
               regenerated_rows=None, **regen):
    """One results JSON in run_experiment's layout; ``legacy`` leaves out config.regen (old files),
    ``regenerated_rows`` adds the run's ``regen`` block with its set's size."""
    test = _metrics(ndcg20, recall20)
    config = {"data": {"dataset": dataset, "max_len": 50, "max_users": 0},
              "model": {"name": model}, "train": {"loss": loss, "epochs": 200},
              "eval": {"protocol": "full"}, "seed": seed, "device": "auto", "profile": profile}
    if not legacy:
        config["regen"] = {**dataclasses.asdict(RegenConfig()),
                           "method": "none" if data == "original" else data,
                           "generator_epochs": gen_epochs if data != "original" else 0, **regen}
    run = {
        "dataset": dataset, "model": model, "loss": loss, "profile": profile, "seed": seed,
        "protocol": "full ranking, history masked", "device": "cpu (x86_64, 1 threads)",
        "wall_time_s": 3600.0 * (seed + 1), "git_commit": "abc1234", "config": config, "best_epoch": n_epochs,
        "data_variant": "none" if data == "original" else data,
        "metrics": {"valid": dict(test), "test": test},
        "history": [{"epoch": e, "loss": 1.0 / e, "valid_ndcg@20": ndcg20 * e / n_epochs}
                    for e in range(1, n_epochs + 1)],
    }
    if regenerated_rows is not None:
        run["regen"] = {"pipeline": f"regen/{dataset}/{data}-seed{seed}", "n_regenerated": regenerated_rows}
    stem = f"{model}-{loss}-{profile}-seed{seed}{suffix}"
    if data != "original":
        stem += f"-{data}-{abs(hash(json.dumps(config['regen'], sort_keys=True))) % 10**6:06d}"
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(run))


@pytest.fixture
def results(tmp_path):
    """A results folder with Table 1 cells, ablations and grid points that must (not) be picked."""
    root = tmp_path / "results"
    w = lambda **kw: _write_run(root, **kw)  # noqa: E731
    # sasrec / bce: original (legacy file without regen + a seed with it), DR4SR, RaSR 2 seeds
    w(seed=0, ndcg20=0.040, recall20=0.090, legacy=True)
    w(seed=1, ndcg20=0.042, recall20=0.092)
    w(data="dr4sr", ndcg20=0.043, recall20=0.100, gen_epochs=0)  # 0 = the preset's 40 epochs
    w(data="rasr", seed=0, ndcg20=0.044, recall20=0.096)
    w(data="rasr", seed=1, ndcg20=0.046, recall20=0.098)
    for seed, (value, rows) in enumerate(zip((0.050, 0.052, 0.054), (1000, 1200, 900))):  # shorter generator,
        w(data="rasr", seed=seed, ndcg20=value, recall20=0.110, gen_epochs=3, regenerated_rows=rows)  # its own row
    # not Table 1 cells: grids, ablations, another profile, another dataset
    w(data="rasr", ndcg20=0.060, ratio=0.5)
    w(data="rasr", ndcg20=0.061, ratio=0.25)
    w(data="rasr", ndcg20=0.062, window=3)
    w(data="rasr", ndcg20=0.063, decay=0.4)
    w(data="rasr", ndcg20=0.064, semantic_aug=False)
    w(data="rasr", ndcg20=0.065, regenerator=False)
    w(data="rasr", ndcg20=0.066, profile="quick")
    w(data="rasr", ndcg20=0.067, dataset="toys")
    w(data="rasr", ndcg20=0.068, temporal_mode="position")
    # gru4rec / bce: original and RaSR only; sasrec / ce: only RaSR
    w(model="gru4rec", ndcg20=0.020, recall20=0.050)
    w(model="gru4rec", data="rasr", ndcg20=0.022, recall20=0.049)
    w(loss="ce", data="rasr", ndcg20=0.055)
    # not Table 1 cells either: a backbone with SAGERec's graph module, a --set run, another model
    w(model="gru4rec", ndcg20=0.9, suffix="-graph")
    w(model="gru4rec", ndcg20=0.9, suffix="-o1a2b3c")
    w(model="bpr", ndcg20=0.9)
    return root


def _texts(fig):
    """Every text drawn in a figure (axes texts, titles, labels, suptitle)."""
    out = [t.get_text() for ax in fig.axes for t in ax.texts]
    out += [ax.get_title() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    return out + ([fig._suptitle.get_text()] if fig._suptitle else [])


# ----------------------------------------------------------------------------- constants


def test_table1_transcription_against_the_papers_deltas():
    t = rr.RASR_TABLE1
    assert t["beauty"]["sasrec"]["original"] == dict(zip(
        ("recall@10", "recall@20", "ndcg@10", "ndcg@20"), (0.0648, 0.0966, 0.0343, 0.0423)))
    assert list(t["beauty"]["sasrec"]["dr4sr"].values()) == [0.0685, 0.1021, 0.0371, 0.0455]
    assert list(t["beauty"]["sasrec"]["rasr"].values()) == [0.0696, 0.1067, 0.0373, 0.0463]
    assert set(t) == set(DATASETS)
    for model, (d_dr4sr, d_rasr) in PAPER_DELTAS.items():
        cells = [(d, m) for d in DATASETS for m in METRICS]
        for (d, m), delta_dr4sr, delta_rasr in zip(cells, d_dr4sr, d_rasr):
            base = t[d][model]["original"][m]
            assert 100 * (t[d][model]["dr4sr"][m] / base - 1) == pytest.approx(delta_dr4sr, abs=0.006), (model, d, m)
            assert 100 * (t[d][model]["rasr"][m] / base - 1) == pytest.approx(delta_rasr, abs=0.006), (model, d, m)


def test_original_rows_agree_with_report_references():
    from rasr_lib.report import PAPER_REFERENCES

    for d in DATASETS:
        for model in ("sasrec", "gru4rec"):
            assert rr.RASR_TABLE1[d][model]["original"] == PAPER_REFERENCES[d][model]["RaSR Table 1 (original data)"]


def test_defaults_agree_with_the_config_and_generator_presets():
    from rasr_lib.rasr.generator import generator_config

    assert rr.GENERATOR_DEFAULT_EPOCHS == {m: generator_config(m).epochs for m in ("rasr", "dr4sr")}
    assert rr.REGEN_DEFAULTS["ratio"] == 1.0 and rr.REGEN_DEFAULTS["window"] == 2
    assert rr.REGEN_DEFAULTS["decay"] == 0.8 and "generator_epochs" not in rr.REGEN_DEFAULTS


# ----------------------------------------------------------------------------- Table 1 cells


def test_table1_cells_select_by_config_and_average_seeds(results):
    df = load_results(results)
    cells = rr.table1_cells(df, "beauty")
    ours = cells[cells["source"] == "ours"]
    got = {(r["model"], r["loss"], r["data"], None if np.isnan(r["gen_epochs"]) else int(r["gen_epochs"])):
           (r["seeds"], r["ndcg@20"]) for r in ours.to_dict("records")}
    assert got == {
        ("sasrec", "bce", "original", None): (2, pytest.approx(0.041)),
        ("sasrec", "bce", "dr4sr", 40): (1, pytest.approx(0.043)),
        ("sasrec", "bce", "rasr", 3): (3, pytest.approx(0.052)),
        ("sasrec", "bce", "rasr", 10): (2, pytest.approx(0.045)),
        ("sasrec", "ce", "rasr", 10): (1, pytest.approx(0.055)),
        ("gru4rec", "bce", "original", None): (1, pytest.approx(0.020)),
        ("gru4rec", "bce", "rasr", 10): (1, pytest.approx(0.022)),
    }
    row = ours[(ours["model"] == "sasrec") & (ours["loss"] == "bce") & (ours["gen_epochs"] == 10)].iloc[0]
    assert row["gain ndcg@20"] == pytest.approx(0.045 / 0.041 - 1)
    assert row["gain recall@20"] == pytest.approx(0.097 / 0.091 - 1)
    assert ours[ours["loss"] == "ce"]["gain ndcg@20"].isna().all()  # no original-data CE run
    paper = cells[cells["source"] == "paper"]
    assert len(paper) == 6
    rasr = paper[(paper["model"] == "sasrec") & (paper["data"] == "rasr")].iloc[0]
    assert rasr["ndcg@20"] == 0.0463 and rasr["gen_epochs"] == 100
    assert rasr["gain ndcg@20"] == pytest.approx(0.0463 / 0.0423 - 1)
    # Table order: per model, ours first, original -> dr4sr -> rasr
    sasrec = cells[cells["model"] == "sasrec"]
    assert list(sasrec["data"][:4]) == ["original", "dr4sr", "rasr", "rasr"]


def test_claim_check_booleans_and_numbers(results):
    cells = rr.table1_cells(load_results(results), "beauty")
    claims = rr.claim_check(cells)
    ours = claims[claims["source"] == "ours"].set_index(["model", "loss", "metric"])
    n = ours.loc[("sasrec", "bce", "ndcg@20")]
    assert (n["original"], n["dr4sr"], n["rasr"]) == pytest.approx((0.041, 0.043, 0.045))
    assert n["rasr_gen_epochs"] == 10  # the 10-epoch row, not the 3-epoch one with more seeds
    assert bool(n["holds"]) and bool(n["rasr > dr4sr"]) and bool(n["dr4sr > original"])
    r = ours.loc[("sasrec", "bce", "recall@20")]
    assert (r["original"], r["dr4sr"], r["rasr"]) == pytest.approx((0.091, 0.100, 0.097))
    assert not bool(r["holds"]) and not bool(r["rasr > dr4sr"]) and bool(r["rasr > original"])
    g = ours.loc[("gru4rec", "bce", "recall@20")]
    assert pd.isna(g["holds"]) and pd.isna(g["rasr > dr4sr"]) and not bool(g["rasr > original"])
    assert pd.isna(ours.loc[("sasrec", "ce", "ndcg@20")]["rasr > original"])
    paper = claims[claims["source"] == "paper"]
    assert len(paper) == 4 and paper["holds"].all()
    text = rr.claim_sentences(claims)
    assert "**sasrec, bce**" in text and "**holds**" in text and "**does not hold**" in text
    assert "DR4SR not run yet" in text and "0.0450" in text


def test_other_datasets_claims_name_each_dataset_with_regenerated_runs(results):
    df = load_results(results)  # toys: one RaSR run and no original one; beauty: the full grid
    text = rr.other_datasets_claims(df, "beauty")
    assert text.startswith("**toys**") and "**beauty**" not in text
    assert "RaSR 0.0670" in text and "cannot check yet" in text
    assert rr.other_datasets_claims(df, "toys").startswith("**beauty**")
    assert rr.other_datasets_claims(df[df["dataset"] == "beauty"], "beauty").startswith("No other")


def test_plan_coverage(results):
    cov = rr.plan_coverage(load_results(results), "beauty").set_index(["plan", "cell"])
    assert len(cov) == 12 + 4 + 4 + 9
    assert cov.loc[("table1", "sasrec/bce/rasr"), "seeds"] == 2
    assert cov.loc[("table1", "sasrec/bce/rasr"), "wall_time_h"] == pytest.approx(1.5)  # 10-epoch runs only
    assert cov.loc[("table1", "sasrec/bce/rasr"), "device"] == "cpu (x86_64, 1 threads)"
    assert pd.isna(cov.loc[("table1", "gru4rec/ce/rasr"), "device"])
    assert cov.loc[("fig4", "ratio 0.5"), "ndcg@20"] == pytest.approx(0.060)
    assert cov.loc[("fig3", "w/o regenerator"), "gen_epochs"] == 0
    assert not cov.loc[("fig3", "w/o relational aug."), "committed"]
    assert cov.loc[("fig5", "window 3"), "committed"] and not cov.loc[("fig5", "window 5"), "committed"]
    assert cov["committed"].sum() == 6 + 3 + 3 + 4  # table1, fig3, fig4, fig5
    verdict = rr.regenerator_verdict(cov.reset_index())
    assert f"**{100 * (0.065 / 0.045 - 1):+.1f} %**" in verdict and "does not hold" in verdict
    assert f"trained for {cov.loc[('fig3', 'RaSR'), 'gen_epochs']:.0f} epochs" in verdict
    order = rr.ablation_order_verdict(cov.reset_index())
    # fixture: RaSR .045, w/o semantic .064, w/o regenerator .065 -> semantic is the smaller gain
    assert "ours: w/o semantic aug. (+42.2 %), then w/o regenerator (+44.4 %)" in order
    assert "**different**" in order and "0 of 2 removals lower N@20" in order


def test_plan_pipelines():
    pipes = rr.plan_pipelines("beauty").set_index(["data", "settings"])
    assert len(pipes) == 2 + 3 + 7  # RaSR and DR4SR defaults, 3 ablations, 3 windows + 4 decays
    assert int(pipes["generator"].sum()) == 11  # "w/o regenerator" trains none
    shared = pipes.loc[("rasr", "defaults"), "cells"]
    assert len(shared) == 4 + 1 + 4 + 2  # Table 1 (2 models x 2 losses), Fig. 3, every ratio, Fig. 5 defaults
    assert "fig4: ratio 0.25" in shared and pipes.loc[("rasr", "window=3"), "cells"] == ["fig5: window 3"]


# ----------------------------------------------------------------------------- figures


def test_plot_convergence_draws_one_line_per_variant(results):
    df = load_results(results)
    fig = rr.plot_convergence(df, "beauty", "sasrec", "bce", results_dir=results)
    lines = fig.axes[0].get_lines()
    assert [line.get_label().split(",")[0] for line in lines] == ["original data", "DR4SR", "RaSR"]
    assert lines[2].get_ydata()[-1] == pytest.approx(0.044)  # seed 0 of the 10-epoch RaSR run
    gru = rr.plot_convergence(df, "beauty", "gru4rec", "bce", results_dir=results)
    assert len(gru.axes[0].get_lines()) == 2 and "not run yet: DR4SR" in gru.axes[0].get_title()
    grid = rr.plot_convergence_grid(df, "beauty", results_dir=results)
    assert [len(ax.get_lines()) for ax in grid.axes] == [3, 1, 2, 0]
    assert "not run yet" in [t.get_text() for t in grid.axes[3].texts]


def test_plot_ablation_bars(results):
    fig = rr.plot_ablation(load_results(results), "beauty")
    assert len(fig.axes) == 2
    heights = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    assert heights[1] == pytest.approx([0.045, 0.064, 0.065])  # RaSR, w/o semantic, w/o regenerator
    assert heights[0] == pytest.approx([0.097, 2.2 * 0.064, 2.2 * 0.065])
    assert sum("not run yet" == t for t in _texts(fig)) == 2  # w/o relational, in both panels
    assert fig.axes[1].get_lines()[0].get_ydata()[0] == pytest.approx(0.041)  # original data


def test_plot_ratio_grid_and_sensitivity(results):
    df = load_results(results)
    fig = rr.plot_ratio_grid(df, "beauty")
    ndcg = fig.axes[0].get_lines()[0]
    assert list(ndcg.get_xdata()) == [0.25, 0.5, 1.0]
    assert list(ndcg.get_ydata()) == pytest.approx([0.061, 0.060, 0.045])
    assert "not run yet: 0.75" in fig.axes[0].get_xlabel()
    sens = rr.plot_sensitivity(df, "beauty")
    window, decay = sens.axes[0], sens.axes[1]
    assert list(window.get_lines()[0].get_xdata()) == [2, 3]
    assert list(decay.get_lines()[0].get_xdata()) == [0.4, 0.8]
    assert "not run yet: 4, 5" in window.get_xlabel()


def test_everything_handles_an_empty_results_folder(tmp_path):
    df = load_results(tmp_path)
    cells = rr.table1_cells(df, "beauty")
    assert set(cells["source"]) == {"paper"} and len(cells) == 6
    assert rr.table1_cells(df, "beauty", with_paper=False).empty
    claims = rr.claim_check(cells)
    assert set(claims["source"]) == {"paper"}
    assert rr.claim_sentences(claims) == "No Table 1 cells of 'ours' to check yet."
    assert rr.claim_check(cells.iloc[:0]).empty
    assert not rr.plan_coverage(df, "beauty")["committed"].any()
    assert "not run yet" in rr.regenerator_verdict(rr.plan_coverage(df, "beauty"))
    assert "not run yet" in rr.ablation_order_verdict(rr.plan_coverage(df, "beauty"))
    for fig in (rr.plot_convergence(df, "beauty", results_dir=tmp_path), rr.plot_ablation(df, "beauty"),
                rr.plot_ratio_grid(df, "beauty"), rr.plot_sensitivity(df, "beauty"),
                rr.plot_convergence_grid(df, "beauty", results_dir=tmp_path)):
        assert sum(len(ax.get_lines()) + len(ax.patches) for ax in fig.axes) == 0
        assert "not run yet" in _texts(fig)


def test_only_original_runs(results, tmp_path):
    only = tmp_path / "only"
    _write_run(only, seed=0, ndcg20=0.036, legacy=True)
    df = load_results(only)
    cells = rr.table1_cells(df, "beauty", with_paper=False)
    assert cells[["data", "ndcg@20", "gain ndcg@20"]].values.tolist() == [["original", 0.036, 0.0]]
    claims = rr.claim_check(cells)
    assert claims["holds"].isna().all()
    assert "cannot check yet (DR4SR, RaSR not run yet)" in rr.claim_sentences(claims)
    assert len(rr.plot_convergence(df, "beauty", results_dir=only).axes[0].get_lines()) == 1


def test_generator_costs_one_row_per_pipeline(tmp_path):
    def write(name, pipeline, seconds, loss="bce"):
        run = {"profile": "full", "data_variant": "rasr", "device": "cpu", "loss": loss,
               "regen": {"pipeline": pipeline, "pipeline_timings": {"regenerate_s": 50.0, "pretrain_s": 600.0},
                         "generator_history": [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)]}}
        (tmp_path / "beauty").mkdir(exist_ok=True)
        (tmp_path / "beauty" / f"{name}.json").write_text(json.dumps(run))

    write("a", "regen/beauty/rasr-1", [300.0, 360.0])
    write("b", "regen/beauty/rasr-1", [300.0, 360.0], loss="ce")  # same pipeline, other backbone loss
    write("c", "regen/beauty/rasr-2", [120.0])
    costs = rr.generator_costs("beauty", results_dir=tmp_path)
    assert costs["s per generator epoch"].tolist() == [330.0, 120.0]
    assert costs["generator epochs"].tolist() == [2, 1]
    assert rr.generator_costs("toys", results_dir=tmp_path).empty


def test_ablation_order_verdict_matches_the_papers_order():
    cov = pd.DataFrame({"plan": "fig3", "cell": ["RaSR", "w/o semantic aug.", "w/o relational aug.",
                                                  "w/o regenerator"],
                        "ndcg@20": [0.040, 0.036, 0.038, 0.030]})
    text = rr.ablation_order_verdict(cov)
    assert "ours: w/o regenerator (-25.0 %), then w/o semantic aug. (-10.0 %), then w/o relational" in text
    assert "**the same**" in text and "3 of 3 removals lower N@20" in text
    assert "at least two" in rr.ablation_order_verdict(cov.iloc[:2])


def test_seed_spread_sentence_reads_only_original_runs_with_two_seeds(results, tmp_path):
    df = load_results(results)
    text = rr.seed_spread_sentence(df, "beauty")
    # sasrec/bce on the original data: seeds .040 and .042 -> std .0014, 3.4 % of .041; regenerated runs left out
    assert "sasrec (bce) 0.0410 ± 0.0014, 3.4 % of the mean (2 seeds)" in text
    assert text.count(" seeds)") == 1 and "about 7 %" in text
    assert "not measured" in rr.seed_spread_sentence(df, "toys")
    _write_run(results, model="bpr", seed=0, ndcg20=0.0200)
    _write_run(results, model="bpr", seed=1, ndcg20=0.0202)  # cv 0.7 %
    assert "about 1-7 % (by model)" in rr.seed_spread_sentence(load_results(results), "beauty")
    assert "not measured" in rr.seed_spread_sentence(load_results(tmp_path / "empty"), "beauty")


def test_regenerated_seed_spread_pairs_each_cell_with_the_original_datas_same_seeds(results, tmp_path):
    spread = rr.regenerated_seed_spread(load_results(results), "beauty").set_index("gen_epochs")
    # RaSR at 10 epochs: seeds 0-1 (.044, .046) against the original's seeds 0-1 (.040, .042)
    ten = spread.loc[10.0]
    assert (ten["seeds"], ten["mean"], ten["original mean"]) == (2, pytest.approx(0.045), pytest.approx(0.041))
    assert ten["std"] == pytest.approx(0.002 / math.sqrt(2)) == ten["original std"]
    # RaSR at 3 epochs has seed 2, which the original data lacks: no comparison rather than an unpaired one
    three = spread.loc[3.0]
    assert three["seeds"] == 3 and three["mean"] == pytest.approx(0.052) and math.isnan(three["original mean"])
    # each seed made its own set: the cell names the smallest and the largest; older runs record none
    assert (three["rows min"], three["rows max"]) == (900, 1200) and math.isnan(ten["rows min"])
    assert len(spread) == 2  # one-seed cells (DR4SR, gru4rec, sasrec/ce) and off-default grid points are left out
    text = rr.regenerated_seed_spread_sentence(load_results(results), "beauty")
    assert text.count(" seeds)") == 2 and "the original data on the same seeds 0.0410 ± 0.0014" in text
    assert text.count("regenerated sets of") == 1 and "regenerated sets of 900 to 1,200 rows (33 % apart)" in text
    # a backbone outside Table 1 with two seeds on regenerated data is not a Table 1 cell
    for seed in (0, 1):
        _write_run(results, model="bpr", data="rasr", seed=seed, ndcg20=0.03 + seed / 100)
    assert len(rr.regenerated_seed_spread(load_results(results), "beauty")) == 2
    assert "not measured" in rr.regenerated_seed_spread_sentence(load_results(results), "toys")
    assert "not measured" in rr.regenerated_seed_spread_sentence(load_results(tmp_path / "empty"), "beauty")


def test_regenerated_sets_and_drift_compare_runs_of_one_pipeline_at_one_ratio(tmp_path):
    def write(name, pipeline, rows, ratio=1.0, loss0=7.0, commit="abc1234", sha=None):
        run = {"profile": "full", "data_variant": "rasr", "git_commit": commit,
               "config": {"regen": {"ratio": ratio}},
               "regen": {"pipeline": pipeline, "n_regenerated": rows, "n_training_rows": rows + 100,
                         "generator_history": [{"epoch": 1, "loss": loss0}]}}
        if sha:
            run["regen"]["regenerated_sha256"] = sha
        (tmp_path / "beauty").mkdir(exist_ok=True)
        (tmp_path / "beauty" / f"{name}.json").write_text(json.dumps(run))

    assert "No pipeline key" in rr.regenerated_drift(rr.regenerated_sets("beauty", results_dir=tmp_path))
    write("a", "regen/beauty/rasr-1", 1000)
    write("b", "regen/beauty/rasr-1", 1010, loss0=7.00004, commit="def5678")  # regenerated by newer code
    write("c", "regen/beauty/rasr-1", 500, ratio=0.5)  # a ratio run: fewer rows by design, not drift
    write("d", "regen/beauty/rasr-2", 800)
    write("e", "regen/beauty/rasr-2", 800)
    sets = rr.regenerated_sets("beauty", results_dir=tmp_path)
    assert sets["regenerated rows"].tolist() == [1000, 1010, 500, 800, 800]
    assert sets["pipeline"].tolist()[:2] == ["rasr-1", "rasr-1"]
    text = rr.regenerated_drift(sets)
    assert "`rasr-1` at ratio 1: 2 runs on 2 different regenerated sets (1,000 to 1,010 rows, 1.00 % apart)" in text
    assert "differs by 4.0e-05" in text
    assert "`rasr-2` at ratio 1: 2 runs, all on 800 regenerated rows." in text
    assert "ratio 0.5" not in text  # one run only
    assert sets["sha256"].tolist() == [""] * 5  # recorded before digests were
    # with a digest on every run, equal sizes are no longer the last word
    write("f", "regen/beauty/rasr-3", 900, sha="a" * 64)
    write("g", "regen/beauty/rasr-3", 900, sha="a" * 64)
    write("h", "regen/beauty/rasr-4", 700, sha="b" * 64)
    write("i", "regen/beauty/rasr-4", 700, sha="c" * 64)
    write("j", "regen/beauty/rasr-5", 600, sha="d" * 64)
    write("k", "regen/beauty/rasr-5", 600)  # an older run without one
    text = rr.regenerated_drift(rr.regenerated_sets("beauty", results_dir=tmp_path))
    assert f"`rasr-3` at ratio 1: 2 runs, all on one regenerated set (900 rows, sha256 {'a' * 12}…)." in text
    assert "`rasr-4` at ratio 1: 2 runs on 2 different regenerated sets of 700 rows each (their sha256 differ)." in text
    assert "`rasr-5` at ratio 1: 2 runs, all on 600 regenerated rows (1 of 2 record a sha256)." in text


def test_sensitivity_verdict_sets_the_ranges_against_seed_noise(results):
    df = load_results(results)
    cov = rr.plan_coverage(df, "beauty")
    text = rr.sensitivity_verdict(cov, df, "beauty")
    fig5 = cov[cov["plan"] == "fig5"].set_index("cell")["ndcg@20"].dropna()
    windows = fig5[fig5.index.str.startswith("window")]
    spread = 100 * (windows.max() - windows.min()) / windows.mean()
    assert f"a range of **{spread:.1f} %** of the mean over {len(windows)} settings" in text
    # fixture sasrec/bce seeds .040/.042: std 3.4 % of the mean; n runs spread by d2(n) std from the seed alone
    assert "a standard deviation of 3.4 % of their mean (two seeds" in text
    expected = rr.RANGE_OVER_STD[len(windows)] * 100 * np.std([0.040, 0.042], ddof=1) / 0.041
    assert f"the seed alone would spread {len(windows)} runs by about {expected:.1f} %" in text
    original = cov.set_index(["plan", "cell"]).loc[("table1", "sasrec/bce/original"), "ndcg@20"]
    every = fig5[~fig5.index.duplicated()]
    assert f"{int((every > original).sum())} of {len(every)} committed settings are above it" in text


def test_sensitivity_verdict_grades_a_range_against_the_noise_range():
    cov = pd.DataFrame({"plan": ["fig5"] * 4 + ["table1"],
                        "cell": ["window 2", "window 3", "decay 0.2", "decay 0.4", "sasrec/bce/original"],
                        "ndcg@20": [0.040, 0.0401, 0.030, 0.040, 0.035]})
    df = pd.DataFrame({"dataset": "beauty", "profile": "full", "kind": "experiment", "model": "sasrec",
                       "loss": "bce", "protocol": "full ranking", "seed": [0, 1], "test/ndcg@20": [0.040, 0.042]})
    text = rr.sensitivity_verdict(cov, df, "beauty").splitlines()
    assert "**within seed noise**" in text[0] and "**more than twice" in text[1]
    assert text[3] == "- against the original data (N@20 0.0350): 3 of 4 committed settings are above it."


def test_sensitivity_verdict_without_runs_says_so():
    cov = pd.DataFrame({"plan": ["fig5"], "cell": ["window 2"], "ndcg@20": [0.04]})
    df = pd.DataFrame(columns=["dataset", "profile"])
    text = rr.sensitivity_verdict(cov, df, "beauty")
    assert "1 setting(s) committed, no range yet" in text and "cannot be set against" in text
    assert "against the original data" not in text


def test_claim_check_compares_dr4sr_and_rasr_at_a_shared_budget():
    def cell(data, epochs, ndcg):
        return {"dataset": "beauty", "model": "sasrec", "loss": "bce", "data": data, "source": "ours",
                "protocol": "full ranking", "gen_epochs": epochs, "seeds": 1, "ndcg@20": ndcg}

    rows = [cell("original", math.nan, 0.030), cell("dr4sr", 5.0, 0.031), cell("dr4sr", 40.0, 0.036),
            cell("rasr", 5.0, 0.032), cell("rasr", 50.0, 0.033)]
    claims = rr.claim_check(pd.DataFrame(rows), metrics=["ndcg@20"]).iloc[0]
    # DR4SR's 40 is its paper budget and RaSR's 50 is not theirs: the shared budget is 5 epochs
    assert (claims["dr4sr_gen_epochs"], claims["rasr_gen_epochs"]) == (5.0, 5.0)
    assert (claims["dr4sr"], claims["rasr"]) == (0.031, 0.032) and bool(claims["holds"])
    rows.append(cell("rasr", 100.0, 0.035))  # both at their paper budgets now
    claims = rr.claim_check(pd.DataFrame(rows), metrics=["ndcg@20"]).iloc[0]
    assert (claims["dr4sr_gen_epochs"], claims["rasr_gen_epochs"]) == (40.0, 100.0)
    assert (claims["dr4sr"], claims["rasr"]) == (0.036, 0.035) and not bool(claims["holds"])
    no_shared = [r for r in rows if not (r["data"] == "rasr" and r["gen_epochs"] in (5.0, 100.0))]
    claims = rr.claim_check(pd.DataFrame(no_shared), metrics=["ndcg@20"]).iloc[0]
    assert (claims["dr4sr_gen_epochs"], claims["rasr_gen_epochs"]) == (40.0, 50.0)  # most epochs each
    text = rr.claim_sentences(rr.claim_check(pd.DataFrame(rows), metrics=["ndcg@20"]))
    assert "Generator epochs: DR4SR 40 (the paper's), RaSR 100 (the paper's)." in text


def test_fig2_draws_dr4sr_and_rasr_at_their_shared_budget(tmp_path):
    root = tmp_path / "results"
    _write_run(root, ndcg20=0.040)
    _write_run(root, data="dr4sr", ndcg20=0.043, gen_epochs=0)  # its paper budget (40): RaSR has no 100 yet
    _write_run(root, data="dr4sr", ndcg20=0.041, gen_epochs=5)
    _write_run(root, data="rasr", ndcg20=0.042, gen_epochs=5)
    runs = rr.experiment_runs(load_results(root), "beauty", "full")
    picked = rr.history_runs(runs, "sasrec", "bce")
    assert {d: r["gen_epochs"] for d, r in picked.items() if d != "original"} == {"dr4sr": 5.0, "rasr": 5.0}
    legend = [t.get_text() for t in rr.plot_convergence(load_results(root), "beauty", results_dir=root)
              .axes[0].get_legend().get_texts()]
    assert legend == ["original data", "DR4SR, gen. 5 ep.", "RaSR, gen. 5 ep."]


def test_a_sweep_draws_every_point_at_the_budget_most_points_have(tmp_path):
    root = tmp_path / "results"
    _write_run(root, ndcg20=0.040)
    _write_run(root, data="rasr", ndcg20=0.050, gen_epochs=0)  # the default window at the paper's 100 epochs
    for window, value in ((2, 0.041), (3, 0.042), (4, 0.043)):
        _write_run(root, data="rasr", ndcg20=value, gen_epochs=5, window=window)
    runs = rr.experiment_runs(load_results(root), "beauty", "full")
    points = rr._regen_points(runs, "sasrec", "bce", "window", [2, 3, 4, 5], ["ndcg@20"])
    assert points["gen_epochs"].tolist() == [5.0, 5.0, 5.0] and points["ndcg@20"].tolist() == [0.041, 0.042, 0.043]
    _write_run(root, data="rasr", ndcg20=0.044, gen_epochs=0, window=3)
    _write_run(root, data="rasr", ndcg20=0.045, gen_epochs=0, window=4)
    runs = rr.experiment_runs(load_results(root), "beauty", "full")
    points = rr._regen_points(runs, "sasrec", "bce", "window", [2, 3, 4], ["ndcg@20"])
    assert points["gen_epochs"].tolist() == [100.0] * 3 and points["ndcg@20"].tolist() == [0.050, 0.044, 0.045]
    cov = rr.plan_coverage(load_results(root), "beauty").set_index("cell")
    assert cov.loc[["window 2", "window 3", "window 4"], "gen_epochs"].tolist() == [100.0] * 3
    assert cov.loc[["window 2", "window 3", "window 4"], "ndcg@20"].tolist() == [0.050, 0.044, 0.045]


def test_claim_check_pairs_seeds_when_asked(results):
    df = load_results(results)
    unpaired = rr.claim_check(rr.table1_cells(df, "beauty", with_paper=False))
    paired = rr.claim_check(rr.table1_cells(df, "beauty", with_paper=False, common_seeds=True))
    key = ("ours", "sasrec", "bce", "ndcg@20")
    u, p = (c.set_index(["source", "model", "loss", "metric"]).loc[key] for c in (unpaired, paired))
    # DR4SR has seed 0 only: the paired check drops seed 1 of the original data and of RaSR
    assert (u["original"], u["rasr"]) == pytest.approx((0.041, 0.045))
    assert (p["original"], p["dr4sr"], p["rasr"]) == pytest.approx((0.040, 0.043, 0.044))
    assert (u["original_seeds"], u["dr4sr_seeds"], u["rasr_seeds"]) == (2, 1, 2)
    assert (p["original_seeds"], p["dr4sr_seeds"], p["rasr_seeds"]) == (1, 1, 1)
    assert "Seeds: 1 each." in rr.claim_sentences(paired)
    assert "Seeds: original data 2, DR4SR 1, RaSR 2 (means over unequal seeds" in rr.claim_sentences(unpaired)


def test_on_common_seeds_keeps_a_group_whose_variants_share_no_seed(tmp_path):
    _write_run(tmp_path, seed=0, ndcg20=0.040)
    _write_run(tmp_path, data="rasr", seed=3, ndcg20=0.050)
    cells = rr.table1_cells(load_results(tmp_path), "beauty", with_paper=False, common_seeds=True)
    assert sorted(cells["data"]) == ["original", "rasr"] and cells["seeds"].tolist() == [1, 1]
