"""The 1 + 100 sampled-negatives protocol for runs trained under full ranking (SAGERec Tables 3/4).

SAGERec's paper names two protocols (§5.2 full ranking, §5.3 each target against 100 sampled
negatives the user never interacted with), so its Tables 3/4 are reported under both. Training
every model a second time only to change the evaluation would double the CPU bill; the model
itself does not change with the protocol, only the epoch that early stopping keeps may. This
module therefore reloads a committed full-ranking run's best weights from its local checkpoint
and ranks its validation and test targets again among 1 + 100 sampled negatives (the same
seeded draw a run trained under ``eval.protocol=sampled100`` is tested with). The recomputed
full-ranking test metrics must equal the committed ones: that checks the checkpoint is the run's.

Such a number is labelled "full-ranking checkpoint": its epoch was picked on validation
full-ranking N@20 (N@10 for SAGERec's recipe), not on sampled N@10. A run trained with
``--set eval.protocol=sampled100`` replaces it in the tables (:mod:`rasr_lib.report_sagerec`).

The same rescoring answers a protocol question the papers leave open: full ranking *without*
masking the items the user already interacted with (``unmasked``; written to
``unmasked-eval.json``), which is how a gap to a paper's row that reports no protocol is checked
(``rasr_lib.report.PAPER_GAP_NOTES``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from rasr_lib.config import config_from_dict
from rasr_lib.evaluation import evaluate
from rasr_lib.experiments.train_run import load_trained_run, result_checkpoint
from rasr_lib.runtime import git_commit, results_dir, runs_dir, write_json

log = logging.getLogger(__name__)

PROTOCOL = "sampled100"
# protocol -> (result file, the evaluation settings it changes, the CLI command that writes it)
RESCORINGS = {
    "sampled100": ("sampled-eval.json", {"protocol": "sampled100"}, "sampled-eval"),
    "unmasked": ("unmasked-eval.json", {"mask_history": False}, "unmasked-eval"),
}


def sampled_metrics(result: dict, checkpoint: Path, protocol: str = PROTOCOL) -> dict:
    """Validation and test metrics of ``checkpoint``'s best weights under ``protocol`` (a RESCORINGS key).

    ``result`` is a committed full-ranking result (its ``config`` rebuilds data and model).
    Returns ``metrics`` (``{"valid": {...}, "test": {...}}``, Recall/NDCG at the run's ks) and
    ``reproduces_committed`` (the committed full-ranking test metrics come out again to 1e-9).
    """
    if protocol not in RESCORINGS:
        raise ValueError(f"unknown rescoring protocol {protocol!r}; expected one of {sorted(RESCORINGS)}")
    cfg = config_from_dict(result["config"])
    if cfg.eval.protocol != "full":
        raise ValueError(f"{result.get('config_hash')}: already evaluated under {cfg.eval.protocol!r}")
    if protocol == "unmasked" and not cfg.eval.mask_history:
        raise ValueError(f"{result.get('config_hash')}: already evaluated without the history mask")
    model, split, _ = load_trained_run(result, checkpoint)
    full_test = evaluate(model, split, "test", cfg.eval, device="cpu")
    same = all(abs(full_test[k] - v) < 1e-9 for k, v in result["metrics"]["test"].items() if k in full_test)
    sampled_cfg = dataclasses.replace(cfg.eval, **RESCORINGS[protocol][1])
    metrics = {}
    for part in ("valid", "test"):
        found = evaluate(model, split, part, sampled_cfg, device="cpu")
        metrics[part] = {k: v for k, v in found.items() if "@" in k}
    return {"metrics": metrics, "reproduces_committed": same}


def _candidates(folder: Path, names: list[str] | None) -> list[Path]:
    """Result files to rescore: ``names`` (stems), else every full-ranking run on the original data."""
    if names:
        paths = [folder / f"{n}.json" for n in names]
        missing = [p.stem for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no committed result {', '.join(missing)} in {folder}")
        return paths
    out = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        config = data.get("config")
        if not isinstance(config, dict) or "metrics" not in data:
            continue  # analysis and benchmark files
        if (config.get("eval") or {}).get("protocol", "full") != "full":
            continue
        if (config.get("regen") or {}).get("method", "none") != "none":
            continue  # regenerated data: chapter 07's tables are full-ranking only
        out.append(path)
    return out


def collect_sampled(dataset: str, names: list[str] | None = None, force: bool = False,
                    progress: bool = True, protocol: str = PROTOCOL) -> dict:
    """Add ``protocol``'s metrics of committed runs to ``results/<dataset>/<RESCORINGS file>``.

    ``names`` are result stems (default: every full-ranking run on the original data that has a
    local checkpoint). Runs already in the file are kept unless ``force``. Returns the content.
    """
    if protocol not in RESCORINGS:
        raise ValueError(f"unknown rescoring protocol {protocol!r}; expected one of {sorted(RESCORINGS)}")
    file_name, _, command = RESCORINGS[protocol]
    folder = results_dir() / dataset
    out_path = folder / file_name
    store = (json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists()
             else {"analysis": command, "dataset": dataset, "protocol": protocol, "runs": {}})
    for path in tqdm(_candidates(folder, names), desc=command, unit="run",
                     disable=not progress, leave=False):
        if path.stem in store["runs"] and not force:
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        checkpoint = result_checkpoint(path.stem, result, required=bool(names))
        if checkpoint is None:
            continue
        started = time.perf_counter()
        entry = sampled_metrics(result, checkpoint, protocol)
        if not entry["reproduces_committed"]:
            log.warning("%s: the checkpoint does not reproduce the committed test metrics; not kept",
                        path.stem)
            continue
        entry.update({"config_hash": result["config_hash"], "best_epoch": result.get("best_epoch"),
                      "selected_on": f"valid {result['config']['train'].get('valid_metric', 'ndcg@20')} "
                                     "(full ranking)",
                      "interrupted": bool(result.get("interrupted", False)),
                      "checkpoint": str(checkpoint.relative_to(runs_dir())),
                      "seconds": round(time.perf_counter() - started, 1)})
        store["runs"][path.stem] = entry
        log.info("%s: %s test N@10 %.4f", path.stem, protocol, entry["metrics"]["test"]["ndcg@10"])
        # after every run, so a later run's missing checkpoint cannot cost the ones already scored
        store["command"] = f"python -m rasr_lib {command} --dataset {dataset}"
        store["git_commit"] = git_commit()
        write_json(store, out_path)
    return store
