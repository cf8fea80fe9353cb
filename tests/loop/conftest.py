"""Fixtures for the reviewers' loop: a real Valkey, a real headless Chromium (Debian's)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import queue_cfg, rclient, valkey  # noqa: F401 - shared fixtures
from tests.service.helpers import with_token

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


def add_version(registry, name: str, stage2: dict | None = None) -> None:
    """A registry version made from the shipped default, renamed (and its stage 2 replaced)."""
    from tests.conftest import ROOT

    staging = registry.new_version_dir(name)
    shutil.copytree(ROOT / "weights" / "default", staging, dirs_exist_ok=True)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = name
    if stage2 is not None:
        manifest["stage2"] = stage2
    (staging / "manifest.json").write_text(json.dumps(manifest))
    registry.add(staging)


def registry_server(registry, queue_cfg, reload_s: float):
    """A real gRPC server on a free port that follows the registry's CURRENT version."""
    from agpis.config import Config
    from agpis.service import AgpisServer

    cfg = Config()
    cfg.server.port, cfg.server.metrics_port = 0, -1
    cfg.queue = queue_cfg
    cfg.pipeline.registry, cfg.pipeline.reload_s = str(registry.root), reload_s
    with_token(cfg)
    return cfg, AgpisServer(cfg).start().wait_ready(timeout=300)
