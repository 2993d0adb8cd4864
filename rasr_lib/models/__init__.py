"""Backbones behind one interface: ``forward``, ``calculate_loss``, ``full_sort_predict``."""

from __future__ import annotations

import importlib

from rasr_lib.config import ExperimentConfig
from rasr_lib.dropout import use_uniform_dropout
from rasr_lib.models.base import SequentialRecommender
from rasr_lib.models.gru4rec import GRU4Rec
from rasr_lib.models.sasrec import SASRec
from rasr_lib.sagerec.model import SAGERec

MODELS = {"sasrec": SASRec, "gru4rec": GRU4Rec, "sagerec": SAGERec}

# The backbone zoo (issue 5): model name -> module with ``build(cfg, n_items, split)``. Imported
# only when asked for, so one model's extra imports never slow the others.
ZOO: dict[str, str] = {
    "fmlprec": "rasr_lib.models.fmlprec",
    "gcegnn": "rasr_lib.models.gcegnn",
    "dr4sr_gnn": "rasr_lib.models.dr4sr_gnn",
    "cl4srec": "rasr_lib.models.cl4srec",
    "bert4rec": "rasr_lib.models.bert4rec",
    "caser": "rasr_lib.models.caser",
    "bpr": "rasr_lib.models.bpr",
    "s3rec": "rasr_lib.models.s3rec",
    "dssrec": "rasr_lib.models.dssrec",
    "sine": "rasr_lib.models.sine",
}


def build_model(cfg: ExperimentConfig, n_items: int, graph=None, split=None) -> SequentialRecommender:
    """Instantiate the backbone named by ``cfg.model.name`` for a catalogue of ``n_items``.

    ``graph`` (a :class:`rasr_lib.sagerec.graph.ItemGraph`) is SAGERec's item graph, built by
    :func:`rasr_lib.sagerec.graph.graph_for`; other models ignore it. ``split`` (the training
    :class:`~rasr_lib.data.split.SplitData`) is passed to zoo models that build structures from
    the training data (GCE-GNN's global graph, BPR-MF's user table, S3-Rec's attributes).
    Its ``nn.Dropout`` layers are :class:`rasr_lib.dropout.UniformDropout`.
    """
    model = _build_backbone(cfg, n_items, graph, split)
    if cfg.model.semantic_graph and cfg.model.name != "sagerec":  # SAGERec §5.6: graph under any backbone
        from rasr_lib.sagerec.plugin import add_semantic_graph

        if graph is None:
            raise ValueError("model.semantic_graph needs the item graph: "
                             "build_model(cfg, n_items, graph=rasr_lib.sagerec.graph_for(cfg, dataset))")
        model = add_semantic_graph(model, graph, cfg)
    return use_uniform_dropout(model)  # the same dropout, drawn ~4x faster on the CPU


def _build_backbone(cfg: ExperimentConfig, n_items: int, graph, split) -> SequentialRecommender:
    """The backbone alone (see :func:`build_model`)."""
    m, loss = cfg.model, cfg.train.loss
    if m.name in ZOO:
        return importlib.import_module(ZOO[m.name]).build(cfg, n_items, split)
    if m.name == "sasrec":
        return SASRec(
            n_items, max_len=cfg.data.max_len, hidden_dim=m.hidden_dim, num_layers=m.num_layers,
            num_heads=m.num_heads, inner_dim=m.inner_dim, dropout=m.dropout,
            activation=m.activation, layer_norm=m.layer_norm, loss=loss,
        )
    if m.name == "gru4rec":
        return GRU4Rec(
            n_items, hidden_dim=m.hidden_dim, num_layers=m.num_layers, inner_dim=m.inner_dim,
            dropout=m.dropout, loss=loss,
        )
    if m.name == "sagerec":
        s = cfg.sagerec
        if graph is None and s.graph != "none":
            raise ValueError("SAGERec needs its item graph: "
                             "build_model(cfg, n_items, graph=rasr_lib.sagerec.graph_for(cfg, dataset))")
        return SAGERec(
            n_items, graph=graph if s.graph != "none" else None, max_len=cfg.data.max_len,
            hidden_dim=m.hidden_dim, num_layers=m.num_layers, num_heads=m.num_heads,
            inner_dim=m.inner_dim, dropout=m.dropout, activation=m.activation, loss=loss,
            edge_learning=s.edge_learning, position=s.position, emb_scale=s.emb_scale,
            edge_dropout=s.edge_dropout,
            node_dropout=s.node_dropout, gcn_layers=s.gcn_layers, adj_norm=s.adj_norm,
        )
    raise ValueError(f"unknown model {m.name!r}; choose from {sorted(MODELS)}")


def zoo_table():
    """One row per model of the CLI: its class, first docstring paragraph, loss, size and batch (DataFrame)."""
    import pandas as pd

    from rasr_lib.config import MODEL_DEFAULTS, load_config

    rows = []
    for name in MODEL_DEFAULTS:
        cls = MODELS.get(name)
        if cls is None:
            module = importlib.import_module(ZOO[name])
            cls = next(v for v in vars(module).values()
                       if isinstance(v, type) and issubclass(v, SequentialRecommender)
                       and v.__module__ == module.__name__)
        cfg = load_config("beauty", "full", {}, model=name)
        about = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # first paragraph
        rows.append({"model": name, "class": cls.__name__, "about": about,
                     "loss": cfg.train.loss, "d": cfg.model.hidden_dim, "batch": cfg.train.batch_size})
    return pd.DataFrame(rows)


__all__ = ["MODELS", "ZOO", "zoo_table", "GRU4Rec", "SAGERec", "SASRec", "SequentialRecommender", "build_model"]
