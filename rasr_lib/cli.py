"""Command line: ``python -m rasr_lib <command> ...``: train, regenerate, plan, coverage, stats, cold-ranks,
graph-strength, sampled-eval, unmasked-eval, notebooks (see ``--help``)."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys

from rasr_lib.config import DATASET_ALIASES, MODEL_DEFAULTS, PROFILES, load_config
from rasr_lib.experiments.plans import ALL_PLANS_ORDER, PLANS


def _parse_set(values: list[str]) -> dict[str, str]:
    """Turn ``["train.lr=1e-3", ...]`` into a dotted-key override dict."""
    overrides = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="python -m rasr_lib",
        description="RaSR / SAGERec reproduction: train backbones, show data statistics, run notebooks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = torch's default; 1 is fastest on a busy machine)")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train and evaluate one backbone on one dataset")
    train.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
    train.add_argument("--model", default="sasrec", choices=sorted(MODEL_DEFAULTS))
    train.add_argument("--profile", default="quick", choices=sorted(PROFILES),
                       help="quick: real slice, ~1 min on CPU; full: the paper's setting")
    train.add_argument("--loss", choices=["bce", "ce"], help="bce (DR4SR, default) or ce over all items")
    train.add_argument("--seed", type=int, default=0, help="the one seed for every random draw")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda")
    train.add_argument("--protocol", choices=["full", "sampled100"], help="evaluation protocol")
    train.add_argument("--data", choices=["original", "rasr", "dr4sr"], default="original",
                       help="training data: original, or original + RaSR / DR4SR regenerated "
                            "(runs that pipeline first, resumably)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config key, e.g. --set train.epochs=50 (repeatable)")
    train.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    train.add_argument("--finish-now", action="store_true",
                       help="end an interrupted run at its last checkpoint (best epoch so far); "
                            "the result is marked interrupted")
    train.add_argument("--hours", type=float, metavar="H",
                       help="time budget in hours from now: training stops after the last epoch that fits, "
                            "publishes the result marked interrupted, and the same command resumes it")
    train.add_argument("--publish", action="store_true",
                       help="also write results/<dataset>/... (always on for the full profile)")

    regen = sub.add_parser("regenerate", help="run (or resume) the RaSR or DR4SR data-regeneration pipeline")
    regen.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
    regen.add_argument("--method", default="rasr", choices=["rasr", "dr4sr"])
    regen.add_argument("--profile", default="quick", choices=sorted(PROFILES),
                       help="quick: 1,000-user slice, 2 generator epochs; full: all users, the paper's epochs")
    regen.add_argument("--seed", type=int, default=0)
    regen.add_argument("--device", default="auto", help="auto | cpu | cuda")
    regen.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set regen.generator_epochs=10 (repeatable)")
    regen.add_argument("--force", action="store_true", help="rebuild even if the regenerated set exists")
    regen.add_argument("--hours", type=float, metavar="H",
                       help="time budget in hours from now: the SASRec that starts the generator and the "
                            "generator stop after their last epoch that fits (checkpointed; rerun to resume)")

    plan = sub.add_parser("plan", help="run the cells of one of the papers' experiments (finished cells are skipped)")
    plan.add_argument("name", choices=[*PLANS, "all"],
                      help="RaSR: table1: {SASRec, GRU4Rec} x {bce, ce} x {original, DR4SR, RaSR}; "
                           "fig3: ablations; fig4: ratio grid; fig5: window and decay. "
                           "SAGERec: sagerec-table3: SAGERec and its 9 baselines x {full, sampled100} "
                           "x seeds SEED..SEED+4 (Tables 3 and 4); sagerec-table5: ablations A-E; "
                           "sagerec-encoder: backbones +/- the graph module (§5.6); zoo: every backbone; "
                           f"all: every plan, in the order {', '.join(ALL_PLANS_ORDER)} (one command per dataset)")
    plan.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
    plan.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--only", nargs="*", help="run only cells whose label contains one of these")
    plan.add_argument("--list", action="store_true",
                      help="print the cells, their result names and where each stands, and exit")
    plan.add_argument("--hours", type=float, metavar="H",
                      help="time budget in hours from now for the whole plan: the cell training at the "
                           "end stops after its last epoch that fits (published as interrupted, "
                           "resumable); later cells are not started")
    plan.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key for every cell (repeatable)")
    plan.add_argument("--sampled-eval", action="store_true",
                      help="rescore each cell that finishes under full ranking on the original data under "
                           "1 + 100 sampled negatives (results/<dataset>/sampled-eval.json) right away, "
                           "while its checkpoint is still in runs/")

    cover = sub.add_parser("coverage", help="print, per plan and dataset, how many cells have a committed result "
                           "(read from results/ alone)")
    cover.add_argument("--datasets", nargs="*", default=["beauty", "toys", "sports", "ml-1m"],
                       choices=sorted(set(DATASET_ALIASES.values())), metavar="DATASET")
    cover.add_argument("--plans", nargs="*", default=list(PLANS), choices=list(PLANS), metavar="PLAN")
    cover.add_argument("--profile", default="full", choices=sorted(PROFILES))
    cover.add_argument("--cells", action="store_true",
                       help="also list every cell that is not committed, with its state")

    stats = sub.add_parser("stats", help="print the Table-2 statistics of the bundled datasets")
    stats.add_argument("datasets", nargs="*", default=["beauty", "sports", "toys", "ml-1m"])

    cold = sub.add_parser("cold-ranks", help="rank the cold test targets (items unseen in training) again under "
                          "committed runs' local checkpoints (SAGERec §5.8)")
    cold.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
    cold.add_argument("--runs", nargs="*", help="result names (default: every committed run with a checkpoint here)")
    cold.add_argument("--force", action="store_true", help="recompute runs already in cold-ranks.json")

    strength = sub.add_parser("graph-strength", help="measure the trained semantic graph (edge weights, message "
                              "size) of committed SAGERec runs from their local checkpoints")
    strength.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
    strength.add_argument("--force", action="store_true", help="remeasure runs already in graph-strength.json")

    rescorings = {
        "sampled-eval": ("under 1 + 100 sampled negatives from their local checkpoints (SAGERec Tables 3/4)",
                         "sampled-eval.json"),
        "unmasked-eval": ("without masking the user's earlier items, from their local checkpoints (a protocol "
                          "check)", "unmasked-eval.json"),
    }
    for command, (how, file_name) in rescorings.items():
        rescore = sub.add_parser(command, help=f"evaluate committed full-ranking runs again {how}")
        rescore.add_argument("--dataset", default="beauty", choices=sorted(set(DATASET_ALIASES.values())))
        rescore.add_argument("--runs", nargs="*", help="result names (default: every full-ranking run on the "
                             "original data with a checkpoint)")
        rescore.add_argument("--force", action="store_true", help=f"re-evaluate runs already in {file_name}")

    nbs = sub.add_parser("notebooks", help="execute the book's notebooks with papermill for one dataset")
    nbs.add_argument("--dataset", default="beauty")
    nbs.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    nbs.add_argument("--seed", type=int, default=0)
    nbs.add_argument("--only", nargs="*", help="notebook names to run (default: all)")
    nbs.add_argument("--force", action="store_true", help="re-run notebooks whose results exist")
    nbs.add_argument("--param", nargs="*", default=[], metavar="NAME=VALUE",
                     help="override a parameters-cell value, e.g. FULL_GENERATOR_EPOCHS=5 (a Python literal, "
                          "else a string)")
    return parser


def _deadline(hours: float | None) -> float | None:
    """``time.time()`` value ``hours`` from now (None without a budget)."""
    if hours is None:
        return None
    if hours <= 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    import time

    return time.time() + 3600.0 * hours


def _train(args: argparse.Namespace) -> int:
    """Handle ``train``: one run, result JSON printed as a short summary."""
    from rasr_lib.experiments.train_run import run_experiment

    overrides: dict = {"seed": args.seed, "device": args.device}
    if args.loss:
        overrides["train.loss"] = args.loss
    if args.protocol:
        overrides["eval.protocol"] = args.protocol
    if args.data != "original":
        overrides["regen.method"] = args.data
    overrides.update(_parse_set(args.set))
    cfg = load_config(args.dataset, args.profile, overrides, model=args.model)
    result = run_experiment(cfg, force=args.force, publish=True if args.publish else None,
                            stop_now=args.finish_now, deadline=_deadline(args.hours))
    summary = {k: result[k] for k in ("dataset", "model", "loss", "profile", "seed", "protocol",
                                      "best_epoch", "epochs_run", "wall_time_s")}
    summary["interrupted"] = bool(result.get("interrupted"))
    if result["metrics"] is None:  # stopped before training (S3-Rec's pre-training): nothing to score
        summary["stopped_in"] = _unfinished_stage(result)
    else:
        summary["test"] = result["metrics"]["test"]
    print(json.dumps(summary, indent=1))
    return 0


def _regenerate(args: argparse.Namespace) -> int:
    """Handle ``regenerate``: build the regenerated set and print its summary."""
    from rasr_lib.experiments.regen_run import regen_dir, run_regeneration

    overrides: dict = {"seed": args.seed, "device": args.device, "regen.method": args.method}
    overrides.update(_parse_set(args.set))
    cfg = load_config(args.dataset, args.profile, overrides)
    from rasr_lib.experiments.regen_run import OutOfTime

    try:
        regenerated, summary = run_regeneration(cfg, force=args.force, deadline=_deadline(args.hours))
    except OutOfTime as stop:
        print(f"{stop}: rerun the same command to resume")
        return 0
    brief = {k: summary[k] for k in ("method", "dataset", "n_users", "n_pairs", "timings") if k in summary}
    brief["regenerated"] = regenerated.stats()
    brief["folder"] = str(regen_dir(cfg))
    print(json.dumps(brief, indent=1))
    return 0


def _plan(args: argparse.Namespace) -> int:
    """Handle ``plan``: list or run an experiment grid, one summary line per cell."""
    from rasr_lib.experiments.plans import expand_plan, plan_cells_matching, run_plan
    from rasr_lib.experiments.train_run import run_name

    overrides = _parse_set(args.set)
    names = expand_plan(args.name)
    if len(names) > 1 and args.only:  # `all --only X`: the plans with a matching cell, an error if none has one
        names = tuple(n for n in names if any(any(o in label for o in args.only)
                                              for label, _ in plan_cells_matching(n, args.dataset, args.profile,
                                                                                  args.seed, overrides)))
        if not names:
            raise ValueError(f"--only {args.only} matches no cell of any plan")
    prefix = (lambda plan, label: f"{plan}: {label}") if len(names) > 1 else (lambda plan, label: label)
    if args.list:
        from rasr_lib.experiments.plans import cell_status

        for name in names:
            for label, cfg in plan_cells_matching(name, args.dataset, args.profile, args.seed, overrides, args.only):
                print(f"{prefix(name, label):{28 if len(names) == 1 else 40}s} {run_name(cfg):44s} {cell_status(cfg)}")
        return 0
    deadline, results = _deadline(args.hours), {}
    for name in names:
        done = run_plan(name, args.dataset, args.profile, args.seed, overrides, only=args.only, deadline=deadline,
                        sampled_eval=args.sampled_eval)
        results.update({prefix(name, label): result for label, result in done.items()})
    for label, result in results.items():
        if result["metrics"] is None:
            print(f"{label:28s} {_unfinished_stage(result)}")
            continue
        test = result["metrics"]["test"]
        cut = "  (interrupted: rerun to resume)" if result.get("interrupted") else ""
        print(f"{label:28s} R@20 {test['recall@20']:.4f}  N@20 {test['ndcg@20']:.4f}{cut}")
    return 0


def _unfinished_stage(result: dict) -> str:
    """One line for a run stopped in its stage before training, e.g. S3-Rec's pre-training."""
    prepared = result.get("prepare") or {}
    stage = prepared.get("stage", "pre-training")
    return (f"{stage} stopped at epoch {prepared.get('epochs_done', '?')} of "
            f"{prepared.get('epochs', '?')}: rerun the same command to resume")


def _coverage(args: argparse.Namespace) -> int:
    """Handle ``coverage``: plans x datasets, ``committed (+smaller budget) / cells``."""
    from rasr_lib.experiments.plans import coverage
    from rasr_lib.report import coverage_summary

    cov = coverage(tuple(args.plans), tuple(args.datasets), args.profile)
    print(coverage_summary(cov).to_string())
    print("committed (+ run only under a smaller budget, e.g. a 5-epoch generator) / cells")
    if args.cells:
        todo = cov[cov["state"] != "committed"]
        print()
        print(todo[["plan", "dataset", "cell", "state", "detail"]].to_string(index=False))
    return 0


def _stats(args: argparse.Namespace) -> int:
    """Handle ``stats``: the Table-2 comparison."""
    from rasr_lib.data import stats_table

    print(stats_table(tuple(args.datasets)).to_string(index=False))
    return 0


def _cold_ranks(args: argparse.Namespace) -> int:
    """Handle ``cold-ranks``: one line per run (median rank of its cold targets)."""
    import numpy as np

    from rasr_lib.experiments.cold_ranks import collect_cold_ranks

    store = collect_cold_ranks(args.dataset, args.runs, args.force)
    if not store["runs"]:
        print(f"no committed {args.dataset} run has a checkpoint under runs/train: nothing to rank "
              "(runs/ is a cache; train a run to rank its cold targets)")
    for name, entry in store["runs"].items():
        check = "" if entry["reproduces_committed"] else "  (differs from the committed cold metrics)"
        print(f"{name:48s} {len(entry['ranks']):4d} users  median rank {np.median(entry['ranks']):7.0f}"
              f" of {entry['n_items']}{check}")
    return 0


def _graph_strength(args: argparse.Namespace) -> int:
    """Handle ``graph-strength``: one line per run (median weight, message size)."""
    from rasr_lib.experiments.graph_strength import collect_graph_strength

    store = collect_graph_strength(args.dataset, args.force)
    if not store["runs"]:
        print(f"no committed {args.dataset} graph run has a checkpoint under runs/train: nothing to measure")
    for name, e in store["runs"].items():
        print(f"{name:48s} weight p50 {e['weight']['p50']:9.2e}  A_hat p50 {e['a_hat']['p50']:9.2e}"
              f"  message {100 * e['message_ratio']:5.1f} % of |E|")
    return 0


def _sampled_eval(args: argparse.Namespace, protocol: str = "sampled100") -> int:
    """Handle ``sampled-eval`` / ``unmasked-eval``: one line per run (its test N@10 beside the committed one)."""
    import json

    from rasr_lib.experiments.sampled_eval import collect_sampled
    from rasr_lib.runtime import results_dir

    store = collect_sampled(args.dataset, args.runs, args.force, protocol=protocol)
    if not store["runs"]:
        print(f"no committed {args.dataset} full-ranking run has a checkpoint under runs/train: nothing to "
              "evaluate (runs/ is a cache; train a run first)")
    label = "sampled" if protocol == "sampled100" else protocol
    for name, e in store["runs"].items():
        path = results_dir() / args.dataset / f"{name}.json"
        full = (json.loads(path.read_text(encoding="utf-8"))["metrics"]["test"]["ndcg@10"]
                if path.exists() else float("nan"))
        print(f"{name:48s} N@10 {label} {e['metrics']['test']['ndcg@10']:.4f}  committed {full:.4f}")
    return 0


def _unmasked_eval(args: argparse.Namespace) -> int:
    """Handle ``unmasked-eval`` (full ranking without the history mask)."""
    return _sampled_eval(args, protocol="unmasked")


def _notebooks(args: argparse.Namespace) -> int:
    """Handle ``notebooks``: papermill runs collected into results/."""
    from rasr_lib.experiments.runner import run_all

    run_all(args.dataset, args.profile, notebooks=args.only, seed=args.seed, force=args.force,
            parameters=notebook_parameters(args.param))
    return 0


def notebook_parameters(pairs: list[str]) -> dict:
    """``["NAME=VALUE", ...]`` as papermill parameters; VALUE is a Python literal, else kept as a string."""
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param expects NAME=VALUE, got {pair!r}")
        if name in {"DATASET", "PROFILE", "SEED"}:
            raise ValueError(f"--param {name}: use --{name.lower()} instead")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors become one clear line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    handlers = {"train": _train, "regenerate": _regenerate, "plan": _plan, "coverage": _coverage, "stats": _stats,
                "cold-ranks": _cold_ranks, "graph-strength": _graph_strength,
                "sampled-eval": _sampled_eval, "unmasked-eval": _unmasked_eval, "notebooks": _notebooks}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # NotebookError: names the notebook and the failing cell
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is checkpointed; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
