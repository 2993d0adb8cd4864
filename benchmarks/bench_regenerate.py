"""Speed of the regeneration stages on full Beauty: graph, augmentation, one generator step, decoding.

Usage: ``python benchmarks/bench_regenerate.py [--device auto] [--method rasr] [--sources 0]``.
Decoding uses an untrained generator, whose outputs are shorter than a trained one's (it
stops early), so the decoding time is a lower bound: a real pipeline records its own
``regenerate_s`` in ``runs/regen/.../summary.json`` (full Beauty, 5-epoch generator: 54 s on
one busy core). Prints seconds and their ratio to issue #3's targets on the
2-core CPU (graph < 10 s, regenerating all of Beauty < 300 s). Not a test: it never asserts.
Item embeddings come from the cache (``runs/embeddings``); a cold cache encodes them first.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rasr_lib.config import load_config
from rasr_lib.data import load_dataset
from rasr_lib.experiments.regen_run import augment_config, graph_config, regen_generator_config
from rasr_lib.rasr.augment import augment_dataset
from rasr_lib.rasr.embeddings import encode_items
from rasr_lib.rasr.generator import SequenceGenerator, iterate_pair_batches, rasr_pairs
from rasr_lib.rasr.graphs import build_relation_graph
from rasr_lib.rasr.regenerate import regenerate, regeneration_sources
from rasr_lib.runtime import get_device, set_seed

TARGETS_S = {"graph": 10.0, "regenerate": 300.0}


def main() -> None:
    """Time each stage once and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--method", default="rasr", choices=["rasr", "dr4sr"])
    parser.add_argument("--sources", type=int, default=0, help="decode only the first N sources (0 = all)")
    args = parser.parse_args()
    cfg = load_config("beauty", "full", {"regen.method": args.method, "device": args.device})
    device = get_device(args.device)
    generator = set_seed(0)
    ds = load_dataset("beauty")
    out: dict = {"device": str(device), "threads": torch.get_num_threads()}
    emb = encode_items(ds, progress=False)
    tic = time.perf_counter()
    graph = build_relation_graph(ds, emb, graph_config(cfg.regen))
    out["graph_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    augmented = augment_dataset(ds, graph, augment_config(cfg.regen, cfg.data.max_len), seed=0)
    out["augment_s"] = time.perf_counter() - tic
    gen_cfg = regen_generator_config(cfg)
    model = SequenceGenerator(ds.n_items, gen_cfg, graph=graph, semantic=emb if gen_cfg.relation_aware else None)
    model.to(device)
    src, tgt = rasr_pairs(ds, augmented, max_len=cfg.data.max_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=gen_cfg.lr)
    steps, tic = 0, time.perf_counter()
    for s, t in iterate_pair_batches(src, tgt, gen_cfg.batch_size, gen_cfg.max_len, generator):
        optimizer.zero_grad(set_to_none=True)
        ce, entropy = model.loss(s.to(device), t.to(device))
        (ce + entropy).backward()
        optimizer.step()
        steps += 1
        if steps == 20:
            break
    per_step = (time.perf_counter() - tic) / steps
    out["generator_step_s"] = per_step
    out["generator_epoch_s_estimate"] = per_step * int(np.ceil(src.n_rows / gen_cfg.batch_size))
    sources, lengths, _ = regeneration_sources(ds, cfg.data.max_len)
    if args.sources:
        sources, lengths = sources[: args.sources], lengths[: args.sources]
    tic = time.perf_counter()
    result = regenerate(model.eval(), sources, lengths, gen_cfg, device, seed=0, progress=False)
    out["regenerate_s"] = time.perf_counter() - tic
    out["regenerate_sources"] = int(len(sources))
    out["regenerated_avg_len"] = result.stats()["avg_len"]
    out["ratio_to_target"] = {"graph": out["graph_s"] / TARGETS_S["graph"],
                              "regenerate": out["regenerate_s"] / TARGETS_S["regenerate"]}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
