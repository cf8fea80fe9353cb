"""Fixtures for the reviewers' loop: a real Valkey, a real headless Chromium (Debian's)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import queue_cfg, rclient, valkey  # noqa: F401 - shared fixtures

CHROMIUM = os.environ.get("AGPIS_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Flags from the machine notes: no sandbox as root, and no background traffic to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
