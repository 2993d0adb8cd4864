"""What the RaSR chapters show: figures of the multi-relation graph and tables of augmented edits.

Figures are returned as matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot state),
like the ``plot_*`` helpers of :mod:`rasr_lib.report`; tables are pandas objects. Nothing here
changes a graph or a sequence: these helpers only read what :mod:`rasr_lib.rasr.graphs` and
:mod:`rasr_lib.rasr.augment` computed.
"""

from __future__ import annotations

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

    ``aug`` is an :class:`~rasr_lib.rasr.augment.AugmentedSet`; ``source_of(user)`` returns the
    source sequence a variant was made from. Returns -1 when no variant qualifies.
    """
    code = list(aug.KINDS).index(kind)
    fits = (aug.kind == code) & (aug.lengths >= min_len) & (aug.lengths <= max_len)
    for v in np.flatnonzero(fits):
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
