"""Model versions: a directory with a manifest naming each stage's kind and weights.

    weights/<name>/manifest.json  {"version": "...", "stage1": {"kind": "learned", "path": "stage1"},
                                   "stage2": {"kind": "learned", "path": "stage2"}}

`kind: placeholder` selects the documented first-version stages (their version strings say
PLACEHOLDER). A version resolves from a name under weights/ or from a path, in that order.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from agpis.config import Config

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = ROOT / "weights"


class ModelError(RuntimeError):
    pass


def available() -> list[str]:
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "manifest.json").is_file())


def resolve(name: str | os.PathLike) -> Path:
    candidates = [WEIGHTS_DIR / str(name), Path(name)]
    for path in candidates:
        if (path / "manifest.json").is_file():
            return path.resolve()
    raise ModelError(f"no model version {str(name)!r}: not a directory with manifest.json under "
                     f"{WEIGHTS_DIR} nor a path; available: {', '.join(available()) or 'none'}")


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path / 'manifest.json'}: {e}") from None
    for key in ("version", "stage1", "stage2"):
        if key not in manifest:
            raise ModelError(f"{path / 'manifest.json'}: missing {key!r}")
    return manifest


def load_version(name: str | os.PathLike, config: Config):
    """-> (stage1, stage2, version string)."""
    path = resolve(name)
    manifest = read_manifest(path)
    stage1 = load_stage("stage1", manifest["stage1"], path, config.stage1)
    stage2 = load_stage("stage2", manifest["stage2"], path, config.stage2)
    check_backbones(stage1, stage2, path)
    return stage1, stage2, str(manifest["version"])


def check_backbones(stage1, stage2, path: Path) -> None:
    """Stage 2 reads stage 1's backbone maps: it must have been trained on the same backbone's.
    A stage 2 trained on other maps still answers, wrongly (the int8 trunk's maps differed
    between CPUs and its models decided differently, stage1/backbone.py), so refuse to load."""
    info = getattr(getattr(stage1, "backbone", None), "info", None)
    pre = getattr(stage2, "pre", None) or {}
    trained_on = pre.get("backbone") if pre.get("kind") == "backbone_tokens" and not pre.get("backbone_spec") else None
    if info is not None and trained_on and trained_on != info.identity:
        raise ModelError(f"{path}: stage 2 was trained on the maps of backbone {trained_on}, but stage 1 "
                         f"runs {info.identity}; retrain stage 2 (`agpis train muisc`) on stage 1's backbone")


def load_stage(stage: str, entry: dict, root: Path, stage_config):
    kind = entry.get("kind")
    if kind == "placeholder":
        if stage == "stage1":
            from stage1.placeholder import PlaceholderStage1

            return PlaceholderStage1(stage_config)
        from stage2.placeholder import PlaceholderStage2

        return PlaceholderStage2(stage_config)
    if kind == "learned":
        sub = root / entry.get("path", stage)
        if not sub.is_dir():
            raise ModelError(f"{root / 'manifest.json'}: {stage} weights directory {sub} does not exist")
        module = __import__(stage)
        return module.load(sub, stage_config)
    raise ModelError(f"{root / 'manifest.json'}: {stage}.kind must be 'learned' or 'placeholder', got {kind!r}")
