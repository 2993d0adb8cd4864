"""Train-and-evaluate one backbone on one dataset: resumable, with a provenance-rich results JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rasr_lib.config import (
    ExperimentConfig, config_from_dict, config_hash, config_to_dict, hashed_settings, load_config,
)
from rasr_lib.data import leave_one_out, load_dataset
from rasr_lib.evaluation import cold_target_users, evaluate, metrics_from_ranks, protocol_name
from rasr_lib.models import build_model
from rasr_lib.rasr.regenerate import config_digest
from rasr_lib.runtime import folder_lock, get_device, git_commit, results_dir, runs_dir, set_seed, write_json
from rasr_lib.training import fit

log = logging.getLogger(__name__)


def describe_device(device: torch.device) -> str:
    """Human-readable device label for results, e.g. ``cpu (x86_64, 2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def run_name(cfg: ExperimentConfig) -> str:
    """File stem of a run's committed result: ``<model>-<loss>-<profile>-seed<seed>[-<protocol>][-graph][-sg<hash>][-o<hash>][-<method>-<hash>]``.

    A non-default protocol, non-default SAGERec settings (ablations), any other departure from
    the model's own recipe (``-o``: a hash of :func:`recipe_overrides`) and regenerated data
    (method and a hash of every regeneration setting) extend the name, so the cells of a grid and
    a one-off ``--set`` run never overwrite the model's row.
    """
    stem = f"{cfg.model.name}-{cfg.train.loss}-{cfg.profile}-seed{cfg.seed}"
    if cfg.eval.protocol != "full":
        stem += f"-{cfg.eval.protocol}"
    if cfg.model.semantic_graph and cfg.model.name != "sagerec":
        stem += "-graph"  # SAGERec §5.6: the backbone with the semantic graph module
    if (cfg.model.name == "sagerec" or cfg.model.semantic_graph) and cfg.sagerec != type(cfg.sagerec)():
        stem += f"-sg{config_digest(dataclasses.asdict(cfg.sagerec), 6)}"
    overrides = recipe_overrides(cfg)
    if overrides:
        stem += f"-o{config_digest(overrides, 6)}"
    if cfg.regen.method != "none":
        stem += f"-{cfg.regen.method}-{config_digest(dataclasses.asdict(cfg.regen), 6)}"
    return stem


# Settings a run name already says (or that change no number), by section; None = the whole section.
_NAMED_ELSEWHERE: dict[str, tuple[str, ...] | None] = {
    "": ("seed", "profile", "device"), "data": ("dataset",), "model": ("name", "semantic_graph"),
    "train": ("loss",), "eval": ("protocol", "batch_size"), "regen": None, "sagerec": None}


def recipe_overrides(cfg: ExperimentConfig) -> dict[str, Any]:
    """Dotted settings of ``cfg`` that differ from its model's own recipe on its profile and dataset.

    Only sections the model reads count (those :func:`~rasr_lib.config.hashed_settings` keeps);
    left out is what the run name already carries (seed, loss, protocol, semantic graph, SAGERec
    and regeneration settings) and the evaluation batch size, which changes no number.
    """
    def flat(c: ExperimentConfig) -> dict[str, Any]:
        used = set(hashed_settings(c))
        out = {}
        for section, values in config_to_dict(c).items():
            if section not in used:
                continue
            if not isinstance(values, dict):
                if section not in _NAMED_ELSEWHERE[""]:
                    out[section] = values
                continue
            skip = _NAMED_ELSEWHERE.get(section, ())
            if skip is not None:
                out.update({f"{section}.{k}": v for k, v in values.items() if k not in skip})
        return out

    ours, recipe = flat(cfg), flat(load_config(cfg.data.dataset, cfg.profile, model=cfg.model.name))
    return {key: value for key, value in ours.items() if value != recipe.get(key)}


def run_dir(cfg: ExperimentConfig) -> Path:
    """Private folder of a run (checkpoint + result), named by the config hash."""
    return runs_dir() / "train" / cfg.data.dataset / f"{cfg.model.name}-{config_hash(cfg)}"


def same_settings(a: ExperimentConfig, b: ExperimentConfig) -> bool:
    """True when two configs would train the same run (device and evaluation batch size aside)."""
    def key(cfg: ExperimentConfig) -> dict:
        settings = hashed_settings(cfg)
        settings["eval"].pop("batch_size", None)
        return settings

    return key(a) == key(b)


def committed_result(cfg: ExperimentConfig) -> dict | None:
    """The published ``results/<dataset>/<run_name>.json`` of this very run, if there is one.

    A result counts when its recorded config trains the same run as ``cfg`` (:func:`same_settings`),
    so a later command skips it even on a fresh clone whose ``runs/`` is empty; ``--force`` retrains.
    """
    path = results_dir() / cfg.data.dataset / f"{run_name(cfg)}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    try:
        recorded = config_from_dict(result.get("config") or {})
    except ValueError:
        return None
    if not same_settings(recorded, cfg):
        log.warning("%s has other settings than this run; it is not reused", path)
        return None
    log.info("skipping run committed as %s", path)
    return result


def local_checkpoint(cfg: ExperimentConfig) -> Path | None:
    """The ``runs/train`` checkpoint of a run that trained with ``cfg``'s settings, or None.

    Folders are named by config hash, which also covers the evaluation batch size; any folder
    whose recorded config trains the same run counts (:func:`same_settings`).
    """
    for checkpoint, _, recorded in _local_runs(cfg):
        if same_settings(recorded, cfg):
            return checkpoint
    return None


def _local_runs(cfg: ExperimentConfig) -> Iterator[tuple[Path, dict, ExperimentConfig]]:
    """(checkpoint, result, recorded config) of every ``runs/train`` folder of ``cfg``'s model and dataset
    that has a checkpoint and a readable config."""
    folder = runs_dir() / "train" / cfg.data.dataset
    for result_path in sorted(folder.glob(f"{cfg.model.name}-*/result.json")):
        checkpoint = result_path.with_name("checkpoint.pt")
        if not checkpoint.exists():
            continue
        result = json.loads(result_path.read_text(encoding="utf-8"))
        try:
            recorded = config_from_dict(result.get("config") or {})
        except ValueError:
            continue
        yield checkpoint, result, recorded


def capped_checkpoint(cfg: ExperimentConfig) -> tuple[Path, dict] | None:
    """A local run of ``cfg`` under a smaller epoch cap that trained to that cap, as (checkpoint, result).

    Such a run is the first part of ``cfg``'s run: until its cap it drew and trained exactly as a
    run under ``cfg``'s larger cap would (the cap only ends the loop), and its checkpoint holds
    every random stream, so training on from it equals training ``cfg`` from scratch. A run that
    stopped early or was cut short does not count, nor one whose cap fell between validations.
    """
    wanted = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=0))
    best = None
    for checkpoint, result, recorded in _local_runs(cfg):
        cap = recorded.train.epochs
        if (cap >= cfg.train.epochs or cap % recorded.train.eval_every or result.get("interrupted")
                or result.get("stopped_early") or result.get("epochs_run") != cap):
            continue
        if same_settings(dataclasses.replace(recorded, train=dataclasses.replace(recorded.train, epochs=0)), wanted):
            if best is None or cap > best[1]["epochs_run"]:
                best = (checkpoint, result)
    return best


def result_checkpoint(name: str, result: dict, required: bool = False) -> Path | None:
    """The local checkpoint of the committed result ``name`` (:func:`local_checkpoint` of its config).

    None when there is none (logged), or ``FileNotFoundError`` when ``required`` (a run asked for
    by name).
    """
    checkpoint = local_checkpoint(config_from_dict(result["config"]))
    if checkpoint is None:
        if required:
            raise FileNotFoundError(f"{name}: no local checkpoint under {runs_dir() / 'train'} "
                                    "(runs/ is a cache: retrain the run to get one)")
        log.info("%s: no local checkpoint, skipped", name)
    return checkpoint


def load_trained_run(result: dict, checkpoint: Path) -> tuple[Any, Any, Any]:
    """(model with the checkpoint's best weights, in eval mode, on the CPU; its split; its dataset).

    ``result`` is a published result: its ``config`` rebuilds the data (regenerated data from
    the cached pipeline), the semantic graph where the model uses one, and the model.
    """
    cfg = config_from_dict(result["config"])
    dataset = load_dataset(cfg.data.dataset, max_users=cfg.data.max_users)
    split = leave_one_out(dataset, cfg.data.max_len)
    if cfg.regen.method != "none":
        from rasr_lib.experiments.regen_run import regenerated_split

        split, _ = regenerated_split(cfg, split, progress=False)
    graph = None
    if cfg.model.name == "sagerec" or cfg.model.semantic_graph:
        from rasr_lib.sagerec.graph import graph_for

        graph = graph_for(cfg, dataset, progress=False)
    model = build_model(cfg, dataset.n_items, graph=graph, split=split)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["best_state"])
    return model.eval(), split, dataset


def _resumable(result: dict, checkpoint: Path) -> bool:
    """A result cut short (``--finish-now``) whose checkpoint is still here is not final: asked again,
    the run trains on (or, with ``stop_now``, is published again from its newer checkpoint)."""
    return bool(result.get("interrupted")) and checkpoint.exists()


def _unfinished_preparation(cfg: ExperimentConfig, prepared: dict, seconds: float, stage: str = "prepare") -> dict:
    """What a run stopped before training returns (``stage``: ``prepare`` or ``regenerate``): no metrics,
    nothing published."""
    return {"dataset": cfg.data.dataset, "model": cfg.model.name, "loss": cfg.train.loss,
            "profile": cfg.profile, "seed": cfg.seed, "protocol": protocol_name(cfg.eval),
            "best_epoch": None, "epochs_run": 0, "wall_time_s": round(seconds, 1),
            "interrupted": True, "stage": stage, "prepare": prepared, "metrics": None}


def _finished_meanwhile(result_path: Path, checkpoint: Path, force: bool) -> dict | None:
    """The result another process finished while this one waited to train the same run, else None."""
    if force or not result_path.exists():
        return None
    result = json.loads(result_path.read_text())
    return None if _resumable(result, checkpoint) else result


def run_experiment(
    cfg: ExperimentConfig,
    force: bool = False,
    publish: bool | None = None,
    progress: bool = True,
    stop_now: bool = False,
    deadline: float | None = None,
) -> dict:
    """Train ``cfg.model`` on ``cfg.data``, evaluate on the test part, return and save the result.

    A finished run (same config hash) is read back instead of retrained unless ``force``; an
    interrupted one resumes from its last epoch checkpoint, also after ``stop_now`` published it.
    ``publish`` (default: the full profile) also copies the result to
    ``results/<dataset>/<run_name>.json`` for the book.
    ``stop_now`` ends an interrupted run at its last checkpoint (best epoch so far) and marks
    the result ``"interrupted": true``; so does ``deadline`` (a ``time.time()`` value) when
    training stops before it (see :func:`rasr_lib.training.fit`). A deadline reached during the
    model's stage before training (S3-Rec's pre-training) returns ``"stage": "prepare"`` and
    ``"metrics": None``; nothing is written or published, and the same call resumes the stage.
    So does one reached while the regenerated data is made (``"stage": "regenerate"``).
    """
    folder = run_dir(cfg)
    result_path, checkpoint = folder / "result.json", folder / "checkpoint.pt"
    publish = cfg.profile == "full" if publish is None else publish
    # A published run is finished even when runs/ (a cache) is empty; a private run (publish=False,
    # e.g. the SASRec whose checkpoint starts a generator) needs its own folder.
    committed = committed_result(cfg) if publish and not force and not result_path.exists() else None
    if committed is not None and not _resumable(committed, checkpoint):
        return committed
    local = json.loads(result_path.read_text()) if result_path.exists() and not force else None
    if local is not None and not _resumable(local, checkpoint):
        result = local
        log.info("skipping finished run %s", result_path)
    else:
        with folder_lock(folder):  # a second process asking for this run gets FolderBusy
            finished = _finished_meanwhile(result_path, checkpoint, force)
            if finished is not None:
                return _published(cfg, finished) if publish else finished
            if stop_now and not checkpoint.exists():
                raise ValueError(f"--finish-now: no checkpoint to finish at {checkpoint}")
            if force:  # start over: the fine-tuning checkpoint and the stage before it
                for stale in (checkpoint, folder / "prepare.pt", folder / "prepare.json"):
                    stale.unlink(missing_ok=True)
            start, commit = time.perf_counter(), git_commit()  # the code the run started from
            generator = set_seed(cfg.seed)
            device = get_device(cfg.device)
            dataset = load_dataset(cfg.data.dataset, max_users=cfg.data.max_users)
            split = leave_one_out(dataset, cfg.data.max_len)
            regen_info = None
            if cfg.regen.method != "none":
                from rasr_lib.experiments.regen_run import OutOfTime, regenerated_split

                try:
                    split, regen_info = regenerated_split(cfg, split, progress=progress, deadline=deadline)
                except OutOfTime as stop:
                    log.info("%s: %s; rerun to resume", folder, stop)
                    return _unfinished_preparation(cfg, {"stage": stop.stage, "epochs_done": stop.epochs_done,
                                                         "epochs": stop.epochs}, time.perf_counter() - start,
                                                   stage="regenerate")
                generator = set_seed(cfg.seed)  # the backbone's draws do not depend on the pipeline's
            graph = None
            if cfg.model.name == "sagerec" or cfg.model.semantic_graph:  # semantic graph, built once
                from rasr_lib.sagerec.graph import graph_for

                graph = graph_for(cfg, dataset, progress=progress)
            model = build_model(cfg, dataset.n_items, graph=graph, split=split)
            prepared, prepared_path = None, folder / "prepare.json"
            continued_from = None
            if not checkpoint.exists() and not force and not stop_now:
                capped = capped_checkpoint(cfg)
                if capped is not None:  # train on from a run that ended at a smaller epoch cap
                    earlier, earlier_result = capped
                    shutil.copyfile(earlier, checkpoint)
                    if earlier.with_name("prepare.json").exists():
                        shutil.copyfile(earlier.with_name("prepare.json"), prepared_path)
                    continued_from = {"run": earlier.parent.name, "epochs": earlier_result["epochs_run"],
                                      "git_commit": earlier_result.get("git_commit")}
                    log.info("%s: continuing %s from its cap of %d epochs", folder, earlier.parent.name,
                             earlier_result["epochs_run"])
            if not checkpoint.exists():  # a resumed run restores the prepared weights from its checkpoint
                prepared = model.prepare(split, cfg, device, generator, progress=progress,
                                         checkpoint=folder / "prepare.pt", deadline=deadline)
                if prepared is not None and prepared.get("out_of_time"):
                    log.info("%s: stage before training stopped at its deadline; rerun to resume", folder)
                    return _unfinished_preparation(cfg, prepared, time.perf_counter() - start)
                if prepared is not None:
                    write_json(prepared, prepared_path)
            elif prepared_path.exists():
                prepared = json.loads(prepared_path.read_text())
            trained = fit(model, split, cfg.train, cfg.eval, device, generator, checkpoint, progress,
                          stop_now=stop_now, deadline=deadline)
            test = evaluate(model, split, "test", cfg.eval, device=device, return_ranks=True)
            cold = cold_target_users(split, "test")  # §5.8: targets never seen in training
            cold_start = {"n_users": int(cold.sum()), **metrics_from_ranks(test.pop("ranks")[cold], cfg.eval.ks)}
            result = {
                "dataset": cfg.data.dataset,
                "model": cfg.model.name,
                "loss": cfg.train.loss,
                "profile": cfg.profile,
                "seed": cfg.seed,
                "protocol": protocol_name(cfg.eval),
                "device": describe_device(device),
                # A resumed run counts the epochs its earlier segments ran, not only this call's.
                "wall_time_s": round(time.perf_counter() - start + trained.resumed_seconds, 1),
                "train_seconds": round(trained.train_seconds, 1),
                "epochs_run": len(trained.history),
                "git_commit": commit,
                "config_hash": config_hash(cfg),
                "config": config_to_dict(cfg),
                "data_stats": dataset.stats(),
                "data_variant": cfg.regen.method,
                "regen": regen_info,
                "n_parameters": sum(p.numel() for p in model.parameters()),
                "best_epoch": trained.best_epoch,
                "stopped_early": trained.stopped_early,
                "interrupted": ((stop_now or trained.out_of_time) and not trained.stopped_early
                                and len(trained.history) < cfg.train.epochs),
                "metrics": {"valid": trained.best_valid, "test": {k: v for k, v in test.items() if "@" in k}},
                "cold_start": cold_start,
                "history": trained.history,
            }
            if continued_from is None and local is not None:
                continued_from = local.get("continued_from")  # a continued run resumed again
            if continued_from is not None:
                result["continued_from"] = continued_from  # the capped run whose checkpoint it trained on
            if prepared is not None:
                result["prepare"] = prepared  # e.g. S3-Rec's pre-training losses and seconds
            if graph is not None:
                result["graph"] = graph.stats()  # SAGERec: nodes, edges, isolated items, mean degree
            write_json(result, result_path)
    return _published(cfg, result) if publish else result


def _published(cfg: ExperimentConfig, result: dict) -> dict:
    """``result`` after copying it to ``results/<dataset>/<run_name>.json`` for the book."""
    write_json(result, results_dir() / cfg.data.dataset / f"{run_name(cfg)}.json")
    return result
