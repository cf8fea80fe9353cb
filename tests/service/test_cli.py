"""The `agpis` command as a user runs it (subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agpis.config import QueueConfig
from agpis.queue import ReviewQueue
from agpis.redisconn import RedisHandle
from tests.conftest import ROOT

AGPIS = [sys.executable, "-m", "agpis.cli"]


def run(args, env=None, check=True):
    r = subprocess.run(AGPIS + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture
def product_files(small_product, tmp_path):
    paths = []
    for cid, data in small_product:
        p = tmp_path / f"{cid}.jpg"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_generate_json_prints_the_response(product_files):
    r = run(["generate", "--json", "--title", "Red ceramic mug", *map(str, product_files)])
    out = json.loads(r.stdout)
    for field in ("product_id", "status", "p_qualified", "threshold", "sequence", "candidates", "duplicates",
                  "removed", "terminated_reason", "predicted_rule", "feedback", "review", "model_versions",
                  "timings_ms"):
        assert field in out, field
    assert out["status"] in ("QUEUED", "REJECTED", "TERMINATED")
    assert {c["id"] for c in out["candidates"]} == {p.stem for p in product_files}
    assert out["review"]["state"] == "NOT_SENT"  # in-process: nothing is queued


def test_generate_batch_and_bad_lines(product_files, tmp_path):
    batch = tmp_path / "products.jsonl"
    lines = [{"product_id": "b1", "title": "Mug", "images": [str(p) for p in product_files]},
             {"product_id": "b2", "title": "Mug", "images": [p.name for p in product_files[:4]]},  # relative paths
             {"product_id": "b3", "title": "Mug", "images": [str(tmp_path / "missing.jpg")]}]
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run(["generate", "--json", "--batch", str(batch)], check=False)
    assert r.returncode == 1  # one product failed...
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o.get("product_id") for o in out[:2]] == ["b1", "b2"]  # ...the others were answered
    assert out[2]["line"] == 3 and "missing.jpg" in out[2]["error"]


def test_generate_refuses_a_corrupt_file_clearly(product_files, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    r = run(["generate", "--title", "Mug", str(product_files[0]), str(bad)], check=False)
    assert r.returncode == 2 and "broken" in r.stderr and "not a readable image" in r.stderr


def test_review_cli_against_the_embedded_server(tmp_path):
    cfg = QueueConfig(data_dir=str(tmp_path / "redis"))
    env = {"AGPIS_QUEUE__DATA_DIR": cfg.data_dir}
    with RedisHandle(cfg) as handle:  # like a running server: owns the embedded Valkey
        q = ReviewQueue(handle.client, cfg)
        for pid in ("p1", "p2"):
            q.enqueue(pid, "h", {"product_id": pid, "title": f"Title {pid}", "sequence": ["a", "b", "c"],
                                 "p_qualified": 0.7, "candidates": [{"id": "a", "uri": "file:///x/a.jpg"}]})
        first = json.loads(run(["review", "--reviewer", "ann", "next", "--json"], env).stdout)
        assert first["product_id"] == "p1" and first["title"] == "Title p1"
        assert "agpis review approve" in run(["review", "--reviewer", "ann", "next"], env).stdout  # same entry again
        run(["review", "--reviewer", "ann", "approve", first["entry_id"]], env)
        second = json.loads(run(["review", "--reviewer", "ben", "next", "--json"], env).stdout)
        r = run(["review", "--reviewer", "ben", "reject", second["entry_id"], "--rule", "nonsense",
                 "--feedback", "x"], env, check=False)
        assert r.returncode == 1 and "rule from the catalogue" in r.stderr
        run(["review", "--reviewer", "ben", "reject", second["entry_id"], "--rule", "duplicated_view",
             "--feedback", "images 2 and 3 show the same view"], env)
        r = run(["review", "--reviewer", "ben", "approve", second["entry_id"]], env, check=False)
        assert r.returncode == 1 and "not awaiting a verdict" in r.stderr
        stats = json.loads(run(["review", "stats"], env).stdout)
        assert stats["decisions"] == 2 and stats["in_review"] == 0
        assert "empty" in run(["review", "--reviewer", "cat", "next"], env).stdout
        assert [d["rule"] for d in q.decisions()] == ["qualified", "duplicated_view"]
    # Nobody runs the server now: the CLI starts the embedded Valkey itself, reads the
    # persisted queue, and stops it again.
    stats = json.loads(run(["review", "stats"], env).stdout)
    assert stats["decisions"] == 2


def test_review_cli_when_redis_is_down():
    r = run(["review", "stats"], {"REDIS_URL": "redis://127.0.0.1:1/0", "AGPIS_QUEUE__SOCKET_TIMEOUT_S": "0.5"},
            check=False)
    assert r.returncode == 3 and "cannot reach Redis" in r.stderr


def test_bad_configuration_is_reported():
    r = run(["review", "--set", "queue.nope=1", "stats"], check=False)
    assert r.returncode != 0 and "unknown setting 'queue.nope'" in r.stderr


def test_bench_batch_replay_needs_a_work_dir():
    r = run(["bench", "batch", "--replay", "--catalogue", "10"], check=False)
    assert r.returncode != 0 and "--replay and --report-only need --work-dir DIR" in r.stderr
