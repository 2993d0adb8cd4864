"""The RaSR paper's experiments as named plans of runs: Table 1 cells, Figs. 3-5 grids.

A plan is a list of (cell label, :class:`ExperimentConfig`). :func:`run_plan` runs every cell
with :func:`~rasr_lib.experiments.train_run.run_experiment`, so a finished cell is read back, an
interrupted one resumes, and the regeneration pipelines are shared between cells that differ
only in the backbone, the loss or the ratio. Chapter 07 reads the published results by their
config, not by these labels.
"""

from __future__ import annotations

import logging
from typing import Any

from rasr_lib.config import ExperimentConfig, load_config

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
PLANS = ("table1", "fig3", "fig4", "fig5")


def plan_configs(
    plan: str, dataset: str = "beauty", profile: str = "full", seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> list[tuple[str, ExperimentConfig]]:
    """The cells of ``plan`` (``table1`` | ``fig3`` | ``fig4`` | ``fig5``) as (label, config)."""
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
    raise ValueError(f"unknown plan {plan!r}; choose from {PLANS}")


def run_plan(
    plan: str, dataset: str = "beauty", profile: str = "full", seed: int = 0,
    overrides: dict[str, Any] | None = None, only: list[str] | None = None, progress: bool = True,
) -> dict[str, dict]:
    """Run (or read back) every cell of ``plan``; ``only`` keeps cells whose label contains one of its strings."""
    from rasr_lib.experiments.train_run import run_experiment

    results = {}
    cells = plan_configs(plan, dataset, profile, seed, overrides)
    if only:
        cells = [(label, c) for label, c in cells if any(s in label for s in only)]
        if not cells:
            raise ValueError(f"--only {only} matches no cell of {plan}")
    for i, (label, cfg) in enumerate(cells, 1):
        log.info("[%s %d/%d] %s", plan, i, len(cells), label)
        results[label] = run_experiment(cfg, progress=progress)
    return results
