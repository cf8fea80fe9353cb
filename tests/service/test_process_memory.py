"""scripts/process_memory.py: a job's memory by process kind, sampled from /proc of a real process
tree, and the per-kind summary that names the process that grows."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("process_memory", ROOT / "scripts" / "process_memory.py")
pm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pm)


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc only")
def test_sampling_follows_a_process_tree_until_it_is_gone(tmp_path):
    # a parent whose child holds ~40 MiB of its own: both sampled, the child by name
    code = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', " \
           "'b = bytearray(40 * 2**20); import time; time.sleep(1.5)']); c.wait()"
    job = subprocess.Popen([sys.executable, "-c", code])
    log = tmp_path / "procs.jsonl"
    pm.sample(job.pid, log, every=0.3)  # returns once the tree is gone
    job.wait()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) >= 2
    assert all(any(p[0] == job.pid for p in r["procs"]) for r in rows)
    biggest = max(p[2] for r in rows for p in r["procs"])
    assert biggest >= 40  # the child's 40 MiB bytearray, found among the descendants
    assert "python" in {p[1][:6] for r in rows for p in r["procs"]}


def test_the_summary_names_the_kind_that_grows(tmp_path):
    log = tmp_path / "procs.jsonl"
    with log.open("w") as f:
        for minute in range(11):  # gcs_server +2 MiB/min, two actors flat at 500 each
            f.write(json.dumps({"wall": 1000 + 60 * minute, "procs": [
                [1, "gcs_server", 50 + 2 * minute], [2, "pipeline actors", 500], [3, "pipeline actors", 500]]}) + "\n")
    out = pm.summary(log)
    assert "| gcs_server | 50 | 60 | 70 | 70 | +2.0 | +2.0 |" in out
    assert "| pipeline actors | 1000 | 1000 | 1000 | 1000 | +0.0 | +0.0 |" in out
    assert out.splitlines()[-1].startswith("| all | 1050 |")
