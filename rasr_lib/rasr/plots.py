"""What the RaSR chapters show: figures of the multi-relation graph and tables of augmented edits.

Figures are returned as matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot state),
like the ``plot_*`` helpers of :mod:`rasr_lib.report`; tables are pandas objects. Nothing here
changes a graph or a sequence: these helpers only read what :mod:`rasr_lib.rasr.graphs` and
:mod:`rasr_lib.rasr.augment` computed.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from rasr_lib.rasr.graphs import HOLDOUT

RELATION_COLOURS = {"C": "#4C72B0", "T": "#DD8452", "S": "#55A868"}
EDIT_COLOURS = {"inserted": "#d9f0d3", "substituted": "#fee8c8", "removed": "#f4cccc"}


def _colour(name: str, i: int) -> str:
    """Colour of a relation by name, else the i-th default colour."""
    return RELATION_COLOURS.get(name, f"C{i}")


def shorten(text: str, width: int) -> str:
    """``text`` with HTML entities unescaped, cut to ``width`` characters with an ellipsis."""
    text = html.unescape(str(text))
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- graph figures


def degrees(mat: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(out-degree int64[n-1], in-degree int64[n-1]) of a CSR [n, n]; row/column 0 (padding) dropped."""
    mat = sp.csr_matrix(mat)
    out = np.diff(mat.indptr)[1:].astype(np.int64)
    inn = np.bincount(mat.indices, minlength=mat.shape[1])[1:].astype(np.int64)
    return out, inn


def plot_relation_distributions(mats: Mapping[str, sp.spmatrix], bins: int = 40) -> Figure:
    """Degree (top row) and edge-weight (bottom row) distributions of each relation, log counts.

    ``mats`` maps a name (``"C"``, ``"T"``, ``"S"``) to a CSR [n_items+1, n_items+1]. One column
    per relation: out- and in-degree as step histograms, then the histogram of its nonzero weights.
    """
    n = len(mats)
    fig = Figure(figsize=(3.2 * n, 5.2), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for i, (name, mat) in enumerate(mats.items()):
        out, inn = degrees(mat)
        top = int(max(out.max(initial=0), inn.max(initial=0)))
        edges = np.arange(top + 2) - 0.5 if top < bins else bins
        ax = axes[0, i]
        ax.hist([out, inn], bins=edges, histtype="step", log=True,
                label=["out-degree", "in-degree"], color=[_colour(name, i), "k"])
        ax.set(title=f"{name}: neighbours per item", xlabel="degree", ylabel="items")
        ax.legend(fontsize="small")
        weights = sp.csr_matrix(mat).data
        ax = axes[1, i]
        ax.hist(weights, bins=bins, log=True, color=_colour(name, i))
        ax.set(title=f"{name}: {len(weights):,} edge weights", xlabel="weight", ylabel="edges")
    return fig


def neighbourhood(mats: Mapping[str, sp.spmatrix], item: int, per_relation: int = 3) -> np.ndarray:
    """``item`` followed by its ``per_relation`` strongest out-neighbours in each relation, int64[m].

    Neighbours are taken relation by relation in the order of ``mats``, strongest first, without
    repeats and without ``item`` itself; the result has at most ``1 + per_relation * len(mats)`` ids.
    """
    nodes = [int(item)]
    for mat in mats.values():
        row = sp.csr_matrix(mat)[int(item)]
        order = np.argsort(-row.data, kind="stable")
        picked = [int(j) for j in row.indices[order] if j != item and j not in nodes]
        nodes.extend(picked[:per_relation])
    return np.asarray(nodes, dtype=np.int64)


def plot_neighbourhood(
    mats: Mapping[str, sp.spmatrix], nodes: Sequence[int], labels: Sequence[str] | None = None
) -> Figure:
    """Heat-maps of each relation restricted to ``nodes`` (rows: from, columns: to), one axis each.

    Cells carry their weight as text (blank where there is no edge); ``labels`` name the rows of
    the first map (default: the item ids).
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    labels = [str(v) for v in nodes] if labels is None else list(labels)
    n = len(mats)
    fig = Figure(figsize=(2.2 + 2.6 * n, 0.5 + 0.35 * len(nodes)), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, (ax, (name, mat)) in enumerate(zip(axes, mats.items())):
        block = sp.csr_matrix(mat)[nodes][:, nodes].toarray()
        ax.imshow(np.where(block > 0, block, np.nan), cmap="viridis", aspect="auto")
        for r, c in zip(*np.nonzero(block)):
            ax.text(c, r, f"{block[r, c]:.2g}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(nodes)), [str(v) for v in nodes], rotation=90, fontsize=7)
        ax.set_yticks(range(len(nodes)), labels if i == 0 else [str(v) for v in nodes], fontsize=7)
        ax.set_title(name)
    return fig


def plot_transition_weights(weights: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """Weight of each transition k = 1..L-1 of one sequence under several temporal readings (log y)."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, w in weights.items():
        w = np.asarray(w, dtype=float)
        ax.plot(np.arange(1, len(w) + 1), w, marker=".", ms=3, label=name)
    ax.set(yscale="log", xlabel="transition k (1 = oldest)", ylabel="weight added to T", title=title)
    ax.legend(fontsize="small")
    return fig


def semantic_neighbour_table(
    index: np.ndarray, sims: np.ndarray, items: Sequence[int], title_of: Callable[[int], str],
    n: int = 3, width: int = 60,
) -> pd.DataFrame:
    """Top-``n`` semantic neighbours of ``items`` with titles and cosine, one row per (item, rank).

    ``index``/``sims`` are the graph's top-k lists (int64[n_items+1, k], float32[n_items+1, k]).
    """
    rows = []
    for item in items:
        for rank in range(min(n, index.shape[1])):
            j = int(index[item, rank])
            rows.append({"item": shorten(title_of(int(item)), width), "rank": rank + 1,
                         "neighbour": shorten(title_of(j), width), "cosine": round(float(sims[item, rank]), 3)})
    return pd.DataFrame(rows).set_index(["item", "rank"])


# --------------------------------------------------------------------------- augmentation


def edit_ops(before: Sequence[int], after: Sequence[int]) -> list[tuple[str, int, int]]:
    """Align two item sequences: ``(op, before_item, after_item)`` per row, 0 where absent.

    ``op`` is ``kept``, ``substituted``, ``inserted`` or ``removed`` (from :mod:`difflib`'s
    opcodes; a replace block of unequal sizes is split into substitutions plus the rest).
    """
    a, b = [int(v) for v in before], [int(v) for v in after]
    rows: list[tuple[str, int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [("kept", a[i], b[j]) for i, j in zip(range(i1, i2), range(j1, j2))]
            continue
        common = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        rows += [("substituted", a[i1 + d], b[j1 + d]) for d in range(common)]
        rows += [("removed", a[i], 0) for i in range(i1 + common, i2)]
        rows += [("inserted", 0, b[j]) for j in range(j1 + common, j2)]
    return rows


def changed_share(before: Sequence[int], after: Sequence[int]) -> float:
    """Share of the items of ``after`` that are not kept from ``before`` (0.0 for an empty ``after``)."""
    ops = edit_ops(before, after)
    n_after = sum(op != "removed" for op, _, _ in ops)
    changed = sum(op in ("substituted", "inserted") for op, _, _ in ops)
    return changed / n_after if n_after else 0.0


def edit_table(
    before: Sequence[int], after: Sequence[int], title_of: Callable[[int], str],
    score: Callable[[int, int], float] | None = None, score_name: str = "score", width: int = 55,
) -> pd.DataFrame:
    """Before/after titles of one augmented sequence aligned row by row, with the edit per row.

    With ``score``, edited rows also get ``score(i_t, j)``: ``i_t`` is the item a substitution
    replaced, or for an insertion the next original item (an insertion goes before ``i_t``).
    """
    ops = edit_ops(before, after)
    rows = []
    for r, (op, x, y) in enumerate(ops):
        row = {"edit": op, "before": shorten(title_of(x), width) if x else "",
               "after": shorten(title_of(y), width) if y else ""}
        if score is not None:
            anchor = 0
            if op == "substituted":
                anchor = x
            elif op == "inserted":  # the next original item: the i_t it was inserted before
                anchor = next((b for o, b, _ in ops[r + 1:] if o in ("kept", "substituted")), 0)
            row[score_name] = round(float(score(anchor, y)), 3) if anchor else None
        rows.append(row)
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="row"))


def source_sequence(ds, max_len: int = 0) -> Callable[[int], np.ndarray]:
    """``user -> training part seq[:-2]`` (its last ``max_len`` items if > 0): what augmentation edits."""
    def source_of(user: int) -> np.ndarray:
        part = ds.sequence(int(user))[:-HOLDOUT]
        return part[-max_len:] if max_len > 0 else part

    return source_of


def first_variant_with(
    aug, source_of: Callable[[int], Sequence[int]], kind: str, ops: Sequence[str],
    max_len: int = 8, min_len: int = 1,
) -> int:
    """First variant of ``kind`` (``min_len <= length <= max_len``) whose edits include all ``ops``.

    When none that short qualifies (ML-1M: every training part has 18 items or more), the
    shortest longer one that does. ``aug`` is an :class:`~rasr_lib.rasr.augment.AugmentedSet`;
    ``source_of(user)`` returns the source sequence a variant was made from. Returns -1 when no
    variant qualifies.
    """
    code = list(aug.KINDS).index(kind)
    of_kind = (aug.kind == code) & (aug.lengths >= min_len)
    short = np.flatnonzero(of_kind & (aug.lengths <= max_len))
    longer = np.flatnonzero(of_kind & (aug.lengths > max_len))
    longer = longer[np.argsort(aug.lengths[longer], kind="stable")]
    for v in np.concatenate([short, longer]):
        found = {op for op, _, _ in edit_ops(source_of(int(aug.source_user[v])), aug.sequence(v))}
        if set(ops) <= found:
            return int(v)
    return -1


def highlight_edits(table: pd.DataFrame):
    """An :func:`edit_table` as a pandas Styler whose edited rows are shaded by kind of edit."""
    def shade(row: pd.Series) -> list[str]:
        colour = EDIT_COLOURS.get(row["edit"])
        return [f"background-color: {colour}" if colour else ""] * len(row)

    return table.style.apply(shade, axis=1).format(precision=3, na_rep="")


def augmentation_summary(
    aug, source_offsets: np.ndarray, source_items: np.ndarray, changed: np.ndarray,
    n_per_source: Mapping[str, int],
) -> pd.DataFrame:
    """One row for the source sequences and one per kind of variant: counts, lengths, edits.

    ``source_offsets``/``source_items`` are the CSR sources (``training_parts``), ``changed``
    float[n_variants] the :func:`changed_share` of every variant and ``n_per_source`` the
    variants asked for per source and kind (``{"semantic": 2, "relational": 2}``).
    """
    n_sources = len(source_offsets) - 1
    lengths = np.diff(source_offsets)
    rows = {"original": {"sequences": n_sources, "dropped as duplicates": 0,
                         "mean length": round(float(lengths.mean()), 2), "share of items changed": 0.0,
                         "distinct items": len(np.unique(source_items))}}
    for code, kind in enumerate(aug.KINDS):
        m = aug.kind == code
        rows[kind] = {"sequences": int(m.sum()),
                      "dropped as duplicates": n_sources * int(n_per_source.get(kind, 0)) - int(m.sum()),
                      "mean length": round(float(aug.lengths[m].mean()), 2) if m.any() else 0.0,
                      "share of items changed": round(float(np.mean(changed[m])), 3) if m.any() else 0.0,
                      "distinct items": len(np.unique(aug.items[np.repeat(m, aug.lengths)]))}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_length_distributions(lengths: Mapping[str, np.ndarray], bins: int = 30) -> Figure:
    """Step histograms of sequence lengths for several sets on one axis (log counts), means marked."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    arrays = {k: np.asarray(v) for k, v in lengths.items()}
    top = max((int(v.max()) for v in arrays.values() if len(v)), default=1)
    edges = np.linspace(0.5, top + 0.5, min(bins, top) + 1)
    for i, (name, v) in enumerate(arrays.items()):
        ax.hist(v, bins=edges, histtype="step", log=True, color=f"C{i}",
                label=f"{name} (mean {v.mean():.2f})")
        ax.axvline(v.mean(), color=f"C{i}", ls="--", lw=1)
    ax.set(xlabel="sequence length", ylabel="sequences")
    ax.legend(fontsize="small")
    return fig


def plot_variants_per_source(counts: Mapping[str, np.ndarray], max_variants: int) -> Figure:
    """Bars: how many source sequences kept 0..max_variants variants, one bar group per kind."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(max_variants + 1)
    width = 0.8 / max(len(counts), 1)
    for i, (name, c) in enumerate(counts.items()):
        hist = np.bincount(np.asarray(c, dtype=np.int64), minlength=max_variants + 1)[: max_variants + 1]
        ax.bar(x + (i - (len(counts) - 1) / 2) * width, hist, width=width, label=name)
    ax.set(xticks=x, xlabel="variants kept per source sequence", ylabel="source sequences")
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- regeneration


def generator_config_table(configs: Mapping[str, object]) -> pd.DataFrame:
    """Fields (rows) of generator configs (dataclasses, one column each) as text, plus ``differs``."""
    values = {name: {k: str(v) for k, v in dataclasses.asdict(cfg).items()} for name, cfg in configs.items()}
    table = pd.DataFrame(values)
    table.index.name = "field"
    table["differs"] = [len(set(row)) > 1 for row in table.itertuples(index=False)]
    return table


def plot_generator_history(
    histories: Mapping[str, Sequence[Mapping[str, float]]], reference: Mapping[str, float] | None = None,
    reference_label: str = "uniform guess",
) -> Figure:
    """Per-epoch cross-entropy of each generator run (one axis each) and memory-weight entropy (last axis).

    ``histories`` maps a name to :func:`~rasr_lib.rasr.generator.fit_generator`'s list of epoch
    dicts (``epoch``, ``ce``, ``entropy``); ``reference`` maps a run name to a value drawn as a
    dotted line labelled ``reference_label`` on that run's axis (e.g. the loss of a uniform guess).
    """
    n = len(histories)
    fig = Figure(figsize=(3.2 * (n + 1), 3.2), layout="constrained")
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    ax_ent = axes[-1]
    for i, (ax, (name, history)) in enumerate(zip(axes, histories.items())):
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["ce"] for h in history], marker="o", ms=3, color=f"C{i}", label=name)
        if reference and name in reference:
            ax.axhline(reference[name], color=f"C{i}", ls=":", lw=1, label=reference_label)
        ax.set(xlabel="epoch", ylabel="cross-entropy per token", title=f"{name}: Eq. (8) loss")
        ax_ent.plot(epochs, [h["entropy"] for h in history], marker="o", ms=3, color=f"C{i}", label=name)
    ax_ent.set(xlabel="epoch", ylabel="entropy (nats)", title="entropy of the memory weights")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    return fig


def sequence_stats(
    sequences: Sequence[Sequence[int]], sources: Sequence[Sequence[int]] | None = None,
    known: np.ndarray | None = None,
) -> dict:
    """Size, length and item coverage of a set of sequences; with ``sources`` also how much they copy.

    ``sources[r]`` is the sequence that row r was made from; ``known`` int[m] the items of the
    original training data (items outside it are counted as ``new items``).
    """
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    items = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    distinct = np.unique(items)
    out = {"sequences": len(seqs), "interactions": int(lengths.sum()),
           "mean length": round(float(lengths.mean()), 2) if len(seqs) else 0.0,
           "distinct items": len(distinct)}
    if known is not None:
        out["new items"] = int(len(np.setdiff1d(distinct, known)))
    if sources is not None:
        srcs = [np.asarray(s, dtype=np.int64) for s in sources]
        if len(srcs) != len(seqs):
            raise ValueError(f"{len(seqs)} sequences but {len(srcs)} sources")
        prefix = [len(s) <= len(r) and np.array_equal(s, r[: len(s)]) for s, r in zip(seqs, srcs)]
        inside = [np.isin(s, r) for s, r in zip(seqs, srcs)]
        out["prefix of source"] = round(float(np.mean(prefix)), 3) if seqs else 0.0
        out["only source items"] = round(float(np.mean([m.all() for m in inside])), 3) if seqs else 0.0
        out["items from source"] = round(float(np.concatenate(inside).mean()), 3) if len(items) else 0.0
    return out


def example_source(
    source: np.ndarray, lengths: np.ndarray, source_lengths: np.ndarray, max_len: int = 10
) -> int:
    """Source row with the most regenerated sequences, then items (ties: smallest row), among short sources.

    ``source`` int[n] and ``lengths`` int[n] describe the regenerated sequences, ``source_lengths``
    int[N] the sources; only sources of at most ``max_len`` items qualify. Returns -1 if none does.
    """
    source, lengths = np.asarray(source, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    n_sources = len(source_lengths)
    count = np.bincount(source, minlength=n_sources)[:n_sources]
    total = np.bincount(source, weights=lengths, minlength=n_sources)[:n_sources]
    ok = np.flatnonzero((count > 0) & (np.asarray(source_lengths) <= max_len))
    if len(ok) == 0:
        return -1
    best = np.lexsort((ok, -total[ok], -count[ok]))[0]
    return int(ok[best])


def side_by_side(
    columns: Mapping[str, Sequence[int]], title_of: Callable[[int], str], width: int = 45
) -> pd.DataFrame:
    """Titles of several sequences in columns, one row per position; the first column is the source.

    Items of the other columns that do not occur in the first are marked with a leading ``+``.
    """
    seqs = {name: [int(v) for v in s] for name, s in columns.items()}
    reference = set(next(iter(seqs.values()), []))
    n_rows = max((len(s) for s in seqs.values()), default=0)
    table = {}
    for c, (name, seq) in enumerate(seqs.items()):
        cells = [("+ " if c and v not in reference else "") + shorten(title_of(v), width) for v in seq]
        table[name] = cells + [""] * (n_rows - len(cells))
    return pd.DataFrame(table, index=pd.RangeIndex(1, n_rows + 1, name="position"))
