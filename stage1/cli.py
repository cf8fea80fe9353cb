"""Stage 1's subcommands: `agpis weights import`, `agpis train stage1`, `agpis eval stage1`,
`agpis bench stage1`. Handlers import heavy modules lazily (agpis/cli.py)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


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
                                    "and an int8 ONNX trunk under weights/mobilenet_v2/, with checks and a model card.")
    p.add_argument("--source", type=Path, help="a .tflite file (default: the TF2 per-channel MobileNetV2 in ../shared)")
    p.add_argument("--out", type=Path, help="output directory (default: weights/mobilenet_v2)")
    p.set_defaults(func=_weights_import)


def _weights_import(args: argparse.Namespace) -> int:
    _quiet_threads(2)
    from stage1.paths import BASE_DIR, TFLITE_DIR, require_shared
    from stage1.tflite_import import DEFAULT_FILE, run_import

    shared = require_shared()
    source = args.source or require_shared(f"{TFLITE_DIR}/{DEFAULT_FILE}")
    if not source.is_file():
        raise SystemExit(f"{source}: no such file")
    report = run_import(source, args.out or BASE_DIR, shared)
    if report["top1_agree"] < 0.9 * report["n_check"] or report["cos_final"] < 0.98:
        raise SystemExit(f"import checks failed: {report}")
    return 0
