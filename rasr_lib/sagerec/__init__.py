"""SAGERec (Electronics 2025): semantic-aware, adaptively re-weighted item graph + pre-LN SASRec.

- :mod:`rasr_lib.sagerec.graph`: the global semantic item graph (§4.2), its random twin
  (Table 5 D) and :func:`graph_for`, which builds a run's graph from cached item embeddings;
- :mod:`rasr_lib.sagerec.model`: the edge MLP, the propagation and the model (§4.3-4.5).

Nothing heavy happens at import: the sentence encoder is loaded on first use.
"""

# rasr_lib.models registers SAGERec, whose module needs rasr_lib.models.base: importing the
# registry first lets either package be imported first without a circular-import error.
import rasr_lib.models  # noqa: F401  (isort: skip)
from rasr_lib.sagerec.graph import ItemGraph, graph_for, normalized_adjacency, random_graph, semantic_graph
from rasr_lib.sagerec.model import SAGERec, EdgeMLP, normalize_entries, propagate

__all__ = [
    "EdgeMLP",
    "ItemGraph",
    "SAGERec",
    "graph_for",
    "normalize_entries",
    "normalized_adjacency",
    "propagate",
    "random_graph",
    "semantic_graph",
]
