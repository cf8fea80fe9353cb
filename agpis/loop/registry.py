"""Model versions on disk, champion/challenger promotion, and what the server follows.

    <root>/versions/<version>/   a model version: manifest.json, stage1/, stage2/ (weights,
                                 tokenizer, configuration, MODEL_CARD.md), metrics.json
    <root>/CURRENT               the champion's version name (replaced atomically)
    <root>/history.jsonl         every retraining decision, promoted or not, with its metrics

A server started with `pipeline.registry = <root>` serves CURRENT and reloads when it changes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.versions = self.root / "versions"

    def current_name(self) -> str | None:
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self) -> Path | None:
        name = self.current_name()
        if name is None:
            return None
        path = self.versions / name
        if not (path / "manifest.json").is_file():
            raise RegistryError(f"{self.root / 'CURRENT'} names {name!r}, but {path} is not a model version")
        return path

    def list(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if (p / "manifest.json").is_file())

    def new_version_dir(self, name: str) -> Path:
        """An empty directory for a version being built (renamed into place by `add`)."""
        if not NAME_RE.match(name):
            raise RegistryError(f"bad version name {name!r}")
        if (self.versions / name).exists():
            raise RegistryError(f"version {name} exists already")
        staging = self.root / "staging" / name
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def add(self, staging: Path) -> Path:
        """Move a finished version into versions/ (one rename: never half a version)."""
        if not (staging / "manifest.json").is_file():
            raise RegistryError(f"{staging} has no manifest.json")
        self.versions.mkdir(parents=True, exist_ok=True)
        final = self.versions / staging.name
        os.replace(staging, final)
        return final

    def promote(self, name: str) -> None:
        if not (self.versions / name / "manifest.json").is_file():
            raise RegistryError(f"no version {name!r} in {self.versions}")
        tmp = self.root / f".CURRENT.{os.getpid()}"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.root / "CURRENT")  # servers see the old name or the new, never half

    def record(self, event: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        event = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **event}
        with open(self.root / "history.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def history(self) -> list[dict]:
        path = self.root / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
