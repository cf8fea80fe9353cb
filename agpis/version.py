"""The code's version, reported next to the model's in every response and output row.

Model versions name weights. The 100,000-product catalogue showed why that is not enough: the
same weights (`2026.11-3`) rejected 653 of 3,481 products before a stage 1 code change and none
after it, and the rows could not tell the two apart. The code version is the package version
plus the git commit it runs from ("0.1.0+9feaec3d1a2b", ".dirty" when the working tree has
uncommitted changes). An image built without .git gets the commit from AGPIS_CODE_COMMIT, which
deploy/Dockerfile sets from its AGPIS_COMMIT build argument.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from agpis import __version__

ROOT = Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


def git_commit(root: Path) -> tuple[str, bool]:
    """(the commit's first 12 hex digits, whether tracked files differ from it); ("", False) outside git."""
    if not (root / ".git").exists():
        return "", False
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):  # git not installed, or not a repository after all
        return "", False
    return commit, dirty


def describe(root: Path, env: dict[str, str]) -> str:
    """The version of the code under `root`; `env` may name the commit when there is no .git."""
    commit, dirty = git_commit(root)
    commit = commit or env.get("AGPIS_CODE_COMMIT", "").strip()
    if not commit or commit == "unknown":
        return __version__
    return f"{__version__}+{commit}" + (".dirty" if dirty else "")


@functools.cache
def code_version() -> str:
    """This process's code version, worked out once (git is asked at most twice)."""
    return describe(ROOT, dict(os.environ))
