"""The door every call passes on arrival (a gRPC server interceptor, run on gRPC's polling
thread before the call gets a worker thread):

- authentication: a bearer token from `server.api_tokens_file`, or UNAUTHENTICATED; the health
  service stays open for probes;
- admission: at most `server.max_concurrent_rpcs` sequence-service calls at once, the rest
  RESOURCE_EXHAUSTED at once;
- a request that cannot be parsed (invalid UTF-8 in a string field) reaches the servicer as a
  `BadRequest` to answer INVALID_ARGUMENT, instead of gRPC's own INTERNAL;
- the arrival time, so that the servicer measures a call from arrival, not from when it began.

Every refusal made here is counted in `agpis_requests_total` by code, like every answer.
"""
from __future__ import annotations

import contextvars
import hmac
import logging
import threading
import time
from pathlib import Path

import grpc

from agpis import metrics

log = logging.getLogger("agpis.gate")

OPEN_PREFIX = "/grpc.health.v1.Health/"  # probes carry no token
# When the call arrived (time.perf_counter()), for the servicer's unary handler.
ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar("agpis_arrived", default=None)


class BadRequest:
    """A request message that did not parse; the servicer answers it INVALID_ARGUMENT."""

    product_id = ""

    def __init__(self, error: Exception):
        self.message = (f"the request is not a valid message ({type(error).__name__}: {error}); "
                        "string fields must be valid UTF-8")


class Tokens:
    """The accepted bearer tokens: one per line of a file, '#' comments; reloadable."""

    def __init__(self, path: str):
        self.path = Path(path)
        self._tokens: tuple[bytes, ...] = ()
        self.load()

    def load(self) -> int:
        """(Re)read the file; an unreadable or empty file raises and keeps the tokens in use."""
        lines = self.path.read_text().splitlines()
        tokens = tuple(t.encode() for t in (line.split("#", 1)[0].strip() for line in lines) if t)
        if not tokens:
            raise ValueError(f"{self.path}: no tokens in server.api_tokens_file")
        self._tokens = tokens
        return len(tokens)

    def allows(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                presented = value[len("Bearer "):].strip().encode()
                # Compare with every token, in constant time each: no early exit to time.
                return sum(hmac.compare_digest(presented, t) for t in self._tokens) > 0
        return False


class Gate(grpc.ServerInterceptor):
    def __init__(self, service_name: str, limit: int, tokens: Tokens | None):
        self.service_prefix = f"/{service_name}/"
        self.limit, self.tokens = limit, tokens
        self.active = 0
        self._lock = threading.Lock()

    def intercept_service(self, continuation, details):
        arrived = time.perf_counter()
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIX):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        if self.tokens is not None and not self.tokens.allows(details.invocation_metadata):
            return _refusal(handler, method, grpc.StatusCode.UNAUTHENTICATED,
                            "a valid 'authorization: Bearer <token>' header is needed (server.api_tokens_file)")
        if not details.method.startswith(self.service_prefix):
            return handler  # reflection: authenticated, not limited
        return self._admitted(handler, method, arrived)

    def _admit(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self.active -= 1

    def _admitted(self, handler, method: str, arrived: float):
        def deserialize(raw: bytes):
            try:
                return handler.request_deserializer(raw)
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
                return BadRequest(e)

        def refuse(context):
            metrics.REQUESTS.labels(method, "RESOURCE_EXHAUSTED").inc()
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"more than {self.limit} calls at once (server.max_concurrent_rpcs); retry shortly")

        if handler.request_streaming and handler.response_streaming:
            def stream(request_iterator, context):
                if not self._admit():
                    refuse(context)
                # A stream's end is known only to gRPC: release when the RPC terminates.
                if not context.add_callback(self._release):
                    self._release()
                return handler.stream_stream(request_iterator, context)

            return grpc.stream_stream_rpc_method_handler(stream, deserialize, handler.response_serializer)

        def unary(request, context):
            if not self._admit():
                refuse(context)
            token = ARRIVED.set(arrived)
            try:
                return handler.unary_unary(request, context)
            finally:
                ARRIVED.reset(token)
                self._release()

        return grpc.unary_unary_rpc_method_handler(unary, deserialize, handler.response_serializer)


def _refusal(handler, method: str, code: grpc.StatusCode, message: str):
    """A handler of the same shape as `handler` that answers `code` without reading the request."""
    def refuse(_request, context):
        metrics.REQUESTS.labels(method, code.name).inc()
        context.abort(code, message)

    make = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    return make[(handler.request_streaming, handler.response_streaming)](refuse)
