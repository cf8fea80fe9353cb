"""Issue 15: defects found under faults and bad input, each through the real gRPC server.
Every test here failed on the code before the fix (the issue's defect number is in its name)."""
from __future__ import annotations

import http.server
import io
import subprocess
import threading
import time
import uuid

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from prometheus_client import REGISTRY

from agpis.client import open_channel
from agpis.config import Config, QueueConfig
from agpis.service import SERVICE_NAME, AgpisServer
from agpis.v1 import agpis_pb2 as pb
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.conftest import jpeg_bytes
from tests.service.helpers import TOKEN, connect, request, with_token

GEN = f"/{SERVICE_NAME}/GenerateSequence"


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def count(code: str, method: str = "GenerateSequence") -> float:
    return REGISTRY.get_sample_value("agpis_requests_total", {"method": method, "code": code}) or 0.0


class _Drip(http.server.BaseHTTPRequestHandler):
    """An allowed host at its worst: a byte every 0.1 s (for at most 8 s), or no HTTP at all."""

    opened: list[float] = []
    closed_at: list[float] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/not-http":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            return
        _Drip.opened.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        end = time.monotonic() + 8
        try:
            while time.monotonic() < end:
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass
        _Drip.closed_at.append(time.monotonic())


@pytest.fixture(scope="module")
def drip_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.handle_error = lambda *_: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def hardening_config(valkey, tmp_path) -> Config:
    cfg = with_token(Config())
    cfg.server.port, cfg.server.metrics_port = 0, 0
    tag = uuid.uuid4().hex[:8]
    cfg.queue = QueueConfig(redis_url=valkey.connection_url, stream=f"h{tag}:review", decisions_stream=f"h{tag}:dec",
                            dead_letter_stream=f"h{tag}:dead", outbox_dir=str(tmp_path / "outbox"),
                            image_store=str(tmp_path / "images"), outbox_retry_s=0.1, socket_timeout_s=0.5)
    cfg.images.allowed_hosts = ["localhost", "127.0.0.1"]
    cfg.images.fetch_timeout_s = 30.0  # the call's deadline must win over a generous configured one
    return cfg


@pytest.fixture(scope="module")
def server(valkey, tmp_path_factory):
    srv = AgpisServer(hardening_config(valkey, tmp_path_factory.mktemp("hardening"))).start().wait_ready(timeout=300)
    yield srv
    srv.stop(grace=2)


@pytest.fixture(scope="module")
def stub(server):
    with connect(server.address) as ch:
        yield pb_grpc.SequenceServiceStub(ch)


def invalid_argument(stub, req, timeout=60) -> str:
    with pytest.raises(grpc.RpcError) as e:
        stub.GenerateSequence(req, timeout=timeout)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.value.code(), e.value.details())
    return e.value.details()


def still_serving(server, stub, small_product) -> None:
    assert stub.GenerateSequence(request(small_product, pid="alive", skip_review=True), timeout=60).status
    with connect(server.address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("data", [jpeg_bytes(np.full((1, 1, 3), 128, np.uint8)),
                                  png(Image.new("RGB", (800, 4), (200, 30, 30)))], ids=["1x1-jpeg", "800x4-png"])
def test_1_tiny_image_is_invalid_argument_naming_the_candidate(server, stub, small_product, data):
    details = invalid_argument(stub, request(list(small_product[:3]) + [("tiny-9", data)]))
    assert "tiny-9" in details and "at least 8 px a side" in details
    still_serving(server, stub, small_product)


def test_2_invalid_utf8_is_invalid_argument_and_counted(server, stub, small_product):
    req = request(small_product[:3])
    req.title = "Caf\u00e9 mug"
    raw = bytearray(req.SerializeToString())
    at = raw.index("\u00e9".encode())
    raw[at:at + 2] = b"\xff\xfe"  # same length: the message still frames, the string is not UTF-8
    before = count("INVALID_ARGUMENT")
    with connect(server.address) as ch:
        call = ch.unary_unary(GEN, request_serializer=None, response_deserializer=pb.GenerateSequenceResponse.FromString)
        with pytest.raises(grpc.RpcError) as e:
            call(bytes(raw), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in e.value.details()
        stream = ch.stream_stream(f"/{SERVICE_NAME}/GenerateSequences", request_serializer=None,
                                  response_deserializer=pb.GenerateSequenceResponse.FromString)
        good = request(small_product[:3], pid="fine", skip_review=True).SerializeToString()
        out = list(stream(iter([bytes(raw), good]), timeout=60))
    assert out[0].error.code == "INVALID_ARGUMENT" and "UTF-8" in out[0].error.message
    assert out[1].product_id == "fine" and not out[1].HasField("error")  # the stream went on
    assert count("INVALID_ARGUMENT") == before + 1
    assert count("INVALID_ARGUMENT", "GenerateSequences") >= 1
    still_serving(server, stub, small_product)


def test_3_bad_uris_and_bad_answers_are_invalid_argument(server, stub, small_product, drip_port):
    for uri, words in [(f"http://127.0.0.1:{drip_port}\\@localhost/img.jpg", "credentials"),
                       (f"http://local\thost:{drip_port}/img.jpg", "control characters"),
                       (f"http://localhost:{drip_port}/not-http", "BadStatusLine")]:
        req = request(small_product[:3])
        req.candidates.append(pb.Candidate(id="remote-3", uri=uri))
        details = invalid_argument(stub, req)
        assert "remote-3" in details and words in details, details
    still_serving(server, stub, small_product)


def test_4_slow_host_neither_outlives_its_caller_nor_stalls_other_calls(server, stub, small_product, drip_port):
    slow = request(small_product[:1], pid="slow", skip_review=True)
    for i in range(9):
        slow.candidates.append(pb.Candidate(id=f"drip{i}", uri=f"http://localhost:{drip_port}/img{i}.jpg"))
    _Drip.opened.clear()
    _Drip.closed_at.clear()
    outcome = []

    def slow_call():
        try:
            stub.GenerateSequence(slow, timeout=1.5)
            outcome.append("OK")
        except grpc.RpcError as e:
            outcome.append(e.code().name)

    t = threading.Thread(target=slow_call)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)  # the slow call's nine downloads are dripping now
    resp = stub.GenerateSequence(request(small_product, pid="bytes-only", skip_review=True), timeout=20)
    assert resp.product_id == "bytes-only"  # not stuck behind the downloads
    t.join(30)
    assert outcome == ["DEADLINE_EXCEEDED"]
    deadline = time.monotonic() + 5
    while len(_Drip.closed_at) < len(_Drip.opened) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _Drip.opened and len(_Drip.closed_at) == len(_Drip.opened) and max(_Drip.closed_at) - t0 < 4.0, \
        "the server kept downloading for a caller that had given up"


def test_6_16_bit_greyscale_png_is_judged_like_its_8_bit_copy(server, stub, small_product):
    grey8 = np.asarray(Image.open(io.BytesIO(small_product[1][1])).convert("L"))
    grey8 = (grey8 * 0.6).astype(np.uint8)  # a mid-grey photo: washed out to white, it would look overexposed
    answers = {}
    for name, pixels in (("grey8", grey8), ("grey16", grey8.astype(np.uint16) * 257)):
        req = request(list(small_product[:4]) + [("grey", png(Image.fromarray(pixels)))], pid=name, skip_review=True)
        resp = stub.GenerateSequence(req, timeout=60)
        report = next(c for c in resp.candidates if c.id == "grey")
        answers[name] = (round(report.p_noncompliant, 2), sorted(f.rule for f in report.findings if f.score >= 0.5),
                         sorted(r.rule for r in resp.removed if r.id == "grey"))
    assert answers["grey16"] == answers["grey8"]


def test_7_request_pixel_budget(server, stub, small_product):
    big = png(Image.new("RGB", (6000, 6000), (200, 30, 30)))  # 110 KB each, 36 MP decoded
    details = invalid_argument(stub, request(list(small_product[:2]) + [(f"big{i}", big) for i in range(3)]))
    assert "images.max_request_pixels" in details and "big" in details
    still_serving(server, stub, small_product)


def test_pixel_budget_holds_back_what_does_not_fit():
    from agpis.images import PixelBudget

    budget, order = PixelBudget(100), []

    def hold(name, pixels, seconds):
        with budget.hold(pixels, lambda: None):
            order.append(name)
            time.sleep(seconds)

    first = threading.Thread(target=hold, args=("big", 80, 0.3))
    first.start()
    time.sleep(0.05)
    hold("second", 50, 0)  # waits for the first to finish
    first.join()
    assert order == ["big", "second"] and budget.used == 0
    hold("huge", 500, 0)  # larger than the budget: decodes alone, does not wait forever


def test_9_refusals_are_counted_and_time_is_measured_from_arrival(valkey, tmp_path, small_product):
    from tests.service.helpers import slow_pipeline

    cfg = hardening_config(valkey, tmp_path)
    cfg.server.max_concurrent_rpcs = 1
    pipeline = slow_pipeline(cfg, delay=1.0)
    srv = AgpisServer(cfg, pipeline=pipeline).start().wait_ready(timeout=300)
    entered = threading.Event()
    pipeline.stage1.on_enter = entered.set  # after warm-up: set when "first" is in stage 1
    before = count("RESOURCE_EXHAUSTED")
    try:
        with connect(srv.address) as ch:
            stub = pb_grpc.SequenceServiceStub(ch)
            first = stub.GenerateSequence.future(request(small_product, pid="first", skip_review=True), timeout=30)
            assert entered.wait(20), "the first call never reached stage 1"
            with pytest.raises(grpc.RpcError) as e:
                stub.GenerateSequence(request(small_product, pid="second", skip_review=True), timeout=30)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            resp = first.result()
        assert "queued" in resp.timings_ms and resp.timings_ms["total"] >= resp.timings_ms["queued"]
        assert count("RESOURCE_EXHAUSTED") == before + 1
    finally:
        srv.stop(grace=2)


def test_8_shutdown_does_not_wait_for_health_watch_streams(valkey, tmp_path, small_product):
    srv = AgpisServer(hardening_config(valkey, tmp_path)).start().wait_ready(timeout=300)
    ch = grpc.insecure_channel(srv.address)
    watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=60)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    t0 = time.monotonic()
    srv.stop(grace=15)
    took = time.monotonic() - t0
    seen = [m.status for m in watch]  # the stream ends (NOT_SERVING first), it is not cut
    ch.close()
    assert took < 5, f"stop() took {took:.1f} s: it waited for the Watch stream"
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING


# -- 10: authentication -----------------------------------------------------------------------------
def test_10_calls_need_a_valid_bearer_token_but_health_is_open(server, small_product):
    before = count("UNAUTHENTICATED")
    for token in (None, "wrong-token"):
        with open_channel(server.address, token=token) as ch:
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.SequenceServiceStub(ch).GenerateSequence(request(small_product), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert count("UNAUTHENTICATED") == before + 2
    with grpc.insecure_channel(server.address) as ch:  # probes carry no token
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        with pytest.raises(grpc.RpcError) as e:
            ProtoReflectionDescriptorDatabase(ch).get_services()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_10_tokens_are_reloaded_and_a_broken_file_keeps_them(valkey, tmp_path, small_product):
    cfg = hardening_config(valkey, tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text("old-token\n")
    cfg.server.api_tokens_file = str(tokens)
    srv = AgpisServer(cfg, review=False).start().wait_ready(timeout=300)

    def code(token):
        with open_channel(srv.address, token=token) as ch:
            try:
                pb_grpc.SequenceServiceStub(ch).GenerateSequence(request(small_product, skip_review=True), timeout=60)
                return "OK"
            except grpc.RpcError as e:
                return e.code().name

    try:
        assert code("old-token") == "OK" and code("new-token") == "UNAUTHENTICATED"
        tokens.write_text("# rotated\nnew-token\n")
        srv.reload_tokens()  # what SIGHUP does (tests/service/test_shutdown.py sends a real one)
        assert code("new-token") == "OK" and code("old-token") == "UNAUTHENTICATED"
        tokens.write_text("\n")
        srv.reload_tokens()  # an empty file would lock everyone out: kept
        assert code("new-token") == "OK"
    finally:
        srv.stop(grace=2)


def test_10_no_tokens_means_loopback_only_and_metrics_stay_on_loopback(server):
    cfg = Config()
    cfg.server.host, cfg.server.port = "0.0.0.0", 0
    with pytest.raises(ValueError, match="api_tokens_file"):
        AgpisServer(cfg, review=False)
    assert server._metrics_httpd.server_address[0] == "127.0.0.1"


def test_10_tls(valkey, tmp_path, small_product):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    cfg = hardening_config(valkey, tmp_path)
    cfg.server.tls_cert_file, cfg.server.tls_key_file = str(cert), str(key)
    srv = AgpisServer(cfg, review=False).start().wait_ready(timeout=300)
    try:
        address = f"localhost:{srv.port}"
        with open_channel(address, token=TOKEN, root_cert=cert.read_bytes()) as ch:
            resp = pb_grpc.SequenceServiceStub(ch).GenerateSequence(request(small_product, skip_review=True), timeout=60)
            assert resp.product_id == "p1"
        with grpc.insecure_channel(address) as ch:  # plaintext to a TLS port gets nowhere
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    finally:
        srv.stop(grace=2)
