"""The code version in every response and row: package version + the git commit, dirty or not."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from agpis import __version__
from agpis.version import ROOT, code_version, describe

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_commit_and_dirty_from_git_and_the_build_argument_without_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-qm", "first")
    commit = git(repo, "rev-parse", "--short=12", "HEAD")
    assert describe(repo, {}) == f"{__version__}+{commit}"
    (repo / "notes.txt").write_text("untracked files do not change the code that runs\n")
    assert describe(repo, {}) == f"{__version__}+{commit}"
    (repo / "a.py").write_text("x = 2\n")
    assert describe(repo, {}) == f"{__version__}+{commit}.dirty"
    # an image built without .git: the Dockerfile's build argument, or the bare package version
    plain = tmp_path / "image"
    plain.mkdir()
    assert describe(plain, {"AGPIS_CODE_COMMIT": "0123456789ab"}) == f"{__version__}+0123456789ab"
    assert describe(plain, {"AGPIS_CODE_COMMIT": "unknown"}) == __version__
    assert describe(plain, {}) == __version__


def test_this_checkout_reports_its_own_commit():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = git(ROOT, "rev-parse", "--short=12", "HEAD")
    assert re.fullmatch(rf"{re.escape(__version__)}\+{head}(\.dirty)?", code_version())
