"""Stage 1's subcommands: `agpis weights import`, `agpis train stage1`, `agpis eval stage1`,
`agpis bench stage1`. Handlers import heavy modules lazily (agpis/cli.py)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from agpis.cli import add_config_flags


def _quiet_threads(threads: int) -> None:
    # Shared 2-core machines: idle threads must sleep, not spin (FACTS.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def register(sub) -> None:
    weights = sub.add_parser("weights", help="pretrained base weights")
    wsub = weights.add_subparsers(dest="weights_cmd", metavar="ACTION", required=True)
    p = wsub.add_parser("import", help="import the ImageNet MobileNetV2 from ../shared's TFLite files",
                        description="Convert Google's ImageNet MobileNetV2 (TFLite, ../shared) into PyTorch "
                                    "and a float32 ONNX trunk (--int8: quantised) under weights/mobilenet_v2/, with checks and a model card.")
    p.add_argument("--source", type=Path, help="a .tflite file (default: the TF2 per-channel MobileNetV2 in ../shared)")
    p.add_argument("--out", type=Path, help="output directory (default: weights/mobilenet_v2)")
    p.add_argument("--int8", action="store_true",
                   help="an int8 trunk (~2x faster) instead of float32: its maps differ between x86 CPUs with "
                        "and without VNNI, so models trained on one kind decide differently on the other")
    p.set_defaults(func=_weights_import)


def _weights_import(args: argparse.Namespace) -> int:
    _quiet_threads(2)
    from stage1.paths import BASE_DIR, TFLITE_DIR, require_shared
    from stage1.tflite_import import DEFAULT_FILE, run_import

    shared = require_shared()
    source = args.source or require_shared(f"{TFLITE_DIR}/{DEFAULT_FILE}")
    if not source.is_file():
        raise SystemExit(f"{source}: no such file")
    report = run_import(source, args.out or BASE_DIR, shared, int8=args.int8)
    if report["top1_agree"] < 0.9 * report["n_check"] or report["cos_final"] < 0.98:
        raise SystemExit(f"import checks failed: {report}")
    return 0


DEFAULT_DATASET = Path("var/datasets/real")
CACHE_DIR = Path("var/stage1/cache")


def register_train(sub) -> None:
    p = sub.add_parser("stage1", help="train stage 1's primary and non-compliant heads",
                       description="Cache the frozen backbone's features of every candidate of an AGPIS-data set, "
                                   "train the heads, choose thresholds on val, write weights/default/stage1.")
    p.add_argument("--data", type=Path, action="append",
                   help="dataset directory; repeat to train on several (default: var/datasets/real and "
                        "var/datasets/synth: real photos, and drawn products like the service demo's)")
    p.add_argument("--out", type=Path, help="output directory (default: weights/default/stage1)")
    p.add_argument("--base", type=Path, help="imported base directory (default: weights/mobilenet_v2)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden-primary", type=int, default=0, help="primary model's MLP width; 0 = linear")
    p.add_argument("--hidden-noncompliant", type=int, default=256, help="non-compliant model's MLP width; 0 = linear")
    p.add_argument("--no-checks", action="store_true", help="do not give the check measurements to the heads")
    p.add_argument("--compare", action="store_true",
                   help="also train MLP/linear/no-checks variants, for the model card's comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=CACHE_DIR)
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    _quiet_threads(1)
    from stage1.paths import BASE_DIR, DEFAULT_STAGE1_DIR
    from stage1.train import run_training

    datasets = args.data or [DEFAULT_DATASET, Path("var/datasets/synth")]
    for d in datasets:
        if not (d / "train.jsonl").is_file():
            raise SystemExit(f"{d}: no train.jsonl; build it with `agpis data build` / `agpis data synth` (docs/data.md)")
    out = args.out or DEFAULT_STAGE1_DIR
    info = run_training(datasets, out, args.base or BASE_DIR, args.epochs,
                        (args.hidden_primary, args.hidden_noncompliant), not args.no_checks,
                        args.seed, args.cache, args.compare)
    from stage1.card import write_card

    write_card(out, info)
    return 0


def register_eval(sub) -> None:
    p = sub.add_parser("stage1", help="evaluate stage 1 (held-out styles, real photos, duplicates)",
                       description="Metrics of the learned stage 1; writes the stage1 sections of docs/evaluation.md.")
    p.add_argument("--weights", type=Path, help="stage 1 directory (default: weights/default/stage1)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--listings", type=int, default=300, help="listings run through the whole stage 1")
    p.add_argument("--duplicates", action="store_true", help="also run the duplicate-detection comparison")
    p.add_argument("--only-duplicates", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-docs", action="store_true", help="print only; do not write docs/evaluation.md")
    p.add_argument("--cache", type=Path, default=CACHE_DIR)
    add_config_flags(p)
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    _quiet_threads(1)
    from agpis.cli import load_config
    from agpis.docsections import write_section
    from stage1.evaluate import (duplicates_section, grocery_section, heads_section, heldout_grocery_classes,
                                 jd_section, listing_section)
    from stage1.model import LearnedStage1
    from stage1.paths import DEFAULT_STAGE1_DIR, shared_dir
    from stage1.train import cached_features

    cfg = load_config(args)
    weights = args.weights or DEFAULT_STAGE1_DIR
    stage1 = LearnedStage1(weights, cfg.stage1)
    shared = shared_dir() if (shared_dir() / "data").is_dir() else None
    have_data = (args.data / f"{args.split}.jsonl").is_file()
    sections = {}
    cmd = f"`agpis eval stage1 --split {args.split}{' --duplicates' if args.duplicates else ''}`"
    if not args.only_duplicates:
        if have_data:
            data = cached_features(args.data, args.split, stage1.backbone, stage1.check_cfg, args.cache)
            text, _ = heads_section(stage1, data, args.split)
            sections["stage1-models"] = (
                f"Stage 1's learned models ({stage1.version}) on the {args.split} split of `{args.data}` "
                f"(products never seen in training; `heldout_styles` = violation styles never seen in training), "
                f"at the operating threshold chosen on val (p = 0.5 after calibration). Command: {cmd}.\n\n{text}")
            text, _ = listing_section(stage1, args.data, args.split, args.listings)
            sections["stage1-listings"] = f"The whole stage 1 ({stage1.version}). Command: {cmd}.\n\n{text}"
        else:
            print(f"{args.data}: no {args.split}.jsonl; skipping the dataset metrics")
        if shared is not None:
            heldout = heldout_grocery_classes(args.data) if have_data else set()
            g, _ = grocery_section(stage1, shared, heldout)
            j, _ = jd_section(stage1, shared)
            if have_data:
                j += _jd_note(args.data)
            sections["stage1-real-photos"] = (f"Stage 1 ({stage1.version}) on real photos from ../shared (used in "
                                              f"place, never committed). Command: {cmd}.\n\n**Grocery.** {g}\n\n"
                                              f"**JD example listing** (`jd_muisc_examples`, decoded as the service "
                                              f"does):\n\n{j}")
        else:
            print("../shared not found: skipping the real-photo evaluation")
    if args.duplicates or args.only_duplicates:
        text, _ = duplicates_section(stage1.backbone, shared, args.data if have_data else None, args.split, args.seed)
        sections["stage1-duplicates"] = f"Duplicate detection, three methods on the same pairs in one run. Command: {cmd}.\n\n{text}"
    for name, text in sections.items():
        print(f"\n## {name}\n\n{text}")
        if not args.no_docs:
            write_section("docs/evaluation.md", name, f"## Stage 1: {name.split('-', 1)[1].replace('-', ' ')}\n\n{text}")
    return 0


def _jd_note(dataset: Path) -> str:
    """Which split the JD product's listings are in: evaluation on it is only clean for test."""
    for split in ("train", "val", "test"):
        path = dataset / f"{split}.jsonl"
        if path.is_file() and '"group":"jd-' in path.read_text():
            use = {"train": "TRAINING data: this is not a held-out result",
                   "val": "used to choose thresholds and the epoch, never as training data",
                   "test": "held out"}[split]
            return f" (The dataset's listings of this JD product are in its {split} split: {use}.)"
    return ""


def register_bench(sub) -> None:
    p = sub.add_parser("stage1", help="stage 1 latency on 7 candidates of ~800x800 (p50, per step)",
                       description="Times Stage1.run as the service calls it; writes docs/benchmarks.md.")
    p.add_argument("--weights", type=Path, help="stage 1 directory (default: weights/default/stage1)")
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--products", type=int, default=6)
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--backbone-batch", action="store_true",
                   help="instead: the backbone's CPU cost per image by images per ONNX call (stage1.backbone_batch)")
    add_config_flags(p)
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    _quiet_threads(1)
    from agpis.cli import load_config
    from agpis.docsections import write_section
    from stage1.bench import jpeg_candidates, markdown, run_bench
    from stage1.model import LearnedStage1
    from stage1.paths import DEFAULT_STAGE1_DIR

    cfg = load_config(args)
    stage1 = LearnedStage1(args.weights or DEFAULT_STAGE1_DIR, cfg.stage1)
    if args.backbone_batch:
        from stage1.bench import backbone_batch_markdown, backbone_batch_sizes

        text = backbone_batch_markdown(backbone_batch_sizes(stage1.backbone.directory), stage1.version)
        print(text)
        if not args.no_docs:
            write_section("docs/benchmarks.md", "backbone-batch", "## Stage 1's backbone by images per call\n\n" + text)
        return 0
    result = run_bench(stage1, jpeg_candidates(args.products), args.repeats)
    text = f"Command: `agpis bench stage1`. Stage 1 {stage1.version}.\n\n" + markdown(result)
    print(text)
    if not args.no_docs:
        write_section("docs/benchmarks.md", "stage1", "## Stage 1\n\n" + text)
    return 0
