"""Prometheus metrics, served on http://<host>:<server.metrics_port>/metrics."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Buckets around the targets (p50 <= 150 ms, p99 <= 400 ms) with room on both sides.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0, 2.0, 5.0, 10.0)

REQUESTS = Counter("agpis_requests_total", "Products handled, by RPC method and gRPC status code",
                   ["method", "code"])
LATENCY = Histogram("agpis_request_latency_seconds", "Time to answer one product", ["method"], buckets=_LATENCY)
STAGE_LATENCY = Histogram("agpis_stage_latency_seconds", "Time per pipeline stage", ["stage"], buckets=_LATENCY)
DECISIONS = Counter("agpis_decisions_total", "Decisions by status", ["status"])
UNCERTAIN = Counter("agpis_uncertain_total", "QUEUED decisions marked uncertain: stage 2 would reject images "
                    "unlike its training data (stage2.novelty)")
ERRORS = Counter("agpis_errors_total", "Errors by kind", ["kind"])
INFLIGHT = Gauge("agpis_inflight_requests", "Products being worked on now")
QUEUE_DEPTH = Gauge("agpis_review_queue_depth", "Review entries not yet decided (waiting + in review)")
OUTBOX = Gauge("agpis_review_outbox_pending", "Review entries waiting on local disk for Redis to come back")
REDIS_UP = Gauge("agpis_redis_up", "1 when the review queue's Redis answered the last attempt")

STAGES = ("queued", "decode", "wait", "stage1", "stage2", "queue")


def observe_timings(timings_ms: dict[str, float]) -> None:
    for stage in STAGES:
        if stage in timings_ms:
            STAGE_LATENCY.labels(stage).observe(timings_ms[stage] / 1000.0)


def serve(host: str, port: int):
    """Start the /metrics endpoint; -> (http server, its port). port -1 disables it."""
    if port < 0:
        return None, -1
    httpd, _thread = start_http_server(port, addr=host)
    return httpd, httpd.server_address[1]
