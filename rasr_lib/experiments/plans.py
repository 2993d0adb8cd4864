"""The papers' experiments as named plans of runs: RaSR's Table 1 and Figs. 3-5, SAGERec's Tables 3-5.

A plan is a list of (cell label, :class:`ExperimentConfig`). :func:`run_plan` runs every cell
with :func:`~rasr_lib.experiments.train_run.run_experiment`, so a finished cell is read back, an
interrupted one resumes, and the regeneration pipelines are shared between cells that differ
only in the backbone, the loss or the ratio. Chapter 07 reads the published results by their
config, not by these labels.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from rasr_lib.config import MODEL_DEFAULTS, ExperimentConfig, load_config
from rasr_lib.runtime import FolderBusy, lock_holder

log = logging.getLogger(__name__)

TABLE1_MODELS = ("sasrec", "gru4rec")
TABLE1_LOSSES = ("bce", "ce")
DATA_VARIANTS = ("none", "dr4sr", "rasr")
FIG3_ABLATIONS = {  # RaSR Fig. 3: each component removed in turn
    "RaSR": {},
    "w/o semantic aug.": {"regen.semantic_aug": False},
    "w/o relational aug.": {"regen.relational_aug": False},
    "w/o regenerator": {"regen.regenerator": False},
}
FIG4_RATIOS = (0.25, 0.5, 0.75, 1.0)  # fraction of the regenerated set added (paper: values not given)
FIG5_WINDOWS = (2, 3, 4, 5)  # co-occurrence window (paper default 2)
FIG5_DECAYS = (0.2, 0.4, 0.6, 0.8, 1.0)  # temporal decay lambda (paper default 0.8)
RASR_PLANS = ("table1", "fig3", "fig4", "fig5")

# SAGERec (Electronics 2025) §5.4-5.6. Table 3 (top-10) and Table 4 (top-20) are one grid: every
# run records both cut-offs. The paper is ambiguous about its protocol (§5.2 ranks every item,
# §5.3 samples 100 negatives), so each cell is run under both; the protocol is eval.protocol.
# the paper's Table 3/4 rows present here (TransRec is not: see the deviations page)
SAGEREC_TABLE3_MODELS = ("sagerec", "bpr", "caser", "gru4rec", "sasrec", "bert4rec", "s3rec", "dssrec",
                         "cl4srec", "sine")
SAGEREC_PROTOCOLS = ("full", "sampled100")
SAGEREC_N_SEEDS = 5  # §5.4: five seeds, paired t-test
SAGEREC_ABLATIONS = {  # SAGERec Table 5: each variant changes one switch of SageRecConfig
    "A full": {},
    "B w/o edge learning": {"sagerec.edge_learning": False},
    "C w/o graph": {"sagerec.graph": "none"},
    "D random graph": {"sagerec.graph": "random"},
    "E w/o position": {"sagerec.position": False},
}
# §5.6: the semantic graph module under other encoders, before/after (model.semantic_graph).
SAGEREC_ENCODER_MODELS = ("gru4rec", "bert4rec", "cl4srec")
SAGEREC_PLANS = ("sagerec-table3", "sagerec-table5", "sagerec-encoder")
# Issue 5: every backbone of the zoo on the original data, each with its own recipe (MODEL_DEFAULTS).
ZOO_PLANS = ("zoo",)
PLANS = RASR_PLANS + SAGEREC_PLANS + ZOO_PLANS
# `plan all`: every plan in the order a fresh dataset is best filled in: the original-data zoo and
# the two papers' main tables first, the sensitivity figures last.
ALL_PLANS_ORDER = ("zoo", "table1", "sagerec-table3", "sagerec-table5", "sagerec-encoder", "fig3", "fig4", "fig5")


def expand_plan(name: str) -> tuple[str, ...]:
    """The plans ``name`` stands for: ``all`` is :data:`ALL_PLANS_ORDER`, any other name itself."""
    return ALL_PLANS_ORDER if name == "all" else (name,)


def plan_configs(
    plan: str, dataset: str = "beauty", profile: str = "full", seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> list[tuple[str, ExperimentConfig]]:
    """The cells of ``plan`` (one of :data:`PLANS`) as (label, config).

    ``seed`` is the base seed: ``sagerec-table3`` runs seeds ``seed .. seed + 4``, every other
    plan runs ``seed`` alone. SAGERec cells on ML-1M use max_len 165 (§5.3; its recipe there, in
    :data:`~rasr_lib.config.DATASET_MODEL_DEFAULTS`) unless ``overrides`` set ``data.max_len``.
    """
    base = {"seed": seed, **(overrides or {})}

    def cfg(model: str = "sasrec", **extra) -> ExperimentConfig:
        return load_config(dataset, profile, {**base, **extra}, model=model)

    if plan == "table1":
        return [(f"{model}/{loss}/{'original' if data == 'none' else data}",
                 cfg(model, **{"train.loss": loss, "regen.method": data}))
                for model in TABLE1_MODELS for loss in TABLE1_LOSSES for data in DATA_VARIANTS]
    if plan == "fig3":
        return [(label, cfg(**{"regen.method": "rasr", **extra})) for label, extra in FIG3_ABLATIONS.items()]
    if plan == "fig4":
        return [(f"ratio {r:g}", cfg(**{"regen.method": "rasr", "regen.ratio": r})) for r in FIG4_RATIOS]
    if plan == "fig5":
        return ([(f"window {w}", cfg(**{"regen.method": "rasr", "regen.window": w})) for w in FIG5_WINDOWS]
                + [(f"decay {d:g}", cfg(**{"regen.method": "rasr", "regen.decay": d})) for d in FIG5_DECAYS])

    def sagerec_cfg(**extra) -> ExperimentConfig:
        return cfg("sagerec", **extra)  # on ML-1M its recipe has max_len 165 (DATASET_MODEL_DEFAULTS)

    if plan == "sagerec-table3":
        seeds = range(seed, seed + SAGEREC_N_SEEDS)
        return [(f"{model}/{protocol}/seed{s}",
                 sagerec_cfg(**{"eval.protocol": protocol, "seed": s}) if model == "sagerec"
                 else cfg(model, **{"eval.protocol": protocol, "seed": s}))
                for model in SAGEREC_TABLE3_MODELS for protocol in SAGEREC_PROTOCOLS for s in seeds]
    if plan == "sagerec-table5":
        return [(label, sagerec_cfg(**extra)) for label, extra in SAGEREC_ABLATIONS.items()]
    if plan == "sagerec-encoder":  # encoders of the zoo that exist in this version
        models = [m for m in SAGEREC_ENCODER_MODELS if m in MODEL_DEFAULTS]
        return [(f"{m}{'+graph' if graph else ''}", cfg(m, **{"model.semantic_graph": graph}))
                for m in models for graph in (False, True)]
    if plan == "zoo":  # the model's own loss (BERT4Rec, SINE, GCE-GNN: CE; the rest: DR4SR's BCE)
        return [(m, cfg(m)) for m in MODEL_DEFAULTS if m != "sagerec"]
    raise ValueError(f"unknown plan {plan!r}; choose from {PLANS}")


def _flat_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """Dotted {key: value} of the settings that name a run (evaluation batch size aside)."""
    from rasr_lib.config import hashed_settings

    out = {}
    for section, values in hashed_settings(cfg).items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items() if f"{section}.{k}" != "eval.batch_size"})
        else:
            out[section] = values
    return out


def closest_committed(cfg: ExperimentConfig) -> tuple[str, dict[str, tuple[Any, Any]]] | None:
    """The committed run nearest to ``cfg`` among those of its model, loss, seed, protocol and data variant.

    Returns (run name, {dotted key: (committed value, ``cfg``'s value)}) for the published result
    whose settings differ from ``cfg``'s in the fewest keys, or None when there is none. Lets
    ``plan --list`` say that a missing cell was run with other settings (e.g. a 5-epoch generator).
    """
    import json

    from rasr_lib.config import config_from_dict
    from rasr_lib.runtime import results_dir

    want = _flat_settings(cfg)
    stem = f"{cfg.model.name}-{cfg.train.loss}-{cfg.profile}-seed{cfg.seed}"
    best: tuple[str, dict] | None = None
    for path in sorted((results_dir() / cfg.data.dataset).glob(f"{stem}*.json")):
        try:
            other = config_from_dict(json.loads(path.read_text(encoding="utf-8")).get("config") or {})
        except (ValueError, TypeError, AttributeError):
            continue  # not a training result (or an older layout): nothing to compare
        same_kind = (other.seed, other.train.loss, other.eval.protocol, other.regen.method,
                     other.model.semantic_graph) == (cfg.seed, cfg.train.loss, cfg.eval.protocol,
                                                     cfg.regen.method, cfg.model.semantic_graph)
        if other.model.name != cfg.model.name or not same_kind:
            continue
        have = _flat_settings(other)
        diff = {k: (have.get(k), want.get(k)) for k in sorted(set(want) | set(have)) if have.get(k) != want.get(k)}
        if diff and (best is None or len(diff) < len(best[1])):
            best = (path.stem, diff)
    return best


def cell_status(cfg: ExperimentConfig) -> str:
    """Where a plan cell stands: ``committed N@20 .0371``, ``training now (process N on HOST)``,
    ``interrupted at epoch 40`` (resumable), ``checkpoint at epoch 12`` (a killed run),
    ``pre-training checkpoint at epoch 3`` (S3-Rec, before fine-tuning), ``continues caser-<hash>
    from its cap of 200 epochs`` (:func:`~rasr_lib.experiments.train_run.capped_checkpoint`) or ``missing`` (naming
    the nearest committed run, if any, and the settings it differs in: :func:`closest_committed`)."""
    import torch

    from rasr_lib.experiments.train_run import capped_checkpoint, committed_result, run_dir

    result = committed_result(cfg)
    checkpoint = run_dir(cfg) / "checkpoint.pt"
    if result is not None and not result.get("interrupted"):
        return f"committed N@20 {result['metrics']['test']['ndcg@20']:.4f}"
    holder = lock_holder(run_dir(cfg))
    if holder is not None:
        return f"training now ({holder})"
    if result is not None:
        return f"interrupted at epoch {result['epochs_run']}" + (" (resumable)" if checkpoint.exists() else "")
    if checkpoint.exists():
        epoch = torch.load(checkpoint, map_location="cpu", weights_only=False).get("epoch", 0)
        return f"checkpoint at epoch {epoch}"
    pretrain = run_dir(cfg) / "prepare.pt"
    if pretrain.exists():
        epoch = torch.load(pretrain, map_location="cpu", weights_only=False).get("epoch", 0)
        return f"pre-training checkpoint at epoch {epoch}"
    capped = capped_checkpoint(cfg)
    if capped is not None:
        return f"continues {capped[0].parent.name} from its cap of {capped[1]['epochs_run']} epochs"
    near = closest_committed(cfg)
    if near is None:
        return "missing"
    name, diff = near
    shown = ", ".join(f"{k} {ours} not {wanted}" for k, (ours, wanted) in list(diff.items())[:3])
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    return f"missing; nearest committed: {name} ({shown}{more})"


# Settings that only say how long something trained: a committed run that differs from a cell in
# these alone is the cell under a smaller budget (e.g. RaSR's generator for 5 epochs, not 100).
BUDGET_KEYS = frozenset({"regen.generator_epochs", "s3rec.pretrain_epochs", "train.epochs"})
CELL_STATES = ("committed", "interrupted", "smaller budget", "missing")


def _effective_budget(cfg: ExperimentConfig, key: str, value: Any) -> float:
    """The epochs a budget setting stands for (``regen.generator_epochs`` 0: the method's own, RaSR 100)."""
    if key == "regen.generator_epochs" and not value:
        from rasr_lib.rasr.generator import generator_config

        return generator_config(cfg.regen.method).epochs
    return float(value or 0)


def committed_state(cfg: ExperimentConfig) -> tuple[str, str]:
    """Where a plan cell stands from ``results/`` alone (no local checkpoints): (state, detail).

    ``state`` is one of :data:`CELL_STATES`: ``committed`` (a finished run with these very settings),
    ``interrupted`` (published cut short by a time budget), ``smaller budget`` (a finished run that
    differs only in :data:`BUDGET_KEYS`, each smaller than the cell's; ``detail`` names them) or
    ``missing``.
    """
    from rasr_lib.experiments.train_run import committed_result

    result = committed_result(cfg)
    if result is not None:
        if result.get("interrupted"):
            return "interrupted", f"at epoch {result['epochs_run']}"
        return "committed", f"N@20 {result['metrics']['test']['ndcg@20']:.4f}"
    near = closest_committed(cfg)
    if near is not None and set(near[1]) <= BUDGET_KEYS and all(
            _effective_budget(cfg, k, ours) < _effective_budget(cfg, k, wanted) for k, (ours, wanted) in near[1].items()):
        name, diff = near
        return "smaller budget", f"{name}: " + ", ".join(f"{k} {ours} not {wanted}" for k, (ours, wanted)
                                                       in diff.items())
    return "missing", ""


def coverage(plans: tuple[str, ...] = PLANS, datasets: tuple[str, ...] = ("beauty", "toys", "sports", "ml-1m"),
             profile: str = "full") -> pd.DataFrame:
    """Every cell of ``plans`` on ``datasets`` with its :func:`committed_state`.

    Columns: plan, dataset, cell, model, state, detail. The zoo's SASRec and the Table 1 original
    rows name the same run, so a run can count in several plans.
    """
    rows = []
    for plan in plans:
        for dataset in datasets:
            for label, cfg in plan_configs(plan, dataset, profile):
                state, detail = committed_state(cfg)
                rows.append({"plan": plan, "dataset": dataset, "cell": label, "model": cfg.model.name,
                             "state": state, "detail": detail})
    return pd.DataFrame(rows, columns=["plan", "dataset", "cell", "model", "state", "detail"])


def plan_cells_matching(
    plan: str, dataset: str = "beauty", profile: str = "full", seed: int = 0,
    overrides: dict[str, Any] | None = None, only: list[str] | None = None,
) -> list[tuple[str, ExperimentConfig]]:
    """The cells of ``plan`` whose label contains one of ``only``'s strings (every cell without ``only``)."""
    cells = plan_configs(plan, dataset, profile, seed, overrides)
    if only:
        cells = [(label, c) for label, c in cells if any(s in label for s in only)]
        if not cells:
            raise ValueError(f"--only {only} matches no cell of {plan}")
    return cells


def rescore_sampled(cfg: ExperimentConfig) -> dict | None:
    """Score a published full-ranking cell on the original data under 1 + 100 sampled negatives; its entry or None.

    Run right after training, while ``runs/`` (a cache that may not outlive the session) still holds
    the checkpoint. None when the cell is not such a run, has no local checkpoint (read back from
    results/ without training) or the checkpoint does not reproduce it; an entry already in
    ``sampled-eval.json`` is kept, not recomputed.
    """
    from rasr_lib.experiments.sampled_eval import collect_sampled
    from rasr_lib.experiments.train_run import local_checkpoint, run_name
    from rasr_lib.runtime import results_dir

    name = run_name(cfg)
    if cfg.eval.protocol != "full" or cfg.regen.method != "none":
        return None
    if not (results_dir() / cfg.data.dataset / f"{name}.json").exists() or local_checkpoint(cfg) is None:
        return None
    return collect_sampled(cfg.data.dataset, [name], progress=False)["runs"].get(name)


def run_plan(
    plan: str, dataset: str = "beauty", profile: str = "full", seed: int = 0,
    overrides: dict[str, Any] | None = None, only: list[str] | None = None, progress: bool = True,
    deadline: float | None = None, sampled_eval: bool = False,
) -> dict[str, dict]:
    """Run (or read back) every cell of ``plan``; ``only`` keeps cells whose label contains one of its strings.

    With ``deadline`` (a ``time.time()`` value) a cell still training stops before it (published as
    interrupted, resumable) and cells not started by then are left out of the returned dict.
    ``sampled_eval`` rescores each finished full-ranking cell at once (:func:`rescore_sampled`).
    """
    from rasr_lib.experiments.train_run import run_experiment

    results = {}
    cells = plan_cells_matching(plan, dataset, profile, seed, overrides, only)
    for i, (label, cfg) in enumerate(cells, 1):
        if deadline is not None and time.time() >= deadline:
            log.warning("[%s] time budget spent: %d cell(s) not started", plan, len(cells) - i + 1)
            break
        log.info("[%s %d/%d] %s", plan, i, len(cells), label)
        try:
            results[label] = run_experiment(cfg, progress=progress, deadline=deadline)
        except FolderBusy as busy:  # another plan is training this cell (or its pipeline): go on
            log.warning("[%s] %s skipped: %s", plan, label, busy)
            continue
        finished = results[label]["metrics"] is not None and not results[label].get("interrupted")
        if deadline is not None and not finished:  # it stopped for the budget: a next cell would too, at once
            log.warning("[%s] time budget spent: %d cell(s) not started", plan, len(cells) - i)
            break
        if sampled_eval and finished:
            try:
                entry = rescore_sampled(cfg)
            except (OSError, ValueError, RuntimeError) as error:  # the trained result is safe: go on
                log.warning("[%s] %s: sampled rescoring failed: %s", plan, label, error)
                continue
            if entry is not None:
                log.info("[%s] %s: sampled protocol test N@10 %.4f", plan, label,
                         entry["metrics"]["test"]["ndcg@10"])
    return results
