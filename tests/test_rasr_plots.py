"""Figures and tables of the RaSR chapters on tiny hand-made inputs: axes, artists, values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure

from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr import plots
from rasr_lib.rasr.augment import AugmentConfig, AugmentedSet


def _csr(dense) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(dense, dtype=np.float32))


# Items 1..4 (row/column 0 = padding). C: 1->2 twice, 1->3, 2->3, 3->1.
C = _csr([[0, 0, 0, 0, 0],
          [0, 0, 2, 1, 0],
          [0, 0, 0, 1, 0],
          [0, 1, 0, 0, 0],
          [0, 0, 0, 0, 0]])
T = _csr([[0, 0, 0, 0, 0],
          [0, 0, 0.8, 1.0, 0],
          [0, 0, 0, 0.64, 0],
          [0, 1.0, 0, 0, 0],
          [0, 0, 0, 0, 0]])
S = _csr([[0, 0, 0, 0, 0],
          [0, 0, 0.5, 0, 0.9],
          [0, 0.5, 0, 0.7, 0],
          [0, 0, 0.7, 0, 0.6],
          [0, 0.9, 0, 0.6, 0]])
TITLES = {1: "lipstick", 2: "lip liner", 3: "mascara", 4: "lip gloss"}


def test_degrees_drop_the_padding_row_and_column():
    out, inn = plots.degrees(C)
    assert out.tolist() == [2, 1, 1, 0]
    assert inn.tolist() == [1, 1, 2, 0]


def test_relation_distributions_has_a_degree_and_a_weight_axis_per_relation():
    fig = plots.plot_relation_distributions({"C": C, "T": T, "S": S}, bins=5)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert [ax.get_title() for ax in top] == ["C: neighbours per item", "T: neighbours per item",
                                              "S: neighbours per item"]
    assert [len(ax.get_legend().get_texts()) for ax in top] == [2, 2, 2]
    assert [len(ax.patches) for ax in bottom] == [5, 5, 5]  # one bar per weight bin
    assert [ax.get_yscale() for ax in fig.axes] == ["log"] * 6
    assert bottom[0].get_title() == "C: 4 edge weights"


def test_neighbourhood_takes_the_strongest_new_neighbours_relation_by_relation():
    mats = {"C": C, "T": T, "S": S}
    assert plots.neighbourhood(mats, 1, per_relation=1).tolist() == [1, 2, 3, 4]
    assert plots.neighbourhood(mats, 1, per_relation=2).tolist() == [1, 2, 3, 4]
    assert plots.neighbourhood(mats, 2, per_relation=1).tolist() == [2, 3, 1]
    assert plots.neighbourhood(mats, 4, per_relation=3).tolist() == [4, 1, 3]


def test_plot_neighbourhood_one_heatmap_per_relation_with_its_weights_written():
    nodes = [1, 2, 3]
    fig = plots.plot_neighbourhood({"C": C, "S": S}, nodes, labels=["a", "b", "c"])
    assert len(fig.axes) == 2
    assert [len(ax.images) for ax in fig.axes] == [1, 1]
    assert [len(ax.texts) for ax in fig.axes] == [4, 4]  # nonzeros of each 3x3 block
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1", "1", "1", "2"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["1", "2", "3"]


def test_transition_weights_one_line_per_reading():
    fig = plots.plot_transition_weights({"position": [0.8, 0.64], "recency": [0.8, 1.0]})
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    assert ax.lines[1].get_xydata().tolist() == [[1.0, 0.8], [2.0, 1.0]]
    assert ax.get_yscale() == "log"


def test_semantic_neighbour_table_lists_titles_and_cosines():
    index = np.array([[0, 0], [4, 2], [3, 1], [2, 4], [1, 3]])
    sims = np.array([[0, 0], [0.9, 0.5], [0.7, 0.5], [0.7, 0.6], [0.9, 0.6]], dtype=np.float32)
    table = plots.semantic_neighbour_table(index, sims, [1, 3], TITLES.get, n=2)
    assert table.index.tolist() == [("lipstick", 1), ("lipstick", 2), ("mascara", 1), ("mascara", 2)]
    assert table["neighbour"].tolist() == ["lip gloss", "lip liner", "lip liner", "lip gloss"]
    assert table["cosine"].tolist() == [0.9, 0.5, 0.7, 0.6]


def test_shorten_unescapes_and_cuts():
    assert plots.shorten("Tom &amp; Jerry", 20) == "Tom & Jerry"
    assert plots.shorten("abcdefgh", 5) == "abcd…"


def test_edit_ops_aligns_an_insertion_and_a_substitution():
    ops = plots.edit_ops([1, 2, 3, 4], [1, 9, 2, 3, 7])
    assert ops == [("kept", 1, 1), ("inserted", 0, 9), ("kept", 2, 2), ("kept", 3, 3),
                   ("substituted", 4, 7)]
    assert plots.changed_share([1, 2, 3, 4], [1, 9, 2, 3, 7]) == pytest.approx(2 / 5)
    assert plots.edit_ops([1, 2], [1]) == [("kept", 1, 1), ("removed", 2, 0)]
    assert plots.changed_share([1, 2], [1, 2]) == 0.0
    assert plots.changed_share([1], []) == 0.0


def test_edit_table_scores_an_insertion_against_the_next_original_item():
    table = plots.edit_table([1, 2, 3], [1, 4, 2, 4], TITLES.get,
                             score=lambda i, j: S[i, j], score_name="S")
    assert table["edit"].tolist() == ["kept", "inserted", "kept", "substituted"]
    assert table["after"].tolist() == ["lipstick", "lip gloss", "lip liner", "lip gloss"]
    assert table["before"].tolist() == ["lipstick", "", "lip liner", "mascara"]
    scores = table["S"].tolist()
    assert pd.isna(scores[0]) and pd.isna(scores[2])
    assert scores[1] == 0.0  # inserted before item 2: S[2, 4] = 0
    assert scores[3] == 0.6  # item 3 substituted by 4: S[3, 4]
    html = plots.highlight_edits(table).to_html()
    for row, edit in ((1, "inserted"), (3, "substituted")):  # 0-based rows, all four cells shaded
        cells = ", ".join(rf"#T_\w+_row{row}_col{c}" for c in range(4))
        assert re.search(cells + r" \{\s*background-color: " + plots.EDIT_COLOURS[edit], html)
    assert "row0_col0," not in html and "row2_col0," not in html  # kept rows are not shaded
    assert ">0.600<" in html and ">nan<" not in html


def _tiny_augmented() -> tuple[SeqDataset, AugmentedSet]:
    """Two users (training parts [1, 2, 3] and [2, 3, 4]) and three hand-made variants."""
    ds = SeqDataset(name="tiny", offsets=np.array([0, 5, 10]),
                    items=np.array([1, 2, 3, 4, 1, 2, 3, 4, 1, 2]), n_items=4)
    variants = [[1, 4, 3], [1, 2, 4, 3], [3, 3, 4]]
    aug = AugmentedSet(offsets=np.array([0, 3, 7, 10]), items=np.concatenate(variants),
                       source_user=np.array([0, 0, 1]), kind=np.array([0, 0, 1], dtype=np.int8),
                       n_items=4, n_candidates=8, cfg=AugmentConfig(), seed=0)
    return ds, aug


def test_source_sequence_is_the_training_part():
    ds, _ = _tiny_augmented()
    assert plots.source_sequence(ds)(1).tolist() == [2, 3, 4]
    assert plots.source_sequence(ds, max_len=2)(0).tolist() == [2, 3]


def test_first_variant_with_finds_the_requested_edits():
    ds, aug = _tiny_augmented()
    source_of = plots.source_sequence(ds)
    assert plots.first_variant_with(aug, source_of, "semantic", ("substituted",)) == 0
    assert plots.first_variant_with(aug, source_of, "semantic", ("inserted",)) == 1
    # none short enough: the shortest longer variant that qualifies (ML-1M has no short parts)
    assert plots.first_variant_with(aug, source_of, "semantic", ("inserted",), max_len=3) == 1
    assert plots.first_variant_with(aug, source_of, "semantic", ("substituted",), max_len=2) == 0
    assert plots.first_variant_with(aug, source_of, "semantic", ("inserted", "deleted")) == -1
    assert plots.first_variant_with(aug, source_of, "relational", ("substituted",)) == 2
    assert plots.first_variant_with(aug, source_of, "semantic", ("substituted",), min_len=4) == -1


def test_augmentation_summary_counts_by_kind():
    ds, aug = _tiny_augmented()
    source_of = plots.source_sequence(ds)
    changed = np.array([plots.changed_share(source_of(u), aug.sequence(v))
                        for v, u in enumerate(aug.source_user)])
    assert changed.tolist() == pytest.approx([1 / 3, 1 / 4, 1 / 3])
    table = plots.augmentation_summary(aug, np.array([0, 3, 6]), np.array([1, 2, 3, 2, 3, 4]),
                                       changed, {"semantic": 2, "relational": 2})
    assert table.index.tolist() == ["original", "semantic", "relational"]
    assert table["sequences"].tolist() == [2, 2, 1]
    assert table["dropped as duplicates"].tolist() == [0, 2, 3]
    assert table["mean length"].tolist() == [3.0, 3.5, 3.0]
    assert table["share of items changed"].tolist() == [0.0, 0.292, 0.333]
    assert table["distinct items"].tolist() == [4, 4, 2]


def test_length_distributions_one_histogram_and_mean_line_per_set():
    fig = plots.plot_length_distributions({"original": np.array([3, 3, 5]),
                                           "augmented": np.array([4, 6])}, bins=3)
    (ax,) = fig.axes
    assert len(ax.patches) == 2  # one step outline per set
    assert [line.get_xdata()[0] for line in ax.lines] == [pytest.approx(11 / 3), 5.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "original (mean 3.67)", "augmented (mean 5.00)"]


def test_variants_per_source_bars():
    counts = {"semantic": np.array([2, 2, 1]), "relational": np.array([0, 2, 2])}
    fig = plots.plot_variants_per_source(counts, max_variants=2)
    (ax,) = fig.axes
    assert len(ax.patches) == 6  # 3 bar positions x 2 kinds
    assert [p.get_height() for p in ax.patches] == [0, 1, 2, 1, 0, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["semantic", "relational"]


# ----------------------------------------------------------------------------- regeneration


def test_generator_config_table_flags_the_fields_that_differ():
    from rasr_lib.rasr.generator import generator_config

    table = plots.generator_config_table({"rasr": generator_config("rasr"),
                                          "dr4sr": generator_config("dr4sr")})
    assert table.columns.tolist() == ["rasr", "dr4sr", "differs"]
    assert table.loc["extractive_mask"].tolist() == ["False", "True", True]
    assert table.loc["n_memories"].tolist() == ["5", "5", False]
    assert table.loc["adam_eps", "rasr"] == "1e-09"
    assert set(table.index[table["differs"]]) == {
        "relation_aware", "extractive_mask", "epochs", "prefix_mode", "generative_prob", "dedup"}


def test_generator_history_one_axis_per_run_plus_an_entropy_axis():
    history = [{"epoch": 1, "ce": 8.0, "entropy": 1.5}, {"epoch": 2, "ce": 7.5, "entropy": 1.0}]
    fig = plots.plot_generator_history({"a": history, "b": history[:1]}, reference={"a": 8.1})
    ax_a, ax_b, ax_ent = fig.axes
    assert [len(ax.lines) for ax in fig.axes] == [2, 1, 2]
    assert ax_a.lines[0].get_xydata().tolist() == [[1.0, 8.0], [2.0, 7.5]]
    assert ax_a.lines[1].get_ydata()[0] == 8.1
    assert ax_ent.lines[1].get_xydata().tolist() == [[1.0, 1.5]]
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == ["a", "uniform guess"]
    assert ax_b.get_title() == "b: Eq. (8) loss"
    assert [t.get_text() for t in ax_ent.get_legend().get_texts()] == ["a", "b"]


def test_sequence_stats_counts_copies_and_new_items():
    seqs = [[1, 2], [1, 5], [3]]
    sources = [[1, 2, 3], [1, 2, 3], [2, 3]]
    stats = plots.sequence_stats(seqs, sources, known=np.array([1, 2, 3]))
    assert stats == {"sequences": 3, "interactions": 5, "mean length": 1.67, "distinct items": 4,
                     "new items": 1, "prefix of source": 0.333, "only source items": 0.667,
                     "items from source": 0.8}
    assert plots.sequence_stats([[4, 4, 2]]) == {"sequences": 1, "interactions": 3,
                                                 "mean length": 3.0, "distinct items": 2}
    assert plots.sequence_stats([], [])["sequences"] == 0
    with pytest.raises(ValueError, match="2 sequences but 1 sources"):
        plots.sequence_stats([[1], [2]], [[1]])


def test_example_source_prefers_many_outputs_then_many_items_among_short_sources():
    source = np.array([0, 0, 1, 1, 2, 2])
    lengths = np.array([2, 2, 3, 2, 9, 9])
    assert plots.example_source(source, lengths, np.array([4, 5, 20])) == 1
    assert plots.example_source(source, lengths, np.array([4, 5, 20]), max_len=4) == 0
    assert plots.example_source(source, lengths, np.array([4, 5, 8]), max_len=8) == 2
    assert plots.example_source(source, lengths, np.array([40, 50, 20])) == -1
    assert plots.example_source(np.array([], dtype=int), np.array([], dtype=int), np.array([3])) == -1


def test_side_by_side_pads_columns_and_marks_items_not_in_the_source():
    table = plots.side_by_side({"source": [1, 2, 3], "memory 0": [1, 4], "memory 1": []}, TITLES.get)
    assert table.index.tolist() == [1, 2, 3]
    assert table["source"].tolist() == ["lipstick", "lip liner", "mascara"]
    assert table["memory 0"].tolist() == ["lipstick", "+ lip gloss", ""]
    assert table["memory 1"].tolist() == ["", "", ""]
