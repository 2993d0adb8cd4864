"""RaSR (Relation-augmented Sequential Recommendation): item semantics, multi-relation graph,
dual augmentation.

- :mod:`rasr_lib.rasr.embeddings`: item prompts and frozen sentence embeddings (RaSR Eq. 2);
- :mod:`rasr_lib.rasr.graphs`: co-occurrence C, temporal T and semantic S (RaSR Eqs. 3-4);
- :mod:`rasr_lib.rasr.augment`: semantic and relational sequence variants (RaSR §3, augmentation).

Nothing heavy happens at import: the sentence encoder is loaded on first use.
"""

from rasr_lib.rasr.augment import AugmentConfig, AugmentedSet, augment_dataset
from rasr_lib.rasr.embeddings import encode_items, item_prompt, item_prompts
from rasr_lib.rasr.graphs import (
    GraphConfig,
    RelationGraph,
    build_relation_graph,
    cooccurrence_matrix,
    semantic_matrix,
    semantic_topk,
    temporal_matrix,
)

__all__ = [
    "AugmentConfig",
    "AugmentedSet",
    "GraphConfig",
    "RelationGraph",
    "augment_dataset",
    "build_relation_graph",
    "cooccurrence_matrix",
    "encode_items",
    "item_prompt",
    "item_prompts",
    "semantic_matrix",
    "semantic_topk",
    "temporal_matrix",
]
