"""Figures and tables of the SAGERec chapters on hand-made graphs, datasets and tiny models."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from test_sagerec import six_items, tiny_model

from rasr_lib.data.schema import SeqDataset
from rasr_lib.sagerec import plots
from rasr_lib.sagerec.graph import ItemGraph, semantic_graph


@pytest.fixture
def graph() -> ItemGraph:
    """The k=2, tau=0.25 graph of test_sagerec: edges 1-2 .9, 1-3 .8, 2-3 .7, 3-4 .3, 4-5 .6; 6 isolated."""
    return semantic_graph(six_items(), k=2, tau=0.25)


def test_coverage_grid_matches_the_hand_computed_graphs():
    grid = plots.coverage_grid(six_items(), ks=(2, 3), taus=(0.15, 0.25))
    assert list(grid.columns) == ["k", "tau", "edges", "isolated", "mean degree"]
    assert len(grid) == 4
    row = grid[(grid["k"] == 2) & (grid["tau"] == 0.25)].iloc[0]
    assert (row["edges"], row["isolated"], row["mean degree"]) == (5, 1, pytest.approx(10 / 6))
    row = grid[(grid["k"] == 3) & (grid["tau"] == 0.15)].iloc[0]
    assert (row["edges"], row["isolated"], row["mean degree"]) == (7, 0, pytest.approx(14 / 6))
    # A higher threshold never adds an edge; a larger k never removes one.
    wide = grid.pivot(index="k", columns="tau", values="edges")
    assert (wide[0.25] <= wide[0.15]).all() and (wide.loc[3] >= wide.loc[2]).all()


def test_coverage_table_one_row_per_k():
    grid = plots.coverage_grid(six_items(), ks=(2, 3), taus=(0.15, 0.25))
    wide = plots.coverage_table(grid)
    assert wide.index.tolist() == [2, 3]
    assert wide.columns.tolist() == [(m, t) for m in ("edges", "isolated", "mean degree") for t in (0.15, 0.25)]
    assert wide.loc[2, ("edges", 0.25)] == 5 and wide.loc[3, ("isolated", 0.15)] == 0
    assert wide[("edges", 0.25)].dtype.kind == "i" and wide.loc[2, ("mean degree", 0.25)] == 1.67


def test_plot_coverage_draws_one_line_per_k():
    grid = plots.coverage_grid(six_items(), ks=(1, 2, 3), taus=(0.0, 0.25, 0.5))
    fig = plots.plot_coverage(grid, default_k=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    for ax, column in zip(fig.axes, ("edges", "isolated", "mean degree")):
        assert len(ax.lines) == 3 and ax.get_ylabel() == column
        k3 = ax.lines[2]
        np.testing.assert_allclose(k3.get_xdata(), [0.0, 0.25, 0.5])
        np.testing.assert_allclose(k3.get_ydata(), grid[grid["k"] == 3][column])
    assert fig.axes[0].lines[1].get_linewidth() > fig.axes[0].lines[0].get_linewidth()  # k = 2 stands out


def test_plot_graph_distributions_counts_items_and_edges(graph):
    fig = plots.plot_graph_distributions(graph, bins=5)
    left, right = fig.axes
    heights = [p.get_height() for p in left.patches]
    assert heights == [1, 1, 3, 1]  # degrees 0:{6} 1:{5} 2:{1,2,4} 3:{3}
    assert sum(p.get_height() for p in right.patches) == graph.n_edges
    assert "6 items" in left.get_title() and "5 edges" in right.get_title()


def test_neighbours_are_undirected_and_sorted(graph):
    nbrs, weights = plots.neighbours(graph, 3)
    assert nbrs.tolist() == [1, 2, 4]
    np.testing.assert_allclose(weights, [0.8, 0.7, 0.3], atol=1e-6)
    assert plots.neighbours(graph, 6)[0].tolist() == []
    table = plots.neighbour_table(graph, [3, 5], {i: f"item{i}" for i in range(7)}.get, n=2)
    assert table.index.tolist() == [("3: item3", 1), ("3: item3", 2), ("5: item5", 1)]
    assert table["neighbour"].tolist() == ["1: item1", "2: item2", "4: item4"]
    assert table["cosine"].tolist() == [0.8, 0.7, 0.6]


def test_parameter_table_counts_every_component(graph):
    model = tiny_model(graph)  # d = 8, 6 items, max_len 8
    table = plots.parameter_table(model)
    assert table.loc["total", "parameters"] == sum(p.numel() for p in model.parameters())
    assert table.loc["item table E (|V|+1) x d", "parameters"] == 7 * 8
    assert table.loc["position table P (L x d)", "parameters"] == 8 * 8
    assert table.loc["edge MLP (§4.3)", "parameters"] == (2 * 8 * 8 + 8) + (8 + 1)
    assert table["share"].iloc[:-1].sum() == pytest.approx(1.0)
    assert "edge MLP (§4.3)" not in plots.parameter_table(tiny_model(None)).index


def test_edge_weights_are_the_mlp_outputs(graph):
    model = tiny_model(graph).train()
    w = plots.edge_weights(model)
    assert w.shape == (graph.n_edges,) and w.dtype == np.float32
    assert ((w > 0) & (w < 1)).all()
    expected = model.edge_mlp(model.item_embedding.weight, model.edge_src, model.edge_dst)
    np.testing.assert_allclose(w, expected.detach().numpy(), rtol=1e-6)
    assert model.training  # the helper does not switch modes


def test_plot_edge_weights_one_panel_per_state(graph):
    w0 = np.full(graph.n_edges, 0.5, dtype=np.float32)
    w1 = graph.weight * 0.5 + 0.1
    fig = plots.plot_edge_weights(graph.weight, {"init": w0, "trained": w1})
    assert len(fig.axes) == 2
    offsets = fig.axes[1].collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], graph.weight)
    np.testing.assert_allclose(offsets[:, 1], w1)
    assert "r = 1.000" in fig.axes[1].get_title() and "r = nan" in fig.axes[0].get_title()


def test_plot_curves_skips_missing_columns():
    runs = {"a": pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.4, 1.3, 1.2], "lr": [1e-3, 1e-3, 1e-4]}),
            "b": pd.DataFrame({"epoch": [1, 2], "loss": [1.5, 1.1]})}
    fig = plots.plot_curves(runs, columns=("loss", "lr"))
    loss_ax, lr_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(lr_ax.lines) == 1
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [1.5, 1.1])
    assert lr_ax.get_yscale() == "log" and loss_ax.get_yscale() == "linear"


def test_training_items_and_cold_pairs():
    # Training parts (all but the last two items): [1, 2], [2, 3] and [] (a two-item sequence).
    ds = SeqDataset.from_lists([[1, 2, 4, 5], [2, 3, 6, 4], [5, 6]], n_items=6)
    trained = plots.training_items(ds)
    assert np.flatnonzero(trained).tolist() == [1, 2, 3]
    # Graph: 4-1 (0.9), 4-5 (0.95), 5-6 (0.5), 6-3 (0.4): item 4's strongest *trained* neighbour is 1.
    graph = ItemGraph(n_items=6, src=np.array([1, 4, 5, 3]), dst=np.array([4, 5, 6, 6]),
                      weight=np.array([0.9, 0.95, 0.5, 0.4], dtype=np.float32))
    pairs = plots.cold_pairs(graph, trained)
    assert pairs["cold"].tolist() == [4, 6]  # 5 has no trained neighbour
    assert pairs["neighbour"].tolist() == [1, 3]
    np.testing.assert_allclose(pairs["cosine"], [0.9, 0.4], atol=1e-6)
    assert list(plots.cold_pairs(graph, np.ones(7, dtype=bool)).columns) == ["cold", "neighbour", "cosine"]


def test_pair_cosines_by_hand():
    table = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    cos = plots.pair_cosines(table, np.array([1, 1, 2, 0]), np.array([2, 3, 3, 1]))
    np.testing.assert_allclose(cos, [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2), 0.0])
    assert plots.pair_cosines(torch.ones(3, 2).numpy(), np.array([1]), np.array([2]))[0] == pytest.approx(1.0)
