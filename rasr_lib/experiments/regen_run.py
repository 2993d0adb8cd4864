"""The data-regeneration pipelines end to end (RaSR Algorithm 1; DR4SR), resumable, and the training data they make.

RaSR (``regen.method="rasr"``)::

    item text -> MiniLM embeddings (cached) -> C/T/S graph -> 2 semantic + 2 relational variants
    -> SASRec on the original data (its item table starts the generator)
    -> generator trained on (original -> variant) pairs -> every training part regenerated

DR4SR (``regen.method="dr4sr"``)::

    patterns (window 5, frequency >= 2) -> (sequence -> pattern) pairs, <= 10 per sequence
    -> SASRec item table -> generator with extractive mask and K = 5 memories
    -> hybrid decoding (2 restrictive steps, then generative with probability gamma)

Every stage writes its artefact under ``runs/regen/<dataset>/<method>-<hash>/`` (the hash covers
the data slice, the seed and every regeneration setting except ``ratio``) and is skipped when
the artefact is there: the generator checkpoints every epoch, so a killed run resumes where it
stopped. The backbone then trains on the original split plus training rows from
:func:`regenerated_split` (the regenerated sequences at ``ratio``; DR4SR also adds its
patterns and the original rows a second time, as its ``train_regen.pth`` does).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rasr_lib.config import ExperimentConfig, RegenConfig, config_hash, load_config
from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import SplitData
from rasr_lib.dr4sr.patterns import mine_patterns, pattern_pairs, pattern_training_rows, training_sequences
from rasr_lib.rasr.augment import AugmentConfig, AugmentedSet, augment_dataset
from rasr_lib.rasr.embeddings import encode_items
from rasr_lib.rasr.generator import SequenceGenerator, as_ragged, fit_generator, generator_config, rasr_pairs
from rasr_lib.rasr.graphs import GraphConfig, build_relation_graph
from rasr_lib.rasr.regenerate import (
    RegeneratedSet,
    config_digest,
    load_regenerated,
    regenerate,
    regeneration_sources,
    save_regenerated,
    subsample,
    training_rows,
)
from rasr_lib.runtime import FolderBusy, folder_lock, get_device, lock_holder, runs_dir, set_seed, write_json

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- configuration


def graph_config(regen: RegenConfig) -> GraphConfig:
    """The :class:`GraphConfig` that ``regen`` asks for."""
    return GraphConfig(window=regen.window, decay=regen.decay, temporal_mode=regen.temporal_mode,
                       semantic_k=regen.semantic_k)


def augment_config(regen: RegenConfig, max_len: int) -> AugmentConfig:
    """The :class:`AugmentConfig` that ``regen`` asks for (ablations switch a kind off)."""
    return AugmentConfig(n_semantic=2 if regen.semantic_aug else 0,
                         n_relational=2 if regen.relational_aug else 0, max_len=max_len)


def regen_generator_config(cfg: ExperimentConfig):
    """The :class:`GeneratorConfig` of ``cfg.regen.method`` with the run's overrides applied."""
    regen = cfg.regen
    overrides: dict = {"max_len": cfg.data.max_len}
    if regen.method == "rasr":
        overrides["relation_aware"] = regen.relation_aware
    if regen.generator_epochs > 0:
        overrides["epochs"] = regen.generator_epochs
    if regen.generative_prob >= 0:
        overrides["generative_prob"] = regen.generative_prob
    return generator_config(regen.method, **overrides)


def pipeline_key(cfg: ExperimentConfig) -> dict:
    """Everything that changes the regenerated set (``ratio`` only subsamples it later)."""
    regen = dataclasses.asdict(cfg.regen)
    regen.pop("ratio")
    return {"dataset": cfg.data.dataset, "max_users": cfg.data.max_users, "max_len": cfg.data.max_len,
            "seed": cfg.seed, "regen": regen, "generator": dataclasses.asdict(regen_generator_config(cfg)),
            "pretrain": config_hash(pretrain_config(cfg)) if cfg.regen.pretrain else None}


def regen_dir(cfg: ExperimentConfig) -> Path:
    """Folder of one regeneration pipeline's artefacts: ``runs/regen/<dataset>/<method>-<hash>``."""
    if cfg.regen.method == "none":
        raise ValueError("regen.method is 'none': there is nothing to regenerate")
    return runs_dir() / "regen" / cfg.data.dataset / f"{cfg.regen.method}-{config_digest(pipeline_key(cfg))}"


def pretrain_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The SASRec run on the original data whose item table starts the generator (DR4SR §2.2).

    Same dataset slice, profile, seed and device; SASRec with its defaults and the BCE loss, as
    DR4SR pre-trains it. A finished run with this config is reused.
    """
    overrides = {"data.max_users": cfg.data.max_users, "data.max_len": cfg.data.max_len,
                 "seed": cfg.seed, "device": cfg.device, "train.epochs": cfg.train.epochs,
                 "train.patience": cfg.train.patience}
    return load_config(cfg.data.dataset, cfg.profile, overrides, model="sasrec")


# --------------------------------------------------------------------------- stages


class OutOfTime(Exception):
    """A regeneration stage stopped at its deadline (checkpointed: the same call resumes it)."""

    def __init__(self, stage: str, epochs_done: int, epochs: int):
        super().__init__(f"{stage} stopped at epoch {epochs_done} of {epochs} before the deadline")
        self.stage, self.epochs_done, self.epochs = stage, epochs_done, epochs


def pretrained_item_table(cfg: ExperimentConfig, progress: bool = True,
                          deadline: float | None = None) -> torch.Tensor:
    """Item embeddings FloatTensor[n_items + 1, d] of the SASRec trained on the original data.

    Raises :class:`OutOfTime` when that SASRec stops at ``deadline`` before it is finished.
    """
    from rasr_lib.experiments.train_run import run_dir, run_experiment

    pre = pretrain_config(cfg)
    result = run_experiment(pre, publish=False, progress=progress, deadline=deadline)
    if result.get("interrupted"):
        raise OutOfTime("the generator's SASRec", result["epochs_run"], pre.train.epochs)
    state = torch.load(run_dir(pre) / "checkpoint.pt", map_location="cpu", weights_only=False)
    return state["best_state"]["item_embedding.weight"]


def rasr_training_pairs(cfg: ExperimentConfig, dataset: SeqDataset, progress: bool = True):
    """RaSR stages 1-3: embeddings, graph, augmentation; returns (sources, targets, graph, emb, augmented)."""
    emb = encode_items(dataset, progress=progress, device=cfg.device)
    graph = build_relation_graph(dataset, emb, graph_config(cfg.regen))
    augmented = augment_dataset(dataset, graph, augment_config(cfg.regen, cfg.data.max_len), seed=cfg.seed)
    if augmented.n_variants == 0:
        raise ValueError("augmentation made no variants: switch on regen.semantic_aug or regen.relational_aug")
    src, tgt = rasr_pairs(dataset, augmented, max_len=cfg.data.max_len)
    return src, tgt, graph, emb, augmented


def dr4sr_training_pairs(cfg: ExperimentConfig, dataset: SeqDataset):
    """DR4SR stage 1: mined patterns and (sequence -> pattern) pairs; returns (sources, targets, patterns)."""
    sequences = training_sequences(dataset)
    patterns = mine_patterns(sequences)
    if not patterns:
        raise ValueError(f"{dataset.name}: no pattern occurs in two sequences; DR4SR has nothing to learn")
    # Pairs are drawn from the sources the generator sees (last max_len items), so every target
    # item is in its source: the extractive mask would give any other item probability 0.
    truncated = [s[-cfg.data.max_len :] for s in sequences]
    source_index, targets = pattern_pairs(truncated, patterns, max_pairs=cfg.regen.max_pairs, seed=cfg.seed)
    sources = [truncated[s] for s in source_index.tolist()]
    return as_ragged(sources), as_ragged([np.asarray(t) for t in targets]), patterns


def augmented_as_regenerated(augmented: AugmentedSet) -> RegeneratedSet:
    """The augmented variants in :class:`RegeneratedSet` form (Fig. 3's "w/o regenerator")."""
    return RegeneratedSet(offsets=augmented.offsets.astype(np.int64), items=augmented.items.astype(np.int64),
                          source=augmented.source_user.astype(np.int64),
                          memory=augmented.kind.astype(np.int64), n_items=augmented.n_items,
                          n_decoded=augmented.n_candidates)


def run_regeneration(
    cfg: ExperimentConfig, dataset: SeqDataset | None = None, force: bool = False, progress: bool = True,
    deadline: float | None = None,
) -> tuple[RegeneratedSet, dict]:
    """Run (or resume, or read back) ``cfg.regen.method``'s pipeline; return (regenerated set, summary).

    The summary (also ``summary.json`` in :func:`regen_dir`) holds the stage timings, the sizes
    of the pairs and of the regenerated set, and the generator's per-epoch losses. With
    ``deadline`` (a ``time.time()`` value) the SASRec that starts the generator and the generator
    stop before it and :class:`OutOfTime` is raised; the same call resumes from their checkpoints.
    While another process runs the same pipeline, :class:`rasr_lib.runtime.FolderBusy` is raised.
    """
    folder = regen_dir(cfg)
    out_path, summary_path = folder / "regenerated.npz", folder / "summary.json"
    if out_path.exists() and summary_path.exists() and not force:
        log.info("reading finished regeneration %s", folder)
        regenerated, _ = load_regenerated(out_path)
        return regenerated, json.loads(summary_path.read_text())
    with folder_lock(folder):  # a second process asking for this pipeline gets FolderBusy
        if out_path.exists() and summary_path.exists() and not force:  # finished while we waited
            return run_regeneration(cfg, dataset, progress=progress)
        return _run_pipeline(cfg, folder, dataset, progress, deadline)


def _run_pipeline(cfg: ExperimentConfig, folder: Path, dataset: SeqDataset | None, progress: bool,
                  deadline: float | None) -> tuple[RegeneratedSet, dict]:
    """The stages of :func:`run_regeneration` (its caller holds ``folder``'s lock)."""
    from rasr_lib.data import load_dataset
    from rasr_lib.experiments.train_run import describe_device

    out_path, summary_path = folder / "regenerated.npz", folder / "summary.json"
    dataset = dataset if dataset is not None else load_dataset(cfg.data.dataset, max_users=cfg.data.max_users)
    device = get_device(cfg.device)
    gen_cfg = regen_generator_config(cfg)
    timings: dict[str, float] = {}
    summary: dict = {"method": cfg.regen.method, "dataset": cfg.data.dataset, "seed": cfg.seed,
                     "key": pipeline_key(cfg), "n_users": dataset.n_users,
                     "device": describe_device(device), "torch": torch.__version__}
    uses_generator = cfg.regen.method != "rasr" or cfg.regen.regenerator
    if uses_generator and cfg.regen.pretrain:  # refuse now, not after the embeddings and the graph
        from rasr_lib.experiments.train_run import run_dir

        holder = lock_holder(run_dir(pretrain_config(cfg)))
        if holder is not None:
            raise FolderBusy(f"the SASRec that starts this generator is being trained by {holder}; "
                             f"let it finish and run again")
    tic = time.perf_counter()
    graph = emb = None
    if cfg.regen.method == "rasr":
        src, tgt, graph, emb, augmented = rasr_training_pairs(cfg, dataset, progress)
        summary["augmented"] = augmented.stats()
    else:
        src, tgt, patterns = dr4sr_training_pairs(cfg, dataset)
        summary["n_patterns"] = len(patterns)
    summary["n_pairs"] = src.n_rows
    timings["pairs_s"] = time.perf_counter() - tic
    if not uses_generator:
        regenerated, history = augmented_as_regenerated(augmented), []
    else:
        tic = time.perf_counter()
        table = pretrained_item_table(cfg, progress, deadline) if cfg.regen.pretrain else None
        timings["pretrain_s"] = time.perf_counter() - tic
        generator = set_seed(cfg.seed)
        model = SequenceGenerator(dataset.n_items, gen_cfg, graph=graph,
                                  semantic=emb if gen_cfg.relation_aware else None)
        if table is not None:
            model.init_item_embeddings(table)
        tic = time.perf_counter()
        history = fit_generator(model, src, tgt, gen_cfg, device, generator,
                                checkpoint=folder / "generator.pt", progress=progress, deadline=deadline)
        if len(history) < gen_cfg.epochs:
            raise OutOfTime("the generator", len(history), gen_cfg.epochs)
        timings["generator_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        sources, lengths, _ = regeneration_sources(dataset, cfg.data.max_len)
        regenerated = regenerate(model, sources, lengths, gen_cfg, device, seed=cfg.seed, progress=progress)
        timings["regenerate_s"] = time.perf_counter() - tic
    save_regenerated(out_path, regenerated, pipeline_key(cfg), cfg.seed)
    summary.update({"regenerated": regenerated.stats(), "generator_history": history,
                    "timings": {k: round(v, 1) for k, v in timings.items()}})
    write_json(summary, summary_path)
    return regenerated, summary


# --------------------------------------------------------------------------- training data


def append_training_rows(split: SplitData, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> SplitData:
    """``split`` with extra synthetic training rows (input, target, length) appended (``train_user = -1``)."""
    x, y, n = rows
    return replace(
        split,
        train_input=np.concatenate([split.train_input, x]),
        train_target=np.concatenate([split.train_target, y]),
        train_len=np.concatenate([split.train_len, n]),
        train_user=np.concatenate([split.train_user, np.full(len(n), -1, dtype=np.int64)]),
    )


def regenerated_split(
    cfg: ExperimentConfig, split: SplitData, progress: bool = True, deadline: float | None = None
) -> tuple[SplitData, dict]:
    """The training data of ``cfg.regen.method``: ``split`` plus regenerated rows; (split, summary).

    RaSR: original + a fraction ``ratio`` of the regenerated sequences. DR4SR: original +
    patterns + original again + regenerated at ``ratio`` (DR4SR's ``train_regen.pth``).
    Validation and test are untouched. ``deadline``: see :func:`run_regeneration`.
    """
    regenerated, summary = run_regeneration(cfg, split.dataset, progress=progress, deadline=deadline)
    kept = subsample(regenerated, cfg.regen.ratio, seed=cfg.seed)
    n_original = len(split.train_len)
    out = split
    if cfg.regen.method == "dr4sr":
        patterns = mine_patterns(training_sequences(split.dataset))
        out = append_training_rows(out, pattern_training_rows(patterns, split.max_len))
        out = append_training_rows(out, (split.train_input, split.train_target, split.train_len))
    out = append_training_rows(out, training_rows(split, kept))
    info = {"pipeline": str(regen_dir(cfg).relative_to(runs_dir())), "n_regenerated": kept.n_sequences,
            "n_original_rows": n_original, "n_training_rows": int(len(out.train_len)),
            "regenerated_stats": kept.stats(), "regenerated_sha256": kept.digest(),
            "pipeline_timings": summary.get("timings", {}),
            "generator_history": summary.get("generator_history", [])}
    return out, info
