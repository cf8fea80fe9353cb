"""README command 1's job: `agpis demo` end to end (embedded Valkey + gRPC server)."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_end_to_end():
    r = subprocess.run([sys.executable, "-m", "agpis.cli", "demo", "--products", "4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "health while the models load: NOT_SERVING" in out or "health while the models load: SERVING" in out
    assert "health after loading and warm-up" in out and ": SERVING" in out
    assert out.count("(made as:") == 4
    assert "== review queue ==" in out and "shut down cleanly" in out
    queued = out.count("review: ENQUEUED")
    assert f"{queued} entries in agpis:review" in out
