"""RaSR regeneration (inference stage) and DR4SR's hybrid decoding, batched; merge and provenance.

Every source is decoded once per memory k = 0..K-1 (DR4SR's diversity promoter; K = 1 is one
pass) by greedy decoding that never repeats an item within one output:

- the first ``keep_prefix`` steps stay tied to the source. ``prefix_mode="copy"`` forces the
  source's first items (RaSR: "the first K items are preserved from the original sequence");
  ``"restrictive"`` lets the model choose among the not-yet-generated source items and EOS
  (DR4SR's two restrictive steps, ``3.Hybrid_inference.py``);
- every later step may emit any not-yet-generated item with probability ``generative_prob``
  (DR4SR's gamma; its released script effectively uses 1, its own sweep found 0.1 best), else
  only not-yet-generated source items; EOS is always allowed;
- decoding stops at EOS or after ``decode_max_len - 1`` items (DR4SR: 25 tokens with SOS).

DR4SR decodes one sequence at a time and re-runs the decoder on the whole prefix at every step.
Here a batch of sources is encoded once, its K memories are expanded to ``B * K`` rows, all rows
step together (masks are scatters into the ``[rows, vocabulary]`` logits on the device), the
decoder advances one position per step from a cache of each layer's inputs
(:meth:`~rasr_lib.rasr.generator.SequenceGenerator.decode_next`, equal to the full re-run), and
finished rows leave the batch. Empty outputs, copies of the source and repeats are dropped.

Regenerated sequences are **training rows only**: :func:`training_rows` / :func:`extend_split`
append them to a :class:`~rasr_lib.data.split.SplitData`'s training arrays (input ``s[:-1]``,
target ``s[1:]``, as DR4SR does), never as new validation or test users.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import SplitData, last_items_padded
from rasr_lib.rasr.augment import training_parts
from rasr_lib.rasr.generator import GeneratorConfig, SequenceGenerator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegeneratedSet:
    """Regenerated sequences (CSR, items 1..n_items, no padding) with their source and memory."""

    offsets: np.ndarray  # int64[n + 1]: row starts into items
    items: np.ndarray  # int64[offsets[-1]]: item ids 1..n_items
    source: np.ndarray  # int64[n]: row of the source in the ``sources`` matrix that was decoded
    memory: np.ndarray  # int64[n]: memory k (0..K-1) that produced the sequence
    n_items: int  # catalogue size
    n_decoded: int = 0  # outputs decoded before filtering (sources x K)
    n_empty: int = 0  # dropped: EOS came first
    n_source_copies: int = 0  # dropped: identical to their source
    n_repeats: int = 0  # dropped: repeated output (per source or across sources, cfg.dedup)

    @property
    def n_sequences(self) -> int:
        """Number of regenerated sequences kept."""
        return int(len(self.offsets) - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Length of every sequence, int64[n]."""
        return np.diff(self.offsets)

    def sequence(self, r: int) -> np.ndarray:
        """Item ids of sequence ``r``."""
        return self.items[self.offsets[r] : self.offsets[r + 1]]

    def sequences(self) -> list[np.ndarray]:
        """All sequences as a list of arrays (views)."""
        return np.split(self.items, self.offsets[1:-1])

    def select(self, rows: np.ndarray) -> "RegeneratedSet":
        """The sequences at ``rows`` (in that order), drop counters kept."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(self.offsets[rows] - offsets[:-1], lengths)
        return dataclasses.replace(self, offsets=offsets, items=self.items[flat],
                                   source=self.source[rows], memory=self.memory[rows])

    def digest(self) -> str:
        """sha256 (hex) of the sequences (offsets and items): equal digests mean equal sets, row for row."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.offsets, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.items, dtype=np.int64).tobytes())
        return h.hexdigest()

    def stats(self) -> dict:
        """Counts and lengths (plain Python numbers)."""
        return {
            "n_sequences": self.n_sequences,
            "n_decoded": self.n_decoded,
            "n_empty": self.n_empty,
            "n_source_copies": self.n_source_copies,
            "n_repeats": self.n_repeats,
            "n_sources": int(len(np.unique(self.source))),
            "avg_len": round(float(self.lengths.mean()), 3) if self.n_sequences else 0.0,
            "n_interactions": int(len(self.items)),
        }


def regeneration_sources(ds: SeqDataset, max_len: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources to regenerate: every user's training part ``seq[:-2]``, last ``max_len`` items.

    Returns (sources int64[N, max_len] right-padded, lengths int64[N], users int64[N]: row in ds).
    """
    offsets, items, users = training_parts(ds, max_len)
    sources, lengths = last_items_padded(items, offsets[:-1], offsets[1:], max_len)
    return sources, lengths, users


# --------------------------------------------------------------------------- decoding


def copy_prefix(src: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forced prefix of copy mode: the distinct items among each source's first ``keep``, in order.

    ``src`` LongTensor[B, L] right-padded; returns (prefix LongTensor[B, keep], its length [B]).
    """
    window = src[:, :keep]
    width = window.size(1)
    earlier = torch.tril(torch.ones(width, width, dtype=torch.bool, device=src.device), diagonal=-1)
    repeat = ((window[:, :, None] == window[:, None, :]) & earlier).any(-1)
    use = (window > 0) & ~repeat
    order = torch.argsort((~use).to(torch.int8), dim=1, stable=True)
    prefix = torch.gather(window, 1, order)
    length = use.sum(1)
    prefix[torch.arange(width, device=src.device)[None] >= length[:, None]] = 0
    return prefix, length


@torch.no_grad()
def decode_batch(
    model: SequenceGenerator, src: torch.Tensor, cfg: GeneratorConfig, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hybrid greedy decoding of a batch: (items LongTensor[B*K, T], lengths LongTensor[B*K]).

    ``src`` LongTensor[B, L]: right-padded sources on the model's device. Row ``b * K + k`` is
    source b decoded with memory k; items are right-padded, EOS removed, T = decode_max_len - 1.
    ``rng`` (CPU) draws the generative/restrictive choice of every row at every step. The
    encoder runs once; the decoder advances one position per step (:meth:`decode_next`), and
    finished rows leave the working set. Masks are scatters of ``-inf`` into the logits: the
    items already emitted (plus PAD and SOS) always, everything but the source items and EOS
    on restricted steps.
    """
    device = src.device
    K, V, eos = model.n_memories, model.vocab_size, model.eos
    memory, pad, tokens = model.encode(src)
    B, Ls, d = memory.shape
    if K > 1:
        memory = model.memories(memory).permute(0, 2, 1, 3).reshape(B * K, Ls, d)
        pad = pad.repeat_interleave(K, 0)
    rows_total = B * K
    eos_col = torch.full((B, 1), eos, dtype=torch.long, device=device)
    candidates = torch.cat([tokens, eos_col], 1).repeat_interleave(K, 0)  # source items + EOS
    steps = cfg.decode_max_len - 1
    copy = cfg.prefix_mode == "copy" and cfg.keep_prefix > 0
    if copy:
        forced, forced_len = copy_prefix(src, min(cfg.keep_prefix, steps))
        forced, forced_len = forced.repeat_interleave(K, 0), forced_len.repeat_interleave(K, 0)
    out = torch.zeros(rows_total, steps, dtype=torch.long, device=device)
    out_len = torch.zeros(rows_total, dtype=torch.long, device=device)
    alive = torch.arange(rows_total, device=device)  # global row of every working row
    ys = torch.full((rows_total, 1), model.sos, dtype=torch.long, device=device)  # SOS + emitted
    cache = None
    table_t = model.item_embedding.weight.T
    for t in range(steps):
        if alive.numel() == 0:
            break
        draws = torch.rand(rows_total, generator=rng).to(device)[alive]
        states, cache = model.decode_next(ys[:, -1], t, memory, pad, cache)
        nxt = torch.empty(alive.numel(), dtype=torch.long, device=device)
        is_forced = forced_len[alive] > t if copy else torch.zeros_like(alive, dtype=torch.bool)
        if is_forced.any():
            nxt[is_forced] = forced[alive[is_forced], t]
        free = torch.nonzero(~is_forced).squeeze(1)
        if free.numel():
            logits = states[free] @ table_t  # [F, V]
            if cfg.prefix_mode == "restrictive" and t < cfg.keep_prefix:
                restrict = torch.ones(free.numel(), dtype=torch.bool, device=device)
            else:
                restrict = draws[free] >= cfg.generative_prob
            if restrict.any():
                r = torch.nonzero(restrict).squeeze(1)
                cand = candidates[alive[free[r]]]
                only = torch.full((r.numel(), V), -torch.inf, device=device, dtype=logits.dtype)
                logits[r] = only.scatter_(1, cand, logits[r].gather(1, cand))
            logits.scatter_(1, ys[free], -torch.inf)  # SOS and the items already emitted
            logits[:, 0] = -torch.inf
            nxt[free] = logits.argmax(1)
        done = nxt == eos
        grow = alive[~done]
        out[grow, t] = nxt[~done]
        out_len[grow] += 1
        ys = torch.cat([ys, nxt[:, None]], 1)
        if done.any():
            keep = torch.nonzero(~done).squeeze(1)
            alive, ys, memory, pad = alive[keep], ys[keep], memory[keep], pad[keep]
            cache = [c[keep] for c in cache]
    return out, out_len


def greedy_decode(
    model: SequenceGenerator,
    sources: np.ndarray,
    lengths: np.ndarray,
    cfg: GeneratorConfig,
    device: torch.device,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every source K times: (items int64[N*K, T] right-padded, lengths int64[N*K]).

    ``sources`` int64[N, L] right-padded with ``lengths`` int64[N]; row ``n * K + k`` is source n
    with memory k. Sources are batched by length; the result depends only on ``seed`` and the
    batch size.
    """
    sources = np.asarray(sources, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths <= 0).any():
        raise ValueError("every source needs at least one item")
    K, steps = model.n_memories, cfg.decode_max_len - 1
    was_training = model.training
    model.eval().to(device)
    rng = torch.Generator().manual_seed(seed)
    out = np.zeros((len(sources) * K, steps), dtype=np.int64)
    out_len = np.zeros(len(sources) * K, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + cfg.decode_batch_size] for i in range(0, len(order), cfg.decode_batch_size)]
    for idx in tqdm(batches, desc="regenerate", disable=not progress, leave=False):
        width = min(int(lengths[idx].max()), sources.shape[1])
        src = torch.from_numpy(sources[idx, :width]).to(device)
        items, n = decode_batch(model, src, cfg, rng)
        rows = (idx[:, None] * K + np.arange(K)[None]).ravel()
        out[rows] = items.cpu().numpy()
        out_len[rows] = n.cpu().numpy()
    model.train(was_training)
    return out, out_len


def filter_outputs(
    out: np.ndarray, out_len: np.ndarray, sources: np.ndarray, lengths: np.ndarray, K: int,
    dedup: str = "source",
) -> tuple[np.ndarray, dict]:
    """Rows of ``out`` [N*K, T] to keep: non-empty, not equal to their source, first of repeats.

    ``dedup="source"`` drops repeats among one source's K outputs; ``"global"`` any repeat
    (DR4SR's set of tuples). Returns (kept rows int64, drop counts).
    """
    n = len(out)
    src_idx = np.arange(n) // K
    empty = out_len == 0
    width = min(out.shape[1], sources.shape[1])
    copy = (out_len == lengths[src_idx]) & (out[:, :width] == sources[src_idx, :width]).all(1) & ~empty
    rows = np.flatnonzero(~empty & ~copy)
    key = out[rows] if dedup == "global" else np.column_stack([src_idx[rows], out[rows]])
    first = np.unique(key, axis=0, return_index=True)[1] if len(rows) else np.zeros(0, dtype=np.int64)
    kept = np.sort(rows[first])
    counts = {"n_decoded": n, "n_empty": int(empty.sum()), "n_source_copies": int(copy.sum()),
              "n_repeats": int(len(rows) - len(kept))}
    return kept, counts


def regenerate(
    model: SequenceGenerator,
    sources: np.ndarray,
    lengths: np.ndarray,
    cfg: GeneratorConfig,
    device: torch.device,
    seed: int = 0,
    progress: bool = True,
) -> RegeneratedSet:
    """RaSR regeneration: hybrid greedy decoding of every source with every memory, filtered.

    ``sources`` int64[N, L] right-padded (e.g. :func:`regeneration_sources`), ``lengths``
    int64[N]. Output rows are ordered by source, then memory.
    """
    tic = time.perf_counter()
    out, out_len = greedy_decode(model, sources, lengths, cfg, device, seed=seed, progress=progress)
    K = model.n_memories
    kept, counts = filter_outputs(out, out_len, np.asarray(sources), np.asarray(lengths), K, cfg.dedup)
    lens = out_len[kept]
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    items = out[kept][np.arange(out.shape[1])[None] < lens[:, None]]
    result = RegeneratedSet(offsets=offsets, items=items, source=kept // K, memory=kept % K,
                            n_items=model.n_items, **counts)
    logger.info("regenerated %d sequences from %d sources x %d memories in %.1f s (%s)",
                result.n_sequences, len(sources), K, time.perf_counter() - tic, counts)
    return result


# --------------------------------------------------------------------------- merging


def subsample(regenerated: RegeneratedSet, ratio: float, seed: int = 0) -> RegeneratedSet:
    """A random fraction ``ratio`` in [0, 1] of the sequences (order kept; 1.0 = all)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    n = regenerated.n_sequences
    if ratio >= 1.0:
        return regenerated
    rows = np.random.default_rng(seed).choice(n, size=int(round(ratio * n)), replace=False)
    return regenerated.select(np.sort(rows))


def merge_with_original(
    original: SeqDataset, regenerated: RegeneratedSet, ratio: float = 1.0, seed: int = 0
) -> SeqDataset:
    """Original users (rows 0..n_users-1) followed by a fraction ``ratio`` of the regenerated sequences.

    The extra rows are **training-only**: do not pass the result to ``leave_one_out`` (that would
    hold out their last two items and evaluate them as users). Train on
    ``extend_split(leave_one_out(original), regenerated, ratio, seed)`` instead, which appends
    the same rows to the training arrays only.
    """
    if regenerated.n_items != original.n_items:
        raise ValueError(f"regenerated set has {regenerated.n_items} items, dataset {original.n_items}")
    kept = subsample(regenerated, ratio, seed)
    offsets = np.concatenate([original.offsets, original.offsets[-1] + kept.offsets[1:]])
    return SeqDataset(
        name=f"{original.name}+regen",
        offsets=offsets.astype(np.int64),
        items=np.concatenate([original.items, kept.items]).astype(np.int64),
        n_items=original.n_items,
        item_text=original.item_text,
        source=f"{original.source}; rows >= {original.n_users} are regenerated (training-only)",
    )


def training_rows(
    split: SplitData, regenerated: RegeneratedSet, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DR4SR's rows of regenerated sequences: input ``s[:-1]``, target ``s[1:]`` (last max_len each).

    Returns (train_input int64[n, max_len], train_target int64[n, max_len], train_len int64[n]),
    right-padded, ready to concatenate onto ``split``'s training arrays; sequences of one item
    (no target) are skipped. ``max_len`` defaults to ``split.max_len``.
    """
    if regenerated.n_items != split.n_items:
        raise ValueError(f"regenerated set has {regenerated.n_items} items, split {split.n_items}")
    max_len = split.max_len if max_len is None else max_len
    starts, ends = regenerated.offsets[:-1], regenerated.offsets[1:]
    keep = ends - starts >= 2
    starts, ends = starts[keep], ends[keep]
    train_input, train_len = last_items_padded(regenerated.items, starts, ends - 1, max_len)
    train_target, _ = last_items_padded(regenerated.items, starts + 1, ends, max_len)
    return train_input, train_target, train_len


def extend_split(
    split: SplitData, regenerated: RegeneratedSet, ratio: float = 1.0, seed: int = 0
) -> SplitData:
    """``split`` with a fraction ``ratio`` of the regenerated sequences appended as training rows.

    Validation and test arrays are unchanged; the new rows get ``train_user = -1`` (synthetic).
    """
    kept = subsample(regenerated, ratio, seed)
    x, y, n = training_rows(split, kept)
    return dataclasses.replace(
        split,
        train_input=np.concatenate([split.train_input, x]),
        train_target=np.concatenate([split.train_target, y]),
        train_len=np.concatenate([split.train_len, n]),
        train_user=np.concatenate([split.train_user, np.full(len(n), -1, dtype=np.int64)]),
    )


# --------------------------------------------------------------------------- provenance


def config_digest(config: dict, length: int = 10) -> str:
    """Stable short sha256 of a JSON-serialisable config (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def save_regenerated(path: str | Path, result: RegeneratedSet, config, seed: int) -> Path:
    """Write ``path`` (.npz arrays) and ``path.json`` (config, its hash, seed, counts, git commit).

    ``config`` is a dict or a dataclass (e.g. the :class:`GeneratorConfig` plus whatever built the
    pairs); both files are written atomically. Returns the .npz path.
    """
    from rasr_lib.runtime import git_commit

    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, offsets=result.offsets, items=result.items, source=result.source, memory=result.memory)
    os.replace(tmp, path)
    meta = {
        "config": config,
        "config_hash": config_digest(config),
        "seed": int(seed),
        "n_items": int(result.n_items),
        "counts": result.stats(),
        "items_sha256": result.digest(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    sidecar = path.with_suffix(".json")
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    os.replace(tmp, sidecar)
    logger.info("saved %d regenerated sequences to %s (config %s)",
                result.n_sequences, path, meta["config_hash"])
    return path


def load_regenerated(path: str | Path) -> tuple[RegeneratedSet, dict]:
    """Read what :func:`save_regenerated` wrote: (RegeneratedSet, sidecar metadata); checks the digest."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as data:
        arrays = {k: data[k].astype(np.int64) for k in ("offsets", "items", "source", "memory")}
    counts = meta.get("counts", {})
    result = RegeneratedSet(
        **arrays, n_items=int(meta["n_items"]),
        **{k: int(counts.get(k, 0)) for k in ("n_decoded", "n_empty", "n_source_copies", "n_repeats")},
    )
    if result.digest() != meta["items_sha256"]:
        raise ValueError(f"{path}: arrays do not match the digest in {path.with_suffix('.json').name}")
    return result, meta
