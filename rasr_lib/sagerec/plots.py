"""What the SAGERec chapters show: the semantic graph's coverage, neighbours, edge weights, cold items.

Figures are matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot state), like the
``plot_*`` helpers of :mod:`rasr_lib.report` and :mod:`rasr_lib.rasr.plots`; tables are pandas
objects. Nothing here changes a graph or a model: these helpers only read what
:mod:`rasr_lib.sagerec.graph` built and :class:`~rasr_lib.sagerec.model.SAGERec` learned.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr.graphs import HOLDOUT
from rasr_lib.rasr.plots import shorten
from rasr_lib.sagerec.graph import ItemGraph, semantic_graph

# --------------------------------------------------------------------------- the graph (chapter 08)


def coverage_grid(
    emb: np.ndarray, ks: Sequence[int] = (1, 3, 5, 10), taus: Sequence[float] = (0.0, 0.5, 0.7, 0.9)
) -> pd.DataFrame:
    """Edges, isolated items, mean degree of ``semantic_graph(emb[n+1, d], k, tau)``: one row per (k, tau)."""
    rows = []
    for k in ks:
        for tau in taus:
            stats = semantic_graph(emb, k=int(k), tau=float(tau)).stats()
            rows.append({"k": int(k), "tau": float(tau), "edges": stats["n_edges"],
                         "isolated": stats["n_isolated"], "mean degree": stats["mean_degree"]})
    return pd.DataFrame(rows)


def coverage_table(grid: pd.DataFrame) -> pd.DataFrame:
    """``grid`` of :func:`coverage_grid` as one row per k, columns (measure, tau); counts int, degree 2 decimals."""
    wide = grid.pivot(index="k", columns="tau", values=["edges", "isolated", "mean degree"])
    for column in ("edges", "isolated"):
        wide[column] = wide[column].astype(int)
    wide["mean degree"] = wide["mean degree"].round(2)
    wide.columns.names = ["", "τ"]
    return wide


def plot_coverage(grid: pd.DataFrame, default_k: int = 3) -> Figure:
    """Edges, isolated items and mean degree against tau, one line per k (``grid`` from :func:`coverage_grid`)."""
    columns = ("edges", "isolated", "mean degree")
    fig = Figure(figsize=(9.6, 3.0), layout="constrained")
    axes = fig.subplots(1, len(columns))
    for ax, column in zip(axes, columns):
        for i, (k, rows) in enumerate(grid.groupby("k")):
            ax.plot(rows["tau"], rows[column], marker="o", color=f"C{i}", label=f"k = {k}",
                    lw=2.5 if k == default_k else 1.2)
        ax.set(xlabel="threshold τ", ylabel=column, title=column)
    axes[0].legend(fontsize="small")
    return fig


def plot_graph_distributions(graph: ItemGraph, bins: int = 40) -> Figure:
    """Degree histogram of the items (log counts) and cosine histogram of the M edges, side by side."""
    deg = graph.degree()[1:]
    fig = Figure(figsize=(9.0, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.hist(deg, bins=np.arange(deg.max(initial=0) + 2) - 0.5, color="#4C72B0")
    left.axvline(deg.mean(), color="k", ls="--", lw=1, label=f"mean {deg.mean():.2f}")
    left.set(yscale="log", xlabel="degree (undirected neighbours)", ylabel="items",
             title=f"{graph.n_items:,} items")
    left.legend(fontsize="small")
    right.hist(graph.weight, bins=bins, color="#55A868")
    right.axvline(float(np.median(graph.weight)), color="k", ls="--", lw=1,
                  label=f"median {np.median(graph.weight):.3f}")
    right.set(xlabel="cosine similarity of the edge", ylabel="edges", title=f"{graph.n_edges:,} edges")
    right.legend(fontsize="small")
    return fig


def neighbours(graph: ItemGraph, item: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64[n], float32[n]): the neighbours of ``item`` in the undirected graph, largest weight first."""
    at_src, at_dst = graph.src == item, graph.dst == item
    nbrs = np.concatenate([graph.dst[at_src], graph.src[at_dst]])
    weights = np.concatenate([graph.weight[at_src], graph.weight[at_dst]])
    order = np.lexsort((nbrs, -weights))  # by weight, descending; ties by id
    return nbrs[order].astype(np.int64), weights[order].astype(np.float32)


def neighbour_table(
    graph: ItemGraph, items: Sequence[int], title_of: Callable[[int], str], n: int = 5, width: int = 55
) -> pd.DataFrame:
    """Up to ``n`` graph neighbours of each of ``items`` with titles and cosine, one row per (item, rank)."""
    rows = []
    for item in items:
        nbrs, weights = neighbours(graph, int(item))
        for rank, (j, w) in enumerate(zip(nbrs[:n], weights[:n]), start=1):
            rows.append({"item": f"{int(item)}: {shorten(title_of(int(item)), width)}", "rank": rank,
                         "neighbour": f"{int(j)}: {shorten(title_of(int(j)), width)}",
                         "cosine": round(float(w), 3)})
    return pd.DataFrame(rows).set_index(["item", "rank"])


# --------------------------------------------------------------------------- the model (chapter 09)

_COMPONENTS = {
    "item_embedding": "item table E (|V|+1) x d",
    "position_embedding": "position table P (L x d)",
    "edge_mlp": "edge MLP (§4.3)",
    "encoder": "pre-LN attention blocks (§4.4)",
    "final_norm": "final LayerNorm",
}


def parameter_table(model: torch.nn.Module) -> pd.DataFrame:
    """Trainable parameters per top-level component of a model (rows) with their share, and a total row."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        top = name.split(".", 1)[0]
        label = _COMPONENTS.get(top, top)
        counts[label] = counts.get(label, 0) + param.numel()
    total = sum(counts.values())
    table = pd.DataFrame({"parameters": counts, "share": {k: v / total for k, v in counts.items()}})
    table.loc["total"] = [total, 1.0]
    table["parameters"] = table["parameters"].astype(int)
    return table


def edge_weights(model: torch.nn.Module) -> np.ndarray:
    """Learned weights w_ij float32[M] of every undirected graph edge from the current item table."""
    with torch.no_grad():
        weights = model.edge_mlp(model.item_embedding.weight, model.edge_src, model.edge_dst)
    return weights.detach().cpu().numpy().astype(np.float32)


def plot_edge_weights(cosine: np.ndarray, weights: Mapping[str, np.ndarray]) -> Figure:
    """Learned w_ij against the cosine of the same M edges, one scatter panel per entry of ``weights``."""
    fig = Figure(figsize=(4.2 * len(weights), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(weights), sharey=True))
    for ax, (label, w) in zip(axes, weights.items()):
        r = float(np.corrcoef(cosine, w)[0, 1]) if np.std(w) > 0 and np.std(cosine) > 0 else float("nan")
        ax.scatter(cosine, w, s=3, alpha=0.3, color="#4C72B0", rasterized=True)
        ax.set(xlabel="cosine weight (§4.2)", title=f"{label}: r = {r:.3f}, std {np.std(w):.4f}")
    axes[0].set_ylabel("learned weight $w_{ij}$ (§4.3)")
    return fig


def plot_curves(
    histories: Mapping[str, pd.DataFrame], columns: Sequence[str] = ("loss", "valid_ndcg@10"),
    logy: Sequence[str] = ("lr",),
) -> Figure:
    """One panel per history column, one line per run (a run lacking that column is skipped)."""
    fig = Figure(figsize=(3.6 * len(columns), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    for ax, column in zip(axes, columns):
        for i, (label, hist) in enumerate(histories.items()):
            if column in hist and "epoch" in hist:
                ax.plot(hist["epoch"], hist[column], color=f"C{i}", label=label)
        ax.set(xlabel="epoch", ylabel=column, title=column, yscale="log" if column in logy else "linear")
    axes[0].legend(fontsize="small")
    return fig


def training_items(ds: SeqDataset, holdout: int = HOLDOUT) -> np.ndarray:
    """bool[n_items + 1]: True for items in some sequence's training part (all but its last ``holdout``)."""
    seen = np.zeros(ds.n_items + 1, dtype=bool)
    for seq in ds.sequences():
        seen[seq[: max(len(seq) - holdout, 0)]] = True
    return seen


def cold_pairs(graph: ItemGraph, trained: np.ndarray) -> pd.DataFrame:
    """Items outside training (``trained`` bool[n+1]) with a trained neighbour: the strongest one, one row each."""
    rows = []
    for item in np.flatnonzero(~trained[1:]) + 1:
        nbrs, weights = neighbours(graph, int(item))
        warm = trained[nbrs]
        if warm.any():
            rows.append({"cold": int(item), "neighbour": int(nbrs[warm][0]), "cosine": float(weights[warm][0])})
    return pd.DataFrame(rows, columns=["cold", "neighbour", "cosine"])


def pair_cosines(table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine float64[M] between rows ``a[M]`` and ``b[M]`` of an item table [N, d] (0 for a zero row)."""
    table = np.asarray(table, dtype=np.float64)
    norms = np.linalg.norm(table, axis=1)
    norms[norms == 0] = 1.0
    unit = table / norms[:, None]
    return (unit[np.asarray(a)] * unit[np.asarray(b)]).sum(1)
