"""RaSR's experiments read back from committed results: Table 1 cells, claim checks, Figs. 2-5.

Everything here reads the rows of :func:`rasr_lib.report.load_results` (one per results JSON)
and never trains. A run is placed in a cell of the paper's experiments by its configuration
columns (``data``, ``model``, ``loss``, ``regen/<key>``), never by a file name or a plan label:
the default cell is every regeneration setting at its :class:`~rasr_lib.config.RegenConfig`
default, the ablations and grids change one setting each (see
:mod:`rasr_lib.experiments.plans`). ``regen.generator_epochs`` is the one setting allowed to
differ from the paper's, because CPU runs train the generator for fewer epochs; it is shown as
the ``gen_epochs`` column (the epochs actually asked for, 0 = no generator).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rasr_lib.config import RegenConfig
from rasr_lib.report import METRICS, VARIANT_PATTERN, load_history, seed_spread

DATA_VARIANTS = ("original", "dr4sr", "rasr")  # the row order of Table 1
DATA_LABELS = {"original": "original data", "dr4sr": "DR4SR", "rasr": "RaSR"}
DATA_COLORS = {"original": "#8C8C8C", "dr4sr": "#4C72B0", "rasr": "#C44E52"}
METRIC_LABELS = {"recall@10": "R@10", "recall@20": "R@20", "ndcg@10": "N@10", "ndcg@20": "N@20"}
# Generator epochs when regen.generator_epochs is 0 (the presets of rasr_lib.rasr.generator;
# a test checks they agree, so this module need not import torch).
GENERATOR_DEFAULT_EPOCHS = {"rasr": 100, "dr4sr": 40}
# Every regeneration setting that places a run in a cell, at its default (method and
# generator_epochs excluded: the first is the `data` column, the second may differ).
REGEN_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(RegenConfig) if f.name not in ("method", "generator_epochs")
}
NOT_RUN = "not run yet"


def _t1(*values: float) -> dict[str, float]:
    """One Table 1 row (R@10, R@20, N@10, N@20) as a metrics dict."""
    return dict(zip(("recall@10", "recall@20", "ndcg@10", "ndcg@20"), values))


# RaSR Table 1 (full ranking, leave-one-out): dataset -> model -> data variant -> metrics.
# Transcribed from the paper's rows "GRU4Rec / DR4SR / RaSR (ours)" and "SASRec / DR4SR /
# RaSR (ours)"; tests/test_report_rasr.py checks every number against the paper's Delta rows.
RASR_TABLE1: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "beauty": {
        "gru4rec": {"original": _t1(0.0281, 0.0492, 0.0127, 0.0180),
                    "dr4sr": _t1(0.0324, 0.0557, 0.0148, 0.0211),
                    "rasr": _t1(0.0334, 0.0587, 0.0153, 0.0218)},
        "sasrec": {"original": _t1(0.0648, 0.0966, 0.0343, 0.0423),
                   "dr4sr": _t1(0.0685, 0.1021, 0.0371, 0.0455),
                   "rasr": _t1(0.0696, 0.1067, 0.0373, 0.0463)},
    },
    "sports": {
        "gru4rec": {"original": _t1(0.0193, 0.0319, 0.0095, 0.0126),
                    "dr4sr": _t1(0.0228, 0.0380, 0.0112, 0.0150),
                    "rasr": _t1(0.0233, 0.0396, 0.0116, 0.0157)},
        "sasrec": {"original": _t1(0.0320, 0.0512, 0.0166, 0.0214),
                   "dr4sr": _t1(0.0359, 0.0553, 0.0194, 0.0243),
                   "rasr": _t1(0.0398, 0.0621, 0.0215, 0.0271)},
    },
    "toys": {
        "gru4rec": {"original": _t1(0.0258, 0.0424, 0.0125, 0.0167),
                    "dr4sr": _t1(0.0304, 0.0475, 0.0143, 0.0184),
                    "rasr": _t1(0.0313, 0.0500, 0.0152, 0.0194)},
        "sasrec": {"original": _t1(0.0674, 0.0955, 0.0373, 0.0444),
                   "dr4sr": _t1(0.0786, 0.1069, 0.0451, 0.0523),
                   "rasr": _t1(0.0809, 0.1124, 0.0464, 0.0544)},
    },
    "ml-1m": {
        "gru4rec": {"original": _t1(0.1642, 0.2632, 0.0802, 0.1051),
                    "dr4sr": _t1(0.1737, 0.2876, 0.0836, 0.1122),
                    "rasr": _t1(0.1859, 0.2887, 0.0921, 0.1180)},
        "sasrec": {"original": _t1(0.1740, 0.2737, 0.0878, 0.1129),
                   "dr4sr": _t1(0.1886, 0.2902, 0.0963, 0.1218),
                   "rasr": _t1(0.1935, 0.2930, 0.0991, 0.1240)},
    },
}

CELL_COLUMNS = ["dataset", "model", "loss", "data", "source", "protocol", "gen_epochs", "seeds"]


# --------------------------------------------------------------------------- selecting runs


def experiment_runs(df: pd.DataFrame, dataset: str, profile: str = "full") -> pd.DataFrame:
    """The training runs of ``dataset`` and ``profile`` with a ``gen_epochs`` column added."""
    if df.empty or "kind" not in df:
        return df.assign(gen_epochs=pd.Series(dtype=float))
    runs = df[(df["kind"] == "experiment") & (df["dataset"] == dataset) & (df["profile"] == profile)]
    runs = runs.assign(data=runs["data"].fillna("original"))
    return runs.assign(gen_epochs=generator_epochs(runs))


def generator_epochs(runs: pd.DataFrame) -> pd.Series:
    """Generator epochs each run asked for: the config value, else its method's default; 0 without a generator."""
    asked = pd.to_numeric(runs.get("regen/generator_epochs", pd.Series(np.nan, index=runs.index)), errors="coerce")
    epochs = asked.where(asked > 0, runs["data"].map(GENERATOR_DEFAULT_EPOCHS)).astype(float)
    if "regen/regenerator" in runs:
        epochs = epochs.mask((runs["data"] == "rasr") & runs["regen/regenerator"].isin([False]), 0.0)
    return epochs.where(runs["data"] != "original")


def _column_matches(runs: pd.DataFrame, key: str, value: Any) -> pd.Series:
    """Rows whose ``regen/<key>`` equals ``value`` (a missing column or NaN counts as the default)."""
    col = f"regen/{key}"
    is_default = value == REGEN_DEFAULTS.get(key, object())
    if col not in runs:
        return pd.Series(is_default, index=runs.index)
    s = runs[col]
    missing = s.isna()
    if isinstance(value, bool):
        hit = s.isin([value])
    elif isinstance(value, (int, float)):
        num = pd.to_numeric(s, errors="coerce")
        hit = pd.Series(np.isclose(num.to_numpy(dtype=float), float(value)), index=runs.index)
    else:
        hit = s.astype(object) == value
    return hit.astype(bool) | (missing & is_default)


def select_runs(
    runs: pd.DataFrame, data: str, model: str | None = None, loss: str | None = None,
    regen: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Runs on ``data`` (and ``model``/``loss`` if given) at the default regeneration settings updated by ``regen``."""
    mask = runs["data"] == data
    if "path" in runs:  # a variant (-graph, -sg<hash>) or a run off its recipe (-o<hash>) is no cell
        mask &= ~runs["path"].astype(str).str.contains(VARIANT_PATTERN, regex=True)
    if model is not None:
        mask &= runs["model"] == model
    if loss is not None:
        mask &= runs["loss"] == loss
    if data != "original":
        for key, value in {**REGEN_DEFAULTS, **(regen or {})}.items():
            mask &= _column_matches(runs, key, value)
    return runs[mask]


def _mean_over_seeds(runs: pd.DataFrame, keys: list[str], metrics: Iterable[str]) -> pd.DataFrame:
    """Mean test metrics per ``keys`` + gen_epochs, with the number of seeds and the first path."""
    metrics = list(metrics)
    cols = [f"test/{m}" for m in metrics]
    runs = runs.assign(**{c: pd.to_numeric(runs[c], errors="coerce") if c in runs else np.nan for c in cols},
                       protocol=runs["protocol"].fillna("-"), loss=runs["loss"].fillna("-"))
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "gen_epochs", "seeds", "path", *metrics])
    runs = runs.sort_values("seed", kind="stable")
    out = runs.groupby([*keys, "gen_epochs"], dropna=False, sort=False).agg(
        seeds=("seed", "nunique"), path=("path", "first"), **{m: (c, "mean") for m, c in zip(metrics, cols)})
    return out.reset_index()


def _best_group(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys``: the one with the most generator epochs, then the most seeds."""
    if cells.empty:
        return cells
    ranked = cells.assign(_ep=cells["gen_epochs"].fillna(-1)).sort_values(
        ["_ep", "seeds"], ascending=False, kind="stable")
    return ranked.drop_duplicates(keys).drop(columns="_ep")


def budget_level(cells: pd.DataFrame) -> pd.Series:
    """Rank of each regenerated row's generator budget: inf at its method's paper epochs, else the epochs."""
    paper = cells["gen_epochs"] == cells["data"].map(GENERATOR_DEFAULT_EPOCHS)
    return cells["gen_epochs"].astype(float).mask(paper, math.inf)


def _at_shared_budget(group: pd.DataFrame) -> pd.Series:
    """Bool per row of one (model, loss): False for DR4SR/RaSR rows off the largest budget level both have."""
    level = budget_level(group)
    shared = set(level[group["data"] == "dr4sr"].dropna()) & set(level[group["data"] == "rasr"].dropna())
    regenerated = group["data"].isin(["dr4sr", "rasr"])
    return ~regenerated | (level == max(shared)) if shared else pd.Series(True, index=group.index)


def _matched_budgets(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``cells`` with DR4SR and RaSR kept, per ``keys``, at the largest budget level they share (if any)."""
    if cells.empty:
        return cells
    keep = pd.concat([_at_shared_budget(group) for _, group in cells.groupby(keys, dropna=False, sort=False)])
    return cells[keep.reindex(cells.index).astype(bool)]


# --------------------------------------------------------------------------- Table 1


def paper_table1(dataset: str, metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """RaSR Table 1's SASRec and GRU4Rec rows for ``dataset`` in the layout of :func:`table1_cells`."""
    metrics = list(metrics)
    rows = [{"dataset": dataset, "model": model, "loss": "-", "data": data, "source": "paper",
             "protocol": "full ranking", "gen_epochs": 100.0 if data == "rasr" else math.nan,
             "seeds": math.nan, **{m: values[m] for m in metrics}}
            for model, variants in RASR_TABLE1.get(dataset, {}).items() for data, values in variants.items()]
    return pd.DataFrame(rows, columns=[*CELL_COLUMNS, *metrics])


def _add_gains(cells: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Relative gain of every row over the original-data row of the same source, model, loss and protocol."""
    keys = ["source", "model", "loss", "protocol"]
    base = cells[cells["data"] == "original"].drop_duplicates(keys)[keys + metrics]
    merged = cells.merge(base, on=keys, how="left", suffixes=("", "_base"))
    for m in metrics:
        merged[f"gain {m}"] = merged[m] / merged[f"{m}_base"] - 1.0
    return merged.drop(columns=[f"{m}_base" for m in metrics])


def on_common_seeds(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``runs`` cut, per ``keys``, to the seeds that every data variant in the group has.

    A mean over five seeds set against one seed's value mixes seed noise into the comparison, so
    a paired check keeps only the shared seeds. A group whose variants share no seed is kept
    whole: an unpaired comparison says more than none, and the seed counts show it.
    """
    if runs.empty:
        return runs
    kept = []
    for _, group in runs.groupby(keys, dropna=False, sort=False):
        shared = set.intersection(*(set(g["seed"]) for _, g in group.groupby("data", sort=False)))
        kept.append(group[group["seed"].isin(shared)] if shared else group)
    return pd.concat(kept).sort_index()


def table1_cells(
    df: pd.DataFrame, dataset: str, profile: str = "full", metrics: Iterable[str] = METRICS,
    with_paper: bool = True, common_seeds: bool = False,
) -> pd.DataFrame:
    """Our Table 1 cells (mean over seeds, gain over our original data) with the paper's rows beside.

    A cell is (model, loss, data, protocol, gen_epochs): runs on regenerated data count only
    at the default regeneration settings (ratio 1, window 2, decay 0.8, every component on);
    runs that differ only in the generator epochs stay separate rows. ``gain <metric>`` is
    relative (0.05 = +5 %) to the original-data row of the same source, model, loss and protocol.
    ``common_seeds`` keeps, per (model, loss, protocol), only the seeds that every data variant
    with a run has (see :func:`on_common_seeds`), so that a comparison is paired.
    """
    metrics = list(metrics)
    runs = experiment_runs(df, dataset, profile)
    if not runs.empty:  # the backbones of the table1 plan; other models' rows are on the results page
        from rasr_lib.experiments.plans import TABLE1_MODELS

        runs = runs[runs["model"].isin(TABLE1_MODELS)]
    keys = ["model", "loss", "data", "protocol"]
    picked = pd.concat([select_runs(runs, d) for d in DATA_VARIANTS]) if not runs.empty else runs
    if common_seeds:
        picked = on_common_seeds(picked, ["model", "loss", "protocol"])
    ours = _mean_over_seeds(picked, keys, metrics).drop(columns="path")
    ours = ours.assign(dataset=dataset, source="ours")[[*CELL_COLUMNS, *metrics]]
    parts = [ours] + ([paper_table1(dataset, metrics)] if with_paper else [])
    cells = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else ours
    cells = _add_gains(cells, metrics)
    order = cells["data"].map({d: i for i, d in enumerate(DATA_VARIANTS)})
    cells = cells.assign(_o=order, _s=cells["source"] != "ours", _e=cells["gen_epochs"].fillna(-1))
    cells = cells.sort_values(["model", "_s", "loss", "_o", "_e"], kind="stable")
    return cells.drop(columns=["_o", "_s", "_e"]).reset_index(drop=True)


def claim_check(cells: pd.DataFrame, metrics: Iterable[str] = ("ndcg@20", "recall@20")) -> pd.DataFrame:
    """Per (source, model, loss, metric): the three variants' values and whether RaSR > DR4SR > original holds.

    DR4SR and RaSR are compared at the same generator budget: the largest that both have for a
    (model, loss), where each method's paper epochs (40 and 100) count as one budget, above any
    number. Where they share none, each variant's row with the most generator epochs (then
    seeds) is used. A comparison with a missing side is ``<NA>``; ``holds`` is ``<NA>`` unless
    all three variants are present.
    """
    keys = ["source", "model", "loss"]
    columns = [*keys, "metric", *DATA_VARIANTS, "dr4sr_gen_epochs", "rasr_gen_epochs",
               *(f"{d}_seeds" for d in DATA_VARIANTS),
               "dr4sr > original", "rasr > original", "rasr > dr4sr", "holds"]
    if cells.empty:
        return pd.DataFrame(columns=columns)
    best = _best_group(_matched_budgets(cells, keys), [*keys, "data"])
    out = []
    for m in metrics:
        wide = best.set_index([*keys, "data"])[m].astype(float).unstack("data")
        wide = wide.reindex(columns=list(DATA_VARIANTS)).reset_index()
        wide.columns.name = None
        wide["metric"] = m
        out.append(wide)
    table = pd.concat(out, ignore_index=True)
    for data in ("dr4sr", "rasr"):
        gen = best[best["data"] == data].set_index(keys)["gen_epochs"]
        table[f"{data}_gen_epochs"] = table.set_index(keys).index.map(gen.to_dict()).astype(float)
    for data in DATA_VARIANTS:
        seeds = best[best["data"] == data].set_index(keys)["seeds"]
        table[f"{data}_seeds"] = table.set_index(keys).index.map(seeds.to_dict()).astype(float)

    def gt(a: str, b: str) -> pd.Series:
        """a > b as nullable booleans (NA where a side is missing)."""
        res = (table[a] > table[b]).astype("boolean")
        return res.mask(table[a].isna() | table[b].isna())

    table["dr4sr > original"] = gt("dr4sr", "original")
    table["rasr > original"] = gt("rasr", "original")
    table["rasr > dr4sr"] = gt("rasr", "dr4sr")
    table["holds"] = table["rasr > dr4sr"] & table["dr4sr > original"]
    table["holds"] = table["holds"].mask(table[list(DATA_VARIANTS)].isna().any(axis=1))
    order = {m: i for i, m in enumerate(metrics)}
    table = table.assign(_s=table["source"] != "ours", _m=table["metric"].map(order))
    table = table.sort_values(["_s", "model", "loss", "_m"], kind="stable").drop(columns=["_s", "_m"])
    return table[columns].reset_index(drop=True)


def _pct(x: float) -> str:
    """``+4.2 %`` for a relative difference."""
    return f"{100 * x:+.1f} %"


def _seeds_sentence(row: pd.Series) -> str:
    """`` Seeds: 2 each.``, or each variant's count and a warning when they differ, for one claim row."""
    counts = {d: row.get(f"{d}_seeds", math.nan) for d in DATA_VARIANTS}
    counts = {d: int(n) for d, n in counts.items() if pd.notna(n)}
    if not counts:
        return ""
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f" Seeds: {n} each." if len(counts) > 1 else f" Seeds: {n}."
    listed = ", ".join(f"{DATA_LABELS[d]} {n}" for d, n in counts.items())
    return f" Seeds: {listed} (means over unequal seeds, so not a paired comparison)."


def claim_sentences(claims: pd.DataFrame, source: str = "ours") -> str:
    """Markdown bullets, one per (model, loss), saying whether RaSR > DR4SR > original holds and by how much."""
    rows = claims[claims["source"] == source]
    if rows.empty:
        return f"No Table 1 cells of {source!r} to check yet."
    lines = []
    for (model, loss), group in rows.groupby(["model", "loss"], sort=True):
        parts = []
        for r in group.itertuples(index=False):
            name = METRIC_LABELS.get(r.metric, r.metric)
            have = [d for d in DATA_VARIANTS if not pd.isna(getattr(r, d))]
            values = ", ".join(f"{DATA_LABELS[d]} {getattr(r, d):.4f}" for d in have)
            missing = [DATA_LABELS[d] for d in DATA_VARIANTS if d not in have]
            if len(have) == 3:
                verdict = "**holds**" if bool(r.holds) else "**does not hold**"
                text = (f"{name}: {values}; RaSR > DR4SR > original {verdict} (RaSR vs DR4SR "
                        f"{_pct(r.rasr / r.dr4sr - 1)}, vs original {_pct(r.rasr / r.original - 1)})")
            elif have:
                text = f"{name}: {values}; cannot check yet ({', '.join(missing)} {NOT_RUN})"
            else:
                text = f"{name}: {NOT_RUN}"
            parts.append(text)
        name = model if loss == "-" else f"{model}, {loss}"
        first = group.iloc[0]
        budgets = [f"{DATA_LABELS[d]} {first[f'{d}_gen_epochs']:.0f}"
                   + (" (the paper's)" if first[f"{d}_gen_epochs"] == GENERATOR_DEFAULT_EPOCHS[d] else "")
                   for d in ("dr4sr", "rasr") if pd.notna(first.get(f"{d}_gen_epochs", math.nan))]
        budget = f" Generator epochs: {', '.join(budgets)}." if budgets else ""
        lines.append(f"- **{name}** — " + "; ".join(parts) + "." + budget + _seeds_sentence(first))
    return "\n".join(lines)


def other_datasets_claims(df: pd.DataFrame, shown: str, profile: str = "full") -> str:
    """Markdown: the claim check of every dataset but ``shown`` that has a run on regenerated data.

    One heading line per dataset, then :func:`claim_sentences` of its Table 1 cells; a sentence
    saying so when no other dataset has one.
    """
    blocks = []
    for dataset in sorted(set(df["dataset"].dropna()) - {shown}) if "dataset" in df else []:
        runs = experiment_runs(df, dataset, profile)
        if runs.empty or not any(len(select_runs(runs, d)) for d in ("dr4sr", "rasr")):
            continue
        claims = claim_check(table1_cells(df, dataset, profile, with_paper=False, common_seeds=True))
        blocks.append(f"**{dataset}**\n\n{claim_sentences(claims)}")
    return "\n\n".join(blocks) if blocks else "No other dataset has a run on regenerated data yet."


def seed_spread_sentence(df: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> str:
    """One Markdown sentence: the seed-to-seed spread of test ``metric`` of every full-profile group with 2+ seeds."""
    runs = df[(df["dataset"] == dataset) & (df["profile"] == "full")] if len(df) else df
    spread = seed_spread(runs, metric) if len(runs) else pd.DataFrame()
    name = METRIC_LABELS.get(metric, metric)
    if spread.empty:
        return f"No model has two or more seeds committed on {dataset} yet, so the spread is not measured."
    parts = []
    for r in spread.rename(columns={"cv %": "cv"}).itertuples(index=False):
        protocol = "" if str(r.protocol).startswith("full") else f", {r.protocol}"
        parts.append(f"{r.model} ({r.loss}{protocol}) {r.mean:.4f} ± {r.std:.4f}, {r.cv:.1f} % of the mean "
                     f"({r.seeds} seeds)")
    low, high = 2 * float(spread["cv %"].min()), 2 * float(spread["cv %"].max())
    bound = f"{high:.0f} %" if round(low) == round(high) else f"{low:.0f}-{high:.0f} % (by model)"
    return (f"Test {name} over seeds on {dataset}: " + "; ".join(parts) + ". A one-seed difference "
            f"smaller than about {bound}, twice these spreads, is not evidence either way.")


def regenerated_seed_spread(
    df: pd.DataFrame, dataset: str, metric: str = "ndcg@20", profile: str = "full",
) -> pd.DataFrame:
    """Seed-to-seed spread of test ``metric`` per Table 1 cell on regenerated data with 2+ seeds.

    On regenerated data a seed reruns the whole pipeline (pre-training, pattern pairs, generator,
    decoding), so this spread holds the data's noise as well as the training's. Columns: model,
    loss, data, protocol, gen_epochs, seeds, mean, std (ddof 1), ``cv %``, the original data's
    mean and std on the same seeds (NaN unless it has every one of them), and the smallest and
    largest regenerated set behind the cell (``rows min``, ``rows max``; NaN where not recorded).
    Only the Table 1 backbones count, as in :func:`table1_cells`.
    """
    cols = ["model", "loss", "data", "protocol", "gen_epochs", "seeds", "mean", "std", "cv %",
            "original mean", "original std", "rows min", "rows max"]
    column = f"test/{metric}"
    runs = experiment_runs(df, dataset, profile)
    if runs.empty or column not in runs:
        return pd.DataFrame(columns=cols)
    from rasr_lib.experiments.plans import TABLE1_MODELS  # imported here: it loads the runners

    runs = runs[runs["model"].isin(TABLE1_MODELS)]
    runs = runs.assign(**{column: pd.to_numeric(runs[column], errors="coerce"),
                          "protocol": runs["protocol"].fillna("-")}).dropna(subset=[column])
    regenerated = pd.concat([select_runs(runs, d) for d in DATA_VARIANTS if d != "original"])
    rows = []
    for (model, loss, data, protocol, epochs), group in regenerated.groupby(
            ["model", "loss", "data", "protocol", "gen_epochs"], dropna=False, sort=True):
        per_seed = group.groupby("seed")[column].mean()
        if len(per_seed) < 2:
            continue
        original = select_runs(runs, "original", model, loss)
        original = original[original["protocol"] == protocol].groupby("seed")[column].mean()
        paired = original.reindex(per_seed.index)
        has_all = bool(paired.notna().all())
        mean, std = float(per_seed.mean()), float(per_seed.std(ddof=1))
        sizes = pd.to_numeric(group["regenerated_rows"], errors="coerce")
        rows.append({"model": model, "loss": loss, "data": data, "protocol": protocol, "gen_epochs": epochs,
                     "seeds": len(per_seed), "mean": mean, "std": std, "cv %": 100 * std / mean,
                     "original mean": float(paired.mean()) if has_all else math.nan,
                     "original std": float(paired.std(ddof=1)) if has_all else math.nan,
                     "rows min": float(sizes.min()), "rows max": float(sizes.max())})
    return pd.DataFrame(rows, columns=cols)


def regenerated_seed_spread_sentence(df: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> str:
    """One Markdown sentence on :func:`regenerated_seed_spread`, or one saying no regenerated cell has 2+ seeds."""
    spread = regenerated_seed_spread(df, dataset, metric)
    name = METRIC_LABELS.get(metric, metric)
    if spread.empty:
        return (f"No Table 1 cell on regenerated {dataset} data has two or more seeds committed yet, so "
                "the spread that includes the regenerated set's own noise is not measured.")
    parts = []
    for r in spread.to_dict("records"):
        label = DATA_LABELS.get(r["data"], r["data"])
        text = (f"{r['model']} ({r['loss']}) on {label} data, generator {r['gen_epochs']:.0f} epochs: "
                f"{r['mean']:.4f} ± {r['std']:.4f}, {r['cv %']:.1f} % of the mean ({r['seeds']} seeds)")
        if not math.isnan(r["original mean"]):
            text += f"; the original data on the same seeds {r['original mean']:.4f} ± {r['original std']:.4f}"
        if not math.isnan(r["rows min"]):
            text += (f"; regenerated sets of {r['rows min']:,.0f} rows" if r["rows min"] == r["rows max"] else
                     f"; regenerated sets of {r['rows min']:,.0f} to {r['rows max']:,.0f} rows "
                     f"({100 * (r['rows max'] / r['rows min'] - 1):.0f} % apart)")
        parts.append(text)
    return (f"On regenerated data a seed also reruns the pipeline that makes the set, so its spread holds "
            f"the data's noise too. Test {name} over seeds on {dataset}: " + ". ".join(parts) + ".")


# --------------------------------------------------------------------------- plan coverage


def plan_cells(dataset: str, profile: str = "full") -> pd.DataFrame:
    """The cells of RaSR's plans (table1, fig3, fig4, fig5): plan, cell, model, loss, data, changed regen settings."""
    from rasr_lib.experiments.plans import RASR_PLANS, plan_configs  # imported here: it loads the runners

    rows = []
    for plan in RASR_PLANS:
        for label, cfg in plan_configs(plan, dataset, profile):
            regen = dataclasses.asdict(cfg.regen)
            changed = {k: v for k, v in regen.items() if k in REGEN_DEFAULTS and v != REGEN_DEFAULTS[k]}
            data = "original" if cfg.regen.method == "none" else cfg.regen.method
            rows.append({"plan": plan, "cell": label, "model": cfg.model.name, "loss": cfg.train.loss,
                         "data": data, "regen": changed})
    return pd.DataFrame(rows)


def plan_pipelines(dataset: str, profile: str = "full") -> pd.DataFrame:
    """One row per regeneration pipeline the plans need (settings except ``ratio``), with the cells sharing it."""
    cells = plan_cells(dataset, profile)
    cells = cells[cells["data"] != "original"]
    settings = cells["regen"].map(lambda r: ", ".join(f"{k}={v}" for k, v in sorted(r.items()) if k != "ratio"))
    cells = cells.assign(settings=settings.replace("", "defaults"), label=cells["plan"] + ": " + cells["cell"],
                         generator=cells["regen"].map(lambda r: r.get("regenerator", True)))
    out = cells.groupby(["data", "settings"], sort=False).agg(
        generator=("generator", "first"), cells=("label", list)).reset_index()
    return out


def plan_coverage(df: pd.DataFrame, dataset: str, profile: str = "full") -> pd.DataFrame:
    """Every plan cell with the runs that fill it: seeds, generator epochs, device, mean wall hours, R@20, N@20.

    A figure's cells (Figs. 3-5) are read at the generator budget most of them have, as the
    figures draw them; a Table 1 cell at its most generator epochs. ``wall_time_h`` is the run's
    own wall time: it includes the regeneration stages that run computed itself, and nothing for
    a pipeline it found finished (cells share pipelines).
    """
    runs = experiment_runs(df, dataset, profile)
    cells = plan_cells(dataset, profile).to_dict("records")
    hits, groups = {}, {}
    for i, cell in enumerate(cells):
        hits[i] = select_runs(runs, cell["data"], cell["model"], cell["loss"], cell["regen"]) if not runs.empty \
            else runs
        means = _mean_over_seeds(hits[i], ["model"], ("recall@20", "ndcg@20"))
        if not means.empty:
            groups.setdefault(cell["plan"], {})[i] = means
    chosen = {}  # a figure's points at one budget (as the figures draw them); Table 1 cells at their most epochs
    for plan, plan_groups in groups.items():
        chosen |= (_at_common_budget(plan_groups) if plan != "table1" else
                   {i: _best_group(g, ["model"]).iloc[0] for i, g in plan_groups.items()})
    out = []
    for i, cell in enumerate(cells):
        hit = hits[i]
        row = {k: cell[k] for k in ("plan", "cell", "model", "loss", "data")}
        if i not in chosen:
            row.update(committed=False, seeds=0, gen_epochs=math.nan, device=None, wall_time_h=math.nan,
                       **{"recall@20": math.nan, "ndcg@20": math.nan})
        else:
            best = chosen[i]
            ran = hit[hit["gen_epochs"].fillna(-1) == (-1 if pd.isna(best["gen_epochs"]) else best["gen_epochs"])]
            row.update(committed=True, seeds=int(best["seeds"]), gen_epochs=float(best["gen_epochs"]),
                       device=str(ran["device"].iloc[0]),
                       wall_time_h=float(pd.to_numeric(ran["wall_time_s"], errors="coerce").mean()) / 3600,
                       **{"recall@20": float(best["recall@20"]), "ndcg@20": float(best["ndcg@20"])})
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- figures


def regenerator_verdict(cov: pd.DataFrame) -> str:
    """Markdown: does Fig. 3's claim (removing the regenerator hurts most) hold in the committed cells?

    ``cov`` is :func:`plan_coverage`; compares the "w/o regenerator" cell's N@20 with full RaSR's.
    """
    fig3 = cov[cov["plan"] == "fig3"].set_index("cell")
    if not {"RaSR", "w/o regenerator"} <= set(fig3.index) or fig3.loc[
            ["RaSR", "w/o regenerator"], "ndcg@20"].isna().any():
        return f"The 'w/o regenerator' comparison is {NOT_RUN}."
    change = 100 * (fig3.loc["w/o regenerator", "ndcg@20"] / fig3.loc["RaSR", "ndcg@20"] - 1)
    verdict = ("holds here: the regenerator adds to the augmented data" if change < 0 else
               "does not hold here: the augmented variants alone are better training data than "
               "the regenerated set")
    return (f"Without the regenerator N@20 changes by **{change:+.1f} %** against full RaSR, so the "
            f"paper's claim that the regenerator matters most {verdict}. Our generator trained for "
            f"{fig3.loc['RaSR', 'gen_epochs']:.0f} epochs, the paper's for 100: the claim is about a "
            "generator trained to the end, and this cell is the one to revisit when one is.")


# RaSR Fig. 3: removing the regenerator hurts most, then the semantic, then the relational augmentation.
PAPER_ABLATION_ORDER = ("w/o regenerator", "w/o semantic aug.", "w/o relational aug.")


def ablation_order_verdict(cov: pd.DataFrame) -> str:
    """Markdown: do the committed Fig. 3 ablations fall in the paper's order (largest N@20 drop first)?

    ``cov`` is :func:`plan_coverage`. Needs full RaSR and at least two ablations committed.
    """
    fig3 = cov[cov["plan"] == "fig3"].set_index("cell")["ndcg@20"]
    if pd.isna(fig3.get("RaSR")):
        return f"The ablation order needs full RaSR, which is {NOT_RUN}."
    change = (100 * (fig3.reindex(list(PAPER_ABLATION_ORDER)) / fig3["RaSR"] - 1)).dropna()
    if len(change) < 2:
        return f"The ablation order needs at least two ablations; {len(change)} committed."
    ours = change.sort_values(kind="stable").index.tolist()
    paper = [cell for cell in PAPER_ABLATION_ORDER if cell in change.index]
    same = ours == paper
    listed = ", then ".join(f"{cell} ({change[cell]:+.1f} %)" for cell in ours)
    hurt = int((change < 0).sum())
    return (f"Largest N@20 drop first, ours: {listed}. The paper's order over the same cells is "
            f"{', then '.join(paper)}: ours is **{'the same' if same else 'different'}**. "
            f"{hurt} of {len(change)} removals lower N@20 (the paper: every one does).")


# Mean range of n independent normal draws in units of their standard deviation (the d2
# constant of quality control): what n settings spread by when only the seed matters.
RANGE_OVER_STD = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}


def sensitivity_verdict(cov: pd.DataFrame, df: pd.DataFrame, dataset: str) -> str:
    """Markdown: Fig. 5's window and decay ranges set against seed noise, and how many settings beat the original data.

    ``cov`` is :func:`plan_coverage`; ``df`` the results rows, read for the seed-to-seed spread
    of SASRec (BCE) on the original data, the backbone and loss of Fig. 5. A sweep of n one-seed
    cells is set against the range n runs would show from the seed alone (d2(n) standard deviations).
    """
    runs = df[(df["dataset"] == dataset) & (df["profile"] == "full")] if len(df) else df
    spread = seed_spread(runs, "ndcg@20") if len(runs) else pd.DataFrame()
    noise = spread[(spread["model"] == "sasrec") & (spread["loss"] == "bce")
                   & spread["protocol"].astype(str).str.startswith("full")] if len(spread) else spread
    cv = float(noise["cv %"].iloc[0]) if len(noise) else math.nan
    fig5 = cov[cov["plan"] == "fig5"].set_index("cell")["ndcg@20"].dropna()
    lines, values = [], []
    for key in ("window", "decay"):
        s = fig5[fig5.index.str.startswith(key)]
        if len(s) < 2:
            lines.append(f"- {key}: {len(s)} setting(s) committed, no range yet.")
            continue
        values.append(s)
        width = 100 * (s.max() - s.min()) / s.mean()
        line = (f"- {key}: N@20 from {s.min():.4f} ({s.idxmin()}) to {s.max():.4f} ({s.idxmax()}), "
                f"a range of **{width:.1f} %** of the mean over {len(s)} settings")
        if not math.isnan(cv) and len(s) in RANGE_OVER_STD:
            expected = RANGE_OVER_STD[len(s)] * cv
            verdict = ("within seed noise" if width <= expected else
                       "wider than seed noise alone, but not twice as wide: not conclusive" if width <= 2 * expected
                       else "more than twice what seed noise alone gives")
            line += f"; the seed alone would spread {len(s)} runs by about {expected:.1f} %: **{verdict}**"
        lines.append(line + ".")
    if len(noise):
        lines.append(f"- seed noise: {int(noise['seeds'].iloc[0])} seeds of SASRec (BCE) on the original data "
                     f"differ by a standard deviation of {cv:.1f} % of their mean"
                     + (" (two seeds: one degree of freedom, a rough estimate)" if int(noise["seeds"].iloc[0]) == 2
                        else "") + "; a regenerated-data run also varies with its generator's seed, so this "
                     "is a lower bound on its noise.")
    else:
        lines.append("- seed noise: SASRec (BCE) has fewer than two seeds on the original data, so the "
                     "ranges cannot be set against it yet.")
    original = cov[(cov["plan"] == "table1") & (cov["cell"] == "sasrec/bce/original")]["ndcg@20"].dropna()
    if values and len(original):
        every = pd.concat(values)
        every = every[~every.index.duplicated()]
        above = int((every > float(original.iloc[0])).sum())
        lines.append(f"- against the original data (N@20 {float(original.iloc[0]):.4f}): {above} of "
                     f"{len(every)} committed settings are above it.")
    return "\n".join(lines)


def _not_run(ax, text: str = NOT_RUN) -> None:
    """Mark an empty panel with ``text`` in its middle."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.45")
    ax.set_xticks([])
    ax.set_yticks([])


def _epochs_note(epochs: pd.Series) -> str:
    """``generator epochs 10`` or ``generator epochs 5-10`` for the rows drawn (empty when none)."""
    e = epochs.dropna()
    e = e[e > 0]
    if e.empty:
        return ""
    lo, hi = int(e.min()), int(e.max())
    return f"generator epochs {lo}" if lo == hi else f"generator epochs {lo}-{hi}"


def history_runs(runs: pd.DataFrame, model: str, loss: str) -> dict[str, pd.Series]:
    """Per data variant, the default-settings run whose curve Fig. 2 draws.

    DR4SR and RaSR at the largest generator budget both have (as :func:`claim_check`), else each
    at its most generator epochs; then the lowest seed.
    """
    found = [] if runs.empty else [h for h in (select_runs(runs, d, model, loss) for d in DATA_VARIANTS)
                                   if not h.empty]
    if not found:
        return {}
    hits = pd.concat(found)
    hits = hits[_at_shared_budget(hits)]
    picked = {}
    for data in DATA_VARIANTS:
        hit = hits[hits["data"] == data]
        if hit.empty:
            continue
        hit = hit.assign(_ep=hit["gen_epochs"].fillna(-1)).sort_values(["_ep", "seed"], ascending=[False, True])
        picked[data] = hit.iloc[0]
    return picked


def plot_convergence(
    df: pd.DataFrame, dataset: str, model: str = "sasrec", loss: str = "bce", profile: str = "full",
    results_dir=None, column: str = "valid_ndcg@20", ax=None,
) -> Figure:
    """Fig. 2: validation N@20 per epoch of one (model, loss), one line per data variant committed."""
    fig = ax.figure if ax is not None else Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = ax if ax is not None else fig.subplots()
    runs = experiment_runs(df, dataset, profile)
    picked = history_runs(runs, model, loss)
    drawn = []
    for data, run in picked.items():
        hist = load_history(run["path"], results_dir)
        if column not in hist or "epoch" not in hist or hist.empty:
            continue
        note = f", gen. {int(run['gen_epochs'])} ep." if data != "original" and run["gen_epochs"] > 0 else ""
        ax.plot(hist["epoch"], hist[column], color=DATA_COLORS[data], label=f"{DATA_LABELS[data]}{note}")
        best = hist.loc[hist[column].idxmax()]
        ax.scatter([best["epoch"]], [best[column]], color=DATA_COLORS[data], s=18, zorder=3)
        drawn.append(data)
    missing = [DATA_LABELS[d] for d in DATA_VARIANTS if d not in drawn]
    title = f"{dataset} · {model} · {loss}"
    if not drawn:
        _not_run(ax)
    else:
        ax.set(xlabel="epoch", ylabel=column.replace("valid_", "validation "))
        ax.legend(fontsize="small")
        if missing:
            title += f"\n{NOT_RUN}: {', '.join(missing)}"
    ax.set_title(title, fontsize="medium")
    return fig


def plot_convergence_grid(
    df: pd.DataFrame, dataset: str, models: Iterable[str] = ("sasrec", "gru4rec"),
    losses: Iterable[str] = ("bce", "ce"), profile: str = "full", results_dir=None,
) -> Figure:
    """Fig. 2 for every (model, loss) of Table 1: one panel each (rows: models, columns: losses)."""
    models, losses = list(models), list(losses)
    fig = Figure(figsize=(5 * len(losses), 3.3 * len(models)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(models), len(losses), squeeze=False))
    for i, model in enumerate(models):
        for j, loss in enumerate(losses):
            plot_convergence(df, dataset, model, loss, profile, results_dir, ax=axes[i, j])
    return fig


def _at_common_budget(groups: Mapping[Any, pd.DataFrame]) -> dict[Any, pd.Series]:
    """One row per point of a figure, every point at one generator budget where it has it.

    ``groups`` maps a point to its mean rows, one per generator budget (``gen_epochs``). The
    budget is the one most points have (ties: the larger), so a sweep compares like with like;
    a point without it shows its most generator epochs (the figure's epochs note then gives a
    range).
    """
    counts = pd.Series([e for g in groups.values() for e in g["gen_epochs"].fillna(-1).unique()])
    if counts.empty:
        return {}
    tally = counts.value_counts()
    common = max(tally.index, key=lambda e: (tally[e], e))
    picked = {}
    for point, group in groups.items():
        at = group[group["gen_epochs"].fillna(-1) == common]
        best = _best_group(at if not at.empty else group, ["model"])
        if not best.empty:
            picked[point] = best.iloc[0]
    return picked


def _regen_points(
    runs: pd.DataFrame, model: str, loss: str, key: str, values: Iterable[Any], metrics: list[str],
) -> pd.DataFrame:
    """Mean metrics of the RaSR runs at the defaults with ``key`` set to each of ``values`` (present ones only)."""
    groups = {}
    for v in values:
        hit = select_runs(runs, "rasr", model, loss, {key: v}) if not runs.empty else runs
        means = _mean_over_seeds(hit, ["model"], metrics)
        if not means.empty:
            groups[v] = means
    rows = [{"value": v, **row[["gen_epochs", "seeds", *metrics]].to_dict()}
            for v, row in _at_common_budget(groups).items()]
    return pd.DataFrame(rows, columns=["value", "gen_epochs", "seeds", *metrics])


def _original_point(runs: pd.DataFrame, model: str, loss: str, metrics: list[str]) -> pd.Series | None:
    """Mean metrics of the original-data run of (model, loss), or None."""
    hit = select_runs(runs, "original", model, loss) if not runs.empty else runs
    means = _mean_over_seeds(hit, ["model"], metrics)
    return None if means.empty else means.iloc[0]


def plot_ablation(
    df: pd.DataFrame, dataset: str, model: str = "sasrec", loss: str = "bce", profile: str = "full",
    metrics: Iterable[str] = ("recall@20", "ndcg@20"),
) -> Figure:
    """Fig. 3: RaSR and each component removed, one bar per committed variant, one panel per metric."""
    from rasr_lib.experiments.plans import FIG3_ABLATIONS

    metrics = list(metrics)
    runs = experiment_runs(df, dataset, profile)
    variants = {label: {k.removeprefix("regen."): v for k, v in over.items()} for label, over in FIG3_ABLATIONS.items()}
    groups = {}
    for label, over in variants.items():
        hit = select_runs(runs, "rasr", model, loss, over) if not runs.empty else runs
        means = _mean_over_seeds(hit, ["model"], metrics)
        if not means.empty:
            groups[label] = means
    points = _at_common_budget(groups)
    original = _original_point(runs, model, loss, metrics)
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)[0])
    labels = list(variants)
    colors = ["#C44E52", "#55A868", "#8172B2", "#CCB974", "#64B5CD"]
    for ax, m in zip(axes, metrics):
        if not points:
            _not_run(ax)
            ax.set_title(METRIC_LABELS.get(m, m))
            continue
        for x, label in enumerate(labels):
            if label in points:
                v = float(points[label][m])
                ax.bar(x, v, color=colors[x % len(colors)], width=0.7)
                ax.text(x, v, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
            else:
                ax.text(x, 0.05, NOT_RUN, ha="center", va="bottom", rotation=90, fontsize=9, color="0.45",
                        transform=ax.get_xaxis_transform())
        if original is not None and not pd.isna(original[m]):
            ax.axhline(float(original[m]), color=DATA_COLORS["original"], ls="--", lw=1, label="original data")
            ax.legend(fontsize="small", loc="lower right")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        ax.set(ylabel=f"test {METRIC_LABELS.get(m, m)}", title=METRIC_LABELS.get(m, m))
    note = _epochs_note(pd.Series([p["gen_epochs"] for p in points.values()], dtype=float))
    fig.suptitle(f"{dataset} · {model} · {loss}" + (f" ({note})" if note else ""), fontsize="medium")
    return fig


def _sweep_panel(ax, points: pd.DataFrame, values: list, xlabel: str, original: pd.Series | None) -> None:
    """One sensitivity panel: N@20 (left axis) and R@20 (right axis) over ``values``; missing ones named."""
    missing = [v for v in values if not (points["value"] == v).any()]
    if points.empty:
        _not_run(ax)
        ax.set_xlabel(xlabel)
        return
    specs = [("ndcg@20", ax, "#C44E52", "o", "-"), ("recall@20", ax.twinx(), "#4C72B0", "s", "--")]
    for m, axis, color, marker, ls in specs:
        axis.plot(points["value"], points[m], color=color, marker=marker, ls=ls, label=METRIC_LABELS[m])
        if original is not None and not pd.isna(original[m]):
            axis.axhline(float(original[m]), color=color, ls=":", lw=1, label=f"{METRIC_LABELS[m]} original data")
        axis.set_ylabel(f"test {METRIC_LABELS[m]}", color=color)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    note = _epochs_note(points["gen_epochs"])
    ax.set_xlabel(xlabel + (f"\n{NOT_RUN}: {', '.join(f'{v:g}' for v in missing)}" if missing else ""))
    ax.set_title(note, fontsize="small")
    handles = [h for a in (ax, specs[1][1]) for h in a.get_lines()]
    ax.legend(handles, [h.get_label() for h in handles], fontsize="x-small", loc="lower right")


def plot_ratio_grid(
    df: pd.DataFrame, dataset: str, model: str = "sasrec", loss: str = "bce", profile: str = "full",
) -> Figure:
    """Fig. 4: test N@20 and R@20 of RaSR over the fraction of regenerated data added (dotted: original data)."""
    from rasr_lib.experiments.plans import FIG4_RATIOS

    runs = experiment_runs(df, dataset, profile)
    metrics = ["recall@20", "ndcg@20"]
    points = _regen_points(runs, model, loss, "ratio", FIG4_RATIOS, metrics)
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    original = _original_point(runs, model, loss, metrics)
    _sweep_panel(ax, points, list(FIG4_RATIOS), "ratio of regenerated data", original)
    fig.suptitle(f"{dataset} · {model} · {loss}", fontsize="medium")
    return fig


def plot_sensitivity(
    df: pd.DataFrame, dataset: str, model: str = "sasrec", loss: str = "bce", profile: str = "full",
) -> Figure:
    """Fig. 5: test N@20 and R@20 of RaSR over (a) the co-occurrence window and (b) the temporal decay."""
    from rasr_lib.experiments.plans import FIG5_DECAYS, FIG5_WINDOWS

    runs = experiment_runs(df, dataset, profile)
    metrics = ["recall@20", "ndcg@20"]
    original = _original_point(runs, model, loss, metrics)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, values, xlabel in ((axes[0], "window", FIG5_WINDOWS, "(a) window size"),
                                    (axes[1], "decay", FIG5_DECAYS, "(b) decay factor λ")):
        _sweep_panel(ax, _regen_points(runs, model, loss, key, values, metrics), list(values), xlabel, original)
    fig.suptitle(f"{dataset} · {model} · {loss}", fontsize="medium")
    return fig


def _regenerated_runs(dataset: str, profile: str, results_dir) -> Iterable[tuple[str, dict, dict]]:
    """(file stem, result, its ``regen`` block) of each committed ``profile`` run on a regenerated set."""
    import json
    from pathlib import Path

    if results_dir is None:
        from rasr_lib.runtime import results_dir as default_results_dir

        results_dir = default_results_dir()
    for path in sorted((Path(results_dir) / dataset).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        regen = data.get("regen") or {}
        if data.get("profile") == profile and regen.get("pipeline"):
            yield path.stem, data, regen


def regenerated_sets(dataset: str, profile: str = "full", results_dir=None) -> pd.DataFrame:
    """The regenerated set behind every committed regenerated-data run: one row per result file.

    Columns: result (file stem), data, pipeline (its key), git commit, generator loss of the
    first epoch, regenerated rows (after the ratio), training rows and the regenerated rows' sha256
    (first 12 hex digits; empty for runs recorded before it was). Runs of one pipeline key that were
    regenerated by different code versions can differ (see :func:`regenerated_drift`).
    """
    cols = ["result", "data", "pipeline", "ratio", "git commit", "generator loss epoch 1",
            "regenerated rows", "training rows", "sha256"]
    rows = []
    for stem, data, regen in _regenerated_runs(dataset, profile, results_dir):
        history = regen.get("generator_history") or [{}]
        rows.append({"result": stem, "data": data.get("data_variant"),
                     "pipeline": str(regen["pipeline"]).rsplit("/", 1)[-1],
                     "ratio": ((data.get("config") or {}).get("regen") or {}).get("ratio", math.nan),
                     "git commit": data.get("git_commit"),
                     "generator loss epoch 1": history[0].get("loss", math.nan),
                     "regenerated rows": regen.get("n_regenerated"), "training rows": regen.get("n_training_rows"),
                     "sha256": (regen.get("regenerated_sha256") or "")[:12]})
    return pd.DataFrame(rows, columns=cols)


def regenerated_drift(sets: pd.DataFrame) -> str:
    """Markdown: for each (pipeline key, ratio) used by 2+ runs, whether their regenerated sets differ.

    Runs that all record the rows' sha256 are compared by it (equal digests: the same set, row for
    row); otherwise by size, where equal sizes do not prove equal sets but different sizes prove
    different ones.
    """
    lines = []
    for (key, ratio), group in sets.groupby(["pipeline", "ratio"], sort=True):
        if len(group) < 2:
            continue
        sizes = group["regenerated rows"].dropna().astype(int)
        digests = group["sha256"].fillna("")
        n_digests = int((digests != "").sum())
        head = f"- `{key}` at ratio {ratio:g}: {len(group)} runs"
        if n_digests == len(group) and digests.nunique() == 1:
            lines.append(f"{head}, all on one regenerated set ({sizes.iloc[0]:,} rows, sha256 {digests.iloc[0]}…).")
            continue
        if sizes.nunique() <= 1 and n_digests == len(group):
            lines.append(f"{head} on {digests.nunique()} different regenerated sets of {sizes.iloc[0]:,} rows "
                         "each (their sha256 differ).")
            continue
        if sizes.nunique() <= 1:
            recorded = f" ({n_digests} of {len(group)} record a sha256)" if n_digests else ""
            lines.append(f"{head}, all on {sizes.iloc[0]:,} regenerated rows{recorded}.")
            continue
        losses = group["generator loss epoch 1"].astype(float)
        lines.append(
            f"{head} on {sizes.nunique()} different regenerated sets "
            f"({sizes.min():,} to {sizes.max():,} rows, {100 * (sizes.max() / sizes.min() - 1):.2f} % apart); "
            f"the first generator epoch's loss differs by {losses.max() - losses.min():.1e}.")
    return "\n".join(lines) or "No pipeline key and ratio are shared by two committed runs yet."


def generator_costs(dataset: str, profile: str = "full", results_dir=None) -> pd.DataFrame:
    """Measured pipeline costs of the committed regenerated-data runs: one row per distinct pipeline.

    Columns: data, device, generator epochs run, seconds per generator epoch (mean), regeneration
    seconds, SASRec pre-training seconds; read from each result's ``regen`` block.
    """
    rows, seen = [], set()
    for _, data, regen in _regenerated_runs(dataset, profile, results_dir):
        if regen["pipeline"] in seen:
            continue
        seen.add(regen["pipeline"])
        history = regen.get("generator_history") or []
        timings = regen.get("pipeline_timings") or {}
        rows.append({"data": data.get("data_variant"), "device": data.get("device"),
                     "generator epochs": len(history),
                     "s per generator epoch": float(np.mean([e["seconds"] for e in history])) if history else math.nan,
                     "regenerate s": timings.get("regenerate_s", math.nan),
                     "pretrain s": timings.get("pretrain_s", math.nan)})
    return pd.DataFrame(rows, columns=["data", "device", "generator epochs", "s per generator epoch",
                                       "regenerate s", "pretrain s"])
