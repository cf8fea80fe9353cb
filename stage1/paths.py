"""Where stage 1 finds things: the repository, ../shared (read-only reference material, never
committed), and the default directories of its weights."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_DIR = REPO / "weights" / "mobilenet_v2"  # the imported ImageNet base (agpis weights import)
DEFAULT_STAGE1_DIR = REPO / "weights" / "default" / "stage1"  # the trained stage 1 the service loads
TFLITE_DIR = "weights/mobilenet_imagenet_tflite"  # under ../shared


def shared_dir() -> Path:
    """$AGPIS_SHARED, else <repo>/../shared. May not exist (a fresh clone)."""
    return Path(os.environ.get("AGPIS_SHARED", REPO.parent / "shared")).resolve()


def require_shared(sub: str = "") -> Path:
    p = shared_dir() / sub
    if not p.exists():
        raise SystemExit(f"{p} not found: this command needs ../shared (or $AGPIS_SHARED)")
    return p
