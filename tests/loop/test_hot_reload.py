"""A promoted model version is picked up by the running server without a failed call."""
from __future__ import annotations

import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agpis.loop.registry import Registry
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.loop.conftest import add_version, registry_server
from tests.service.helpers import connect, request


def test_server_switches_to_the_promoted_version_without_failing_calls(queue_cfg, small_product, tmp_path):
    registry = Registry(tmp_path / "models")
    add_version(registry, "v1")
    registry.promote("v1")
    _, srv = registry_server(registry, queue_cfg, 0.2)
    seen, errors, health = [], [], []
    stop = threading.Event()

    def client():
        with connect(srv.address) as ch:
            stub, hstub = pb_grpc.SequenceServiceStub(ch), health_pb2_grpc.HealthStub(ch)
            while not stop.is_set():
                try:
                    resp = stub.GenerateSequence(request(small_product, skip_review=True), timeout=60)
                    seen.append(resp.model_versions["model"])
                    health.append(hstub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)
                except grpc.RpcError as e:
                    errors.append(e.code().name)

    t = threading.Thread(target=client)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while "v1" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        add_version(registry, "v2")
        registry.promote("v2")
        while "v2" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        n = len(seen)
        while len(seen) < n + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
        srv.stop(grace=2)
    assert errors == []
    assert seen[0] == "v1" and seen[-1] == "v2"
    assert seen == sorted(seen)  # once switched, never back
    assert set(health) == {health_pb2.HealthCheckResponse.SERVING}
