"""Stage 2 commands: `agpis train muisc`, `agpis eval muisc`, `agpis bench stage2`.

Handlers import torch and the models lazily: `agpis --help` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing

DEFAULT_RUNS = "var/runs/stage2"
DEFAULT_WEIGHTS = "weights/default/stage2"


def _add_dataclass_flags(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --flag per field of a config dataclass, typed from its annotations."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if tp is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(tp) is tuple:
            p.add_argument(flag, type=lambda s: tuple(int(x) for x in s.split(",") if x.strip()),
                           default=default, help=f"comma-separated (default {','.join(map(str, default))})")
        else:
            p.add_argument(flag, type=tp, default=default, help=f"(default {default!r})")


def register(sub) -> None:
    from stage2.calibrate import register as register_calibrate

    register_calibrate(sub)  # agpis calibrate muisc


def register_train(sub) -> None:
    from stage2.trainconfig import TrainConfig, VARIANTS

    p = sub.add_parser("muisc", help="train MUIsC, or a baseline / ablation variant of it",
                       description="Train MUIsC (paper §3.4) or one of its Table 2/3 variants on AGPIS-data. "
                                   "Several variants: --variant late_fusion,early_fusion,muisc. Under torchrun "
                                   "it trains data-parallel. Variants: " + ", ".join(VARIANTS))
    _add_dataclass_flags(p, TrainConfig, skip=("out", "variant"))
    p.add_argument("--variant", default="muisc", help="comma-separated variants (default muisc)")
    p.add_argument("--out", default="", help=f"run directory (default {DEFAULT_RUNS}/<variant>)")
    p.add_argument("--install", default="", metavar="DIR",
                   help=f"copy the best checkpoint there with a model card (e.g. {DEFAULT_WEIGHTS})")
    p.add_argument("--from", dest="from_checkpoint", default="", metavar="CHECKPOINT",
                   help="with --install: install this trained checkpoint directory instead of training")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from stage2.train import train
    from stage2.trainconfig import TrainConfig

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    variants = [v.strip() for v in args.variant.split(",") if v.strip()]
    if args.from_checkpoint:
        if not args.install:
            raise SystemExit("agpis: --from needs --install DIR")
        from stage2.card import install

        print(f"installed {install(args.from_checkpoint, args.install)}")
        return 0
    if args.install and variants != ["muisc"]:
        raise SystemExit("agpis: --install takes the full MUIsC only (--variant muisc)")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for variant in variants:
        kw = {k: v for k, v in vars(args).items() if k in names and k not in ("variant", "out")}
        cfg = TrainConfig(variant=variant, out=args.out or f"{DEFAULT_RUNS}/{variant}", **kw)
        best = train(cfg)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{variant}: best checkpoint {best}")
            if args.install:
                from stage2.card import install

                print(f"installed {install(best, args.install)}")
    return 0


def register_eval(sub) -> None:
    p = sub.add_parser("muisc", help="evaluate MUIsC against its baselines and ablations on held-out styles",
                       description="ROC AUC, R@P, per-family AUC, confusion over rules, ROC/PR plots, feedback "
                                   "naming the right rule, and the review queue's reject share, on the "
                                   "evaluation split's held-out styles. Writes docs/evaluation.md (stage2 sections).")
    p.add_argument("--checkpoint", default=DEFAULT_WEIGHTS, help=f"MUIsC to evaluate (default {DEFAULT_WEIGHTS})")
    p.add_argument("--data", default="var/datasets/real")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--styles", default="heldout", choices=("heldout", "train", "all"),
                   help="which products: violations in held-out styles (default), training styles, or all")
    p.add_argument("--runs", default=DEFAULT_RUNS,
                   help="where `agpis train muisc --variant ...` left the baselines and ablations (<runs>/<variant>/best)")
    p.add_argument("--ablation-runs", default="",
                   help="runs of the ablation table (<dir>/<variant>/best incl. its own muisc); default: --runs "
                        "and the evaluated checkpoint")
    p.add_argument("--cache-dir", default="var/cache/stage2")
    p.add_argument("--threshold", type=float, default=0.3, help="review threshold (paper §5.1: 0.3)")
    p.add_argument("--feedback-limit", type=int, default=0, help="generate feedback for at most N rejected sequences (0: all)")
    p.add_argument("--stage1", default="default",
                   help="model version whose stage 1 filters the sequences in the queue protocol ('' to skip)")
    p.add_argument("--plots", default="docs/stage2", help="directory for the ROC/PR PNGs")
    p.add_argument("--docs", action=argparse.BooleanOptionalAction, default=True,
                   help="write the stage2 sections of docs/evaluation.md")
    p.add_argument("--json", default="", help="also write every number to this JSON file")
    p.set_defaults(func=_handler("stage2.report", "run_evaluation"))


def register_bench(sub) -> None:
    p = sub.add_parser("stage2", help="stage 2 latency: default MUIsC (and ONNX), paper configuration",
                       description="Median latency of stage 2 on one sequence and on a request's 4 candidate "
                                   "sequences, default configuration (eager and ONNX Runtime) and the paper "
                                   "configuration with random weights. Writes docs/benchmarks.md (stage2).")
    p.add_argument("--checkpoint", default=DEFAULT_WEIGHTS)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--paper-repeats", type=int, default=5)
    p.add_argument("--no-paper", action="store_true", help="skip the paper configuration (slow on CPU)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for the paper configuration on a GPU")
    p.add_argument("--docs", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_handler("stage2.bench", "run_bench"))


def _handler(module: str, name: str):
    """A command handler that imports its (torch-heavy) module only when the command runs."""

    def run(args) -> int:
        import importlib

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        getattr(importlib.import_module(module), name)(args)
        return 0

    return run
