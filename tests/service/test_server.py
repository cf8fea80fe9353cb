"""The gRPC server for real: health, reflection, errors as status codes, limits, streaming, metrics."""
from __future__ import annotations

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import agpis
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agpis.config import Config
from agpis.pipeline import Pipeline
from agpis.service import SERVICE_NAME, AgpisServer
from agpis.v1 import agpis_pb2 as pb
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.service.helpers import GatedPipeline, connect, request, slow_pipeline, with_token


def make_config(queue_cfg, **server) -> Config:
    cfg = Config()
    cfg.server.port, cfg.server.metrics_port = 0, 0
    for k, v in server.items():
        setattr(cfg.server, k, v)
    cfg.queue = queue_cfg
    return with_token(cfg)


@pytest.fixture
def server(queue_cfg):
    srv = AgpisServer(make_config(queue_cfg)).start().wait_ready(timeout=300)
    yield srv
    srv.stop(grace=2)


@pytest.fixture
def stub(server):
    with connect(server.address) as channel:
        yield pb_grpc.SequenceServiceStub(channel)


def health_status(address, service=""):
    with grpc.insecure_channel(address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def test_health_not_serving_until_models_are_warm(queue_cfg):
    cfg = make_config(queue_cfg)
    gated = Pipeline.load("default", cfg)
    gated.__class__ = GatedPipeline
    gated.gate = threading.Event()
    srv = AgpisServer(cfg, pipeline=gated).start()
    try:
        assert health_status(srv.address) == "NOT_SERVING"
        assert health_status(srv.address, SERVICE_NAME) == "NOT_SERVING"
        with connect(srv.address) as ch:
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.SequenceServiceStub(ch).GenerateSequence(request([("a", b"x")]), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in e.value.details()
        gated.gate.set()
        srv.wait_ready(timeout=120)
        assert health_status(srv.address) == "SERVING"
        assert health_status(srv.address, SERVICE_NAME) == "SERVING"
    finally:
        srv.stop(grace=1)
    assert health_status.__name__  # the server is gone; nothing else to check


def test_reflection_lists_the_services(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with connect(server.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= services
        method = db.FindFileContainingSymbol(SERVICE_NAME)
        assert method.package == "agpis.v1"


def test_generate_sequence_answers_with_the_full_contract(stub, small_product):
    resp = stub.GenerateSequence(request(small_product), timeout=60)
    assert resp.product_id == "p1"
    assert resp.status in (pb.QUEUED, pb.REJECTED, pb.TERMINATED)
    assert resp.threshold == pytest.approx(0.3)
    assert set(resp.model_versions) == {"model", "stage1", "stage2", "code"}
    assert resp.model_versions["code"].startswith(agpis.__version__)
    assert {"decode", "stage1", "total"} <= set(resp.timings_ms)
    assert {c.id for c in resp.candidates} == {cid for cid, _ in small_product}
    assert all(c.width == 400 and c.height == 400 for c in resp.candidates)
    if resp.status != pb.TERMINATED:
        assert len(resp.sequence) == 3 and resp.alternatives
    if resp.status == pb.QUEUED:
        assert resp.review.state == pb.ENQUEUED and resp.review.entry_id
        again = stub.GenerateSequence(request(small_product), timeout=60)
        assert again.review.state == pb.ALREADY_ENQUEUED and again.review.entry_id == resp.review.entry_id
    lean = stub.GenerateSequence(request(small_product, pid="p2", explain=False, skip_review=True), timeout=60)
    assert not lean.candidates and not lean.alternatives and lean.review.state == pb.NOT_SENT


def test_corrupt_image_is_invalid_argument_naming_the_candidate(stub, small_product):
    bad = list(small_product[:3]) + [("broken-one", b"\xff\xd8\xff\xe0 this is not a jpeg")]
    with pytest.raises(grpc.RpcError) as e:
        stub.GenerateSequence(request(bad), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "broken-one" in e.value.details()
    assert stub.GenerateSequence(request(small_product, skip_review=True), timeout=60).product_id == "p1"  # still serving


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.ClearField("title"), "title is empty"),
    (lambda r: r.ClearField("product_id"), "product_id is empty"),
    (lambda r: r.ClearField("candidates"), "no candidate images"),
    (lambda r: r.candidates.extend([pb.Candidate(id=f"x{i}", data=b"1") for i in range(10)]), "the limit is 10"),
    (lambda r: r.candidates.append(pb.Candidate(id="c0", data=b"1")), "unique"),
    (lambda r: r.candidates.append(pb.Candidate(id="nothing")), "neither data nor uri"),
    (lambda r: r.candidates.append(pb.Candidate(id="u", uri="http://169.254.169.254/latest")), "allowed_hosts"),
    (lambda r: setattr(r.options, "threshold", 3.0), "threshold must be in"),
])
def test_bad_requests_are_invalid_argument(stub, small_product, mutate, message):
    req = request(small_product)
    mutate(req)
    with pytest.raises(grpc.RpcError) as e:
        stub.GenerateSequence(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in e.value.details()


def test_streaming_batch_keeps_order_and_survives_a_bad_product(stub, small_product):
    reqs = [request(small_product, pid=f"s{i}", skip_review=True) for i in range(6)]
    reqs[2].candidates[0].data = b"garbage"
    out = list(stub.GenerateSequences(iter(reqs), timeout=120))
    assert [r.product_id for r in out] == [f"s{i}" for i in range(6)]
    assert out[2].error.code == "INVALID_ARGUMENT" and "c0" in out[2].error.message
    assert all(not r.HasField("error") and r.status != pb.STATUS_UNSPECIFIED for i, r in enumerate(out) if i != 2)


def test_metrics_endpoint(server, stub, small_product):
    stub.GenerateSequence(request(small_product, skip_review=True), timeout=60)
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'agpis_requests_total{code="OK",method="GenerateSequence"}' in body
    assert "agpis_stage_latency_seconds_bucket" in body and 'stage="stage1"' in body
    assert "agpis_review_queue_depth" in body


def test_oversized_request_is_refused(queue_cfg, small_product):
    srv = AgpisServer(make_config(queue_cfg, max_message_mb=1)).start().wait_ready(timeout=300)
    try:
        with connect(srv.address) as ch:
            stub = pb_grpc.SequenceServiceStub(ch)
            big = list(small_product[:2]) + [("huge", b"\xff" * (2 * 1024 * 1024))]
            with pytest.raises(grpc.RpcError) as e:
                stub.GenerateSequence(request(big), timeout=30)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stub.GenerateSequence(request(small_product, skip_review=True), timeout=60).product_id
    finally:
        srv.stop(grace=1)


def test_deadline_exceeded(queue_cfg, small_product):
    cfg = make_config(queue_cfg)
    srv = AgpisServer(cfg, pipeline=slow_pipeline(cfg, delay=2.0)).start().wait_ready(timeout=300)
    try:
        with connect(srv.address) as ch:
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.SequenceServiceStub(ch).GenerateSequence(request(small_product), timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        srv.stop(grace=5)


def test_concurrency_limit_answers_resource_exhausted(queue_cfg, small_product):
    cfg = make_config(queue_cfg, max_concurrent_rpcs=2)
    srv = AgpisServer(cfg, pipeline=slow_pipeline(cfg, delay=1.0)).start().wait_ready(timeout=300)
    try:
        with connect(srv.address) as ch:
            stub = pb_grpc.SequenceServiceStub(ch)

            def call(i):
                try:
                    stub.GenerateSequence(request(small_product, pid=f"c{i}", skip_review=True), timeout=30)
                    return "OK"
                except grpc.RpcError as e:
                    return e.code().name

            with ThreadPoolExecutor(5) as pool:
                codes = list(pool.map(call, range(5)))
        assert codes.count("OK") >= 2 and "RESOURCE_EXHAUSTED" in codes, codes
    finally:
        srv.stop(grace=5)
