"""How much the semantic graph still says in a trained SAGERec: edge weights and message size.

SAGERec renormalises its learned edge weights (D^-1/2 W D^-1/2), which does not depend on their
common scale, so nothing in the loss holds that scale. This module reloads the best weights of
committed SAGERec runs (and backbones with the graph module) from their local checkpoints and
measures, in evaluation mode: the learned weights (or the fixed cosine ones), the entries of
A_hat, and the size of the propagated message A_hat E against E. A message of a few percent
means the graph has faded out of the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rasr_lib.config import config_from_dict
from rasr_lib.experiments.train_run import load_trained_run, local_checkpoint
from rasr_lib.runtime import git_commit, results_dir, write_json

OUTPUT_NAME = "graph-strength.json"


def graph_strength(result: dict, checkpoint: Path) -> dict:
    """Edge-weight percentiles, A_hat entries and message / embedding size of one run's best weights.

    Returns ``weight`` and ``a_hat`` (5th/50th/95th percentiles over the undirected edges),
    ``message_ratio`` (mean over items of |A_hat E|_i / |E|_i) and ``learned`` (edge MLP or fixed
    cosine weights).
    """
    from rasr_lib.sagerec.model import step_adjacency

    model, _, _ = load_trained_run(result, checkpoint)
    adj_norm = config_from_dict(result["config"]).sagerec.adj_norm
    # SAGERec holds the graph itself; a backbone holds it in its table's parametrization.
    owner = model if hasattr(model, "edge_src") else next(m for m in model.modules() if hasattr(m, "edge_src"))
    with torch.no_grad():
        emb = model.raw_item_table() if hasattr(model, "raw_item_table") else model.item_embedding.weight
        emb = emb[: owner.n_items + 1] if hasattr(owner, "n_items") else emb
        if owner.edge_mlp is not None:
            weight = owner.edge_mlp(emb, owner.edge_src, owner.edge_dst)
        else:
            weight = owner.edge_cos
        rows, cols, vals = step_adjacency(owner, emb)
        message = torch.zeros_like(emb).index_add_(0, rows, vals[:, None] * emb[cols])
        ratio = float((message[1:].norm(dim=1) / emb[1:].norm(dim=1).clamp_min(1e-12)).mean())
    pct = (5, 50, 95)
    return {"learned": owner.edge_mlp is not None, "adj_norm": adj_norm,
            "weight": dict(zip(("p5", "p50", "p95"), np.percentile(weight.numpy(), pct).tolist())),
            "a_hat": dict(zip(("p5", "p50", "p95"), np.percentile(vals.numpy(), pct).tolist())),
            "message_ratio": ratio}


def collect_graph_strength(dataset: str, force: bool = False, progress: bool = True) -> dict:
    """Add every committed graph run of ``dataset`` with a local checkpoint to ``results/<dataset>/graph-strength.json``."""
    folder = results_dir() / dataset
    out_path = folder / OUTPUT_NAME
    store = (json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists()
             else {"analysis": "graph-strength", "dataset": dataset, "runs": {}})
    paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith(("bench", "cold-", "graph-")))
    for path in tqdm(paths, desc="graph strength", unit="run", disable=not progress, leave=False):
        result = json.loads(path.read_text(encoding="utf-8"))
        model = (result.get("config") or {}).get("model") or {}
        graph = ((result.get("config") or {}).get("sagerec") or {}).get("graph", "semantic")
        uses_graph = model.get("name") == "sagerec" or model.get("semantic_graph")
        if not uses_graph or graph == "none" or (path.stem in store["runs"] and not force):
            continue
        checkpoint = local_checkpoint(config_from_dict(result["config"]))
        if checkpoint is None:
            continue
        started = time.perf_counter()
        entry = graph_strength(result, checkpoint)
        entry.update({"config_hash": result["config_hash"], "best_epoch": result.get("best_epoch"),
                      "test_ndcg@20": result["metrics"]["test"]["ndcg@20"],
                      "seconds": round(time.perf_counter() - started, 1)})
        store["runs"][path.stem] = entry
    if not store["runs"]:
        return store
    store["command"] = f"python -m rasr_lib graph-strength --dataset {dataset}"
    store["git_commit"] = git_commit()
    write_json(store, out_path)
    return store
