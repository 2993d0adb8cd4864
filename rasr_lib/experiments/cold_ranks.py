"""Where the cold test targets land: full ranks of the items never seen in training (SAGERec §5.8).

A committed result records the cold users' Recall/NDCG, which are 0 whenever no cold target
reaches the top 20, and then say nothing about how close the model came. This module reloads a
committed run's best weights from its local checkpoint, ranks the test targets again and keeps
the ranks of the cold users, so the book can draw their distribution (a model that knows nothing
of an item ranks it near the middle of the catalogue; one that reaches it through its semantic
neighbours ranks it higher). The recomputed cold metrics must equal the committed ones: that
checks the checkpoint is the run's.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rasr_lib.config import config_from_dict
from rasr_lib.evaluation import cold_target_users, evaluate, metrics_from_ranks
from rasr_lib.experiments.train_run import load_trained_run, result_checkpoint
from rasr_lib.runtime import git_commit, results_dir, runs_dir, write_json

log = logging.getLogger(__name__)

OUTPUT_NAME = "cold-ranks.json"


def cold_target_ranks(result: dict, checkpoint: Path) -> dict:
    """Full-ranking test ranks of the cold users under ``checkpoint``'s best weights, with a check.

    ``result`` is a committed result (its ``config`` rebuilds data, graph and model). Returns
    ``ranks`` (1-based, one per cold user, user order), ``n_items``, the cold users' recomputed
    ``metrics`` and ``reproduces_committed`` (the committed test metrics, and the cold ones where
    recorded, come out again to 1e-9).
    """
    cfg = config_from_dict(result["config"])
    model, split, dataset = load_trained_run(result, checkpoint)
    test = evaluate(model, split, "test", cfg.eval, device="cpu", return_ranks=True)
    cold = cold_target_users(split, "test")
    ranks = np.asarray(test["ranks"])[cold]
    metrics = metrics_from_ranks(ranks, cfg.eval.ks)
    # The checkpoint is the run's when it reproduces the committed test metrics (all users) and,
    # where the run recorded them, its cold users' metrics.
    expected = {**{f"test/{k}": v for k, v in result["metrics"]["test"].items()},
                **{f"cold/{k}": v for k, v in (result.get("cold_start") or {}).items() if "@" in k}}
    found = {**{f"test/{k}": v for k, v in test.items() if "@" in k}, **{f"cold/{k}": v for k, v in metrics.items()}}
    same = all(abs(found[k] - v) < 1e-9 for k, v in expected.items() if k in found)
    return {"ranks": ranks.astype(int).tolist(), "n_items": int(dataset.n_items),
            "metrics": metrics, "reproduces_committed": same}


def collect_cold_ranks(dataset: str, names: list[str] | None = None, force: bool = False,
                       progress: bool = True) -> dict:
    """Add the cold ranks of committed runs of ``dataset`` to ``results/<dataset>/cold-ranks.json``.

    ``names`` are result stems (default: every committed run with a local checkpoint). Runs
    already in the file are kept unless ``force``. Returns the file's content.
    """
    folder = results_dir() / dataset
    out_path = folder / OUTPUT_NAME
    store = (json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists()
             else {"analysis": "cold-ranks", "dataset": dataset, "runs": {}})
    paths = ([folder / f"{n}.json" for n in names] if names else
             sorted(p for p in folder.glob("*.json") if p.name != OUTPUT_NAME))
    missing = [p.stem for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no committed result {', '.join(missing)} in {folder}")
    for path in tqdm(paths, desc="cold ranks", unit="run", disable=not progress, leave=False):
        result = json.loads(path.read_text(encoding="utf-8"))
        if "config" not in result or "metrics" not in result:
            continue
        if path.stem in store["runs"] and not force:
            continue
        checkpoint = result_checkpoint(path.stem, result, required=bool(names))
        if checkpoint is None:
            continue
        started = time.perf_counter()
        entry = cold_target_ranks(result, checkpoint)
        entry.update({"config_hash": result["config_hash"], "best_epoch": result.get("best_epoch"),
                      "checkpoint": str(checkpoint.relative_to(runs_dir())),
                      "seconds": round(time.perf_counter() - started, 1)})
        store["runs"][path.stem] = entry
        log.info("%s: median cold rank %.0f", path.stem, np.median(entry["ranks"]))
    if not store["runs"]:
        return store  # nothing ranked: write no file
    store["command"] = f"python -m rasr_lib cold-ranks --dataset {dataset}"
    store["git_commit"] = git_commit()
    write_json(store, out_path)
    return store
