"""Verdicts become valid AGPIS-data records, once each, within the asked window."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agpis.data.format import validate_record
from agpis.loop.export import export_reviews, parse_since
from agpis.queue import ReviewQueue


def payload(pid):
    return {"product_id": pid, "title": f"Blue mug {pid}", "category": "kitchen", "sequence": ["b", "a", "c"],
            "candidates": [{"id": i, "uri": f"file:///store/{pid}-{i}.jpg"} for i in "abcd"],
            "model_versions": {"model": "v7"}, "p_qualified": 0.6}


def test_export_turns_each_verdict_into_one_record(queue_cfg, rclient):
    q = ReviewQueue(rclient, queue_cfg)
    for pid in ("p1", "p2", "p3"):
        q.enqueue(pid, "h", payload(pid))
    q.verdict(q.next("ann").entry_id, "ann", approved=True)
    q.verdict(q.next("ann").entry_id, "ann", approved=False, rule="title_mismatch",
              feedback="the images show a red mug, the title says blue")
    records, problems = export_reviews(q, parse_since("90d"))
    assert problems == []
    assert [r["product_id"] for r in records] == ["p1", "p2"]  # p3 has no verdict yet
    r1, r2 = records
    assert all(validate_record(r) == [] for r in records)
    assert (r1["label"], r1["feedback"], r1["source"], r1["model_version"]) == ("qualified", "yes", "review", "v7")
    assert [r1["candidates"][i] for i in r1["sequence"]] == [f"file:///store/p1-{i}.jpg" for i in "bac"]
    assert r2["label"] == "title_mismatch" and "red mug" in r2["feedback"]
    future = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert export_reviews(q, future)[0] == []  # the window is honoured


def test_parse_since():
    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert parse_since("90d", now) == now - timedelta(days=90)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2026-08-01", now) == datetime(2026, 8, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="90d"):
        parse_since("last quarter", now)


def test_export_command(queue_cfg, rclient, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    q = ReviewQueue(rclient, queue_cfg)
    q.enqueue("p1", "h", payload("p1"))
    q.verdict(q.next("ann").entry_id, "ann", approved=True)
    out = tmp_path / "reviews.jsonl"
    env = {**os.environ, "REDIS_URL": queue_cfg.redis_url, "AGPIS_QUEUE__DECISIONS_STREAM": queue_cfg.decisions_stream}
    r = subprocess.run([sys.executable, "-m", "agpis.cli", "data", "export", "--since", "1d", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote 1 reviewed records" in r.stdout
    assert [json.loads(line)["product_id"] for line in out.read_text().splitlines()] == ["p1"]
    r = subprocess.run([sys.executable, "-m", "agpis.cli", "data", "validate", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
