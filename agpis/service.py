"""The gRPC service: translates between protos and the pipeline, and nothing more.

    server = AgpisServer(config).start()     # listening at once; health NOT_SERVING
    server.wait_ready()                      # models loaded and warmed up: SERVING
    server.stop()                            # health NOT_SERVING, in-flight calls drain

Failures become status codes with a message the caller can act on: INVALID_ARGUMENT (a bad
request or image, naming the candidate), UNAUTHENTICATED (no valid bearer token),
RESOURCE_EXHAUSTED (too many calls at once), DEADLINE_EXCEEDED, CANCELLED (the caller went
away), UNAVAILABLE (models still loading, shutting down), INTERNAL (a bug: logged with an
error id that the message repeats). Authentication, admission and arrival times: agpis/gate.py.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import signal
import threading
import time
import uuid
from concurrent import futures
from typing import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agpis import malloc, metrics
from agpis.config import Config
from agpis.convert import decision_to_proto, error_response
from agpis.gate import ARRIVED, BadRequest, Gate, Tokens
from agpis.images import CallOver, ImageError, LoadContext, PixelBudget, load_candidate
from agpis.pipeline import QUEUED, DeadlineExceeded, Pipeline, PipelineError
from agpis.v1 import agpis_pb2 as pb
from agpis.v1 import agpis_pb2_grpc as pb_grpc

log = logging.getLogger("agpis.service")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SequenceService"].full_name
LIVENESS = "liveness"
# Products of one GenerateSequences stream worked on at once (responses keep request order).
STREAM_WINDOW = 4
# gRPC threads beyond server.max_concurrent_rpcs: health checks, reflection and refusals are
# answered at once even when every admitted call holds a thread.
SPARE_THREADS = 8
# Threads decoding candidates that arrived as bytes (CPU-bound: about the cores), and threads
# fetching URIs (mostly waiting on the network). Separate, so that a slow remote host can hold
# up only URI candidates, never a bytes-only call.
DECODE_THREADS, FETCH_THREADS = 4, 8
# A call that decoded this many pixels (PNGs in full) leaves freed memory worth handing back to
# the system once no call is in flight; ordinary JPEG traffic never pays for the trim.
TRIM_AFTER_PIXELS = 20_000_000


class CallError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class ModelHolder:
    """The pipeline in service; swapped atomically when a new model version is promoted."""

    def __init__(self):
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def get(self) -> Pipeline:
        p = self._pipeline
        if p is None:
            raise CallError(grpc.StatusCode.UNAVAILABLE, "models are still loading; retry shortly")
        return p

    def set(self, pipeline: Pipeline) -> None:
        with self._lock:
            self._pipeline = pipeline

    @property
    def ready(self) -> bool:
        return self._pipeline is not None


class SequenceServicer(pb_grpc.SequenceServiceServicer):
    def __init__(self, config: Config, models: ModelHolder, review=None):
        self.config, self.models, self.review = config, models, review
        self._decode = futures.ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
        self._fetch = futures.ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fetch")
        self._budget = PixelBudget(config.images.max_decoding_pixels)
        self._busy = 0  # products being worked on
        self._heavy = False  # a call decoded TRIM_AFTER_PIXELS since the last trim
        self._busy_lock = threading.Lock()
        self._stream_pool = futures.ThreadPoolExecutor(max_workers=STREAM_WINDOW, thread_name_prefix="stream")

    # -- RPCs -----------------------------------------------------------------------------------
    def GenerateSequence(self, request, context):
        try:
            return self._generate(request, context, "GenerateSequence")
        except CallError as e:
            context.abort(e.code, e.message)

    def GenerateSequences(self, request_iterator, context) -> Iterator[pb.GenerateSequenceResponse]:
        window: collections.deque = collections.deque()

        def one(req):
            try:
                return self._generate(req, context, "GenerateSequences")
            except CallError as e:
                return error_response(req.product_id, e.code.name, e.message)

        for req in request_iterator:
            window.append(self._stream_pool.submit(one, req))
            if len(window) >= STREAM_WINDOW:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()

    # -- the work -------------------------------------------------------------------------------
    def _generate(self, req, context, method: str) -> pb.GenerateSequenceResponse:
        # From arrival (agpis/gate.py): the time a call waited before it got here counts too.
        started = time.perf_counter()
        t0 = ARRIVED.get() or started
        metrics.INFLIGHT.inc()
        with self._busy_lock:
            self._busy += 1
        code = "OK"
        try:
            if isinstance(req, BadRequest):
                raise CallError(grpc.StatusCode.INVALID_ARGUMENT, req.message)
            resp = self._run(req, context, queued_ms=(started - t0) * 1000)
            metrics.DECISIONS.labels(pb.Status.Name(resp.status)).inc()
            if resp.uncertain:
                metrics.UNCERTAIN.inc()
            return resp
        except CallError as e:
            code = e.code.name
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not take the server down
            code = "INTERNAL"
            error_id = uuid.uuid4().hex[:12]
            metrics.ERRORS.labels("internal").inc()
            log.exception("internal error", extra={"error_id": error_id, "product_id": req.product_id})
            raise CallError(grpc.StatusCode.INTERNAL, f"internal error {error_id}: {type(e).__name__}") from e
        finally:
            metrics.INFLIGHT.dec()
            with self._busy_lock:
                self._busy -= 1
                trim = self._heavy and self._busy == 0
                self._heavy = self._heavy and not trim
            if trim:
                malloc.trim_heap()
            elapsed = time.perf_counter() - t0
            metrics.REQUESTS.labels(method, code).inc()
            metrics.LATENCY.labels(method).observe(elapsed)
            log.info("product", extra={"product_id": req.product_id, "method": method, "code": code,
                                       "ms": round(elapsed * 1000, 1)})

    def _run(self, req, context, queued_ms: float = 0.0) -> pb.GenerateSequenceResponse:
        cfg = self.config
        pipeline = self.models.get()
        _validate_request(req, cfg)

        def check_deadline():
            if not context.is_active():
                raise CallError(grpc.StatusCode.CANCELLED, "the caller went away")
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

        check_deadline()
        t0 = time.perf_counter()
        loaded = self._load(req, context, check_deadline)
        timings = {"queued": queued_ms, "decode": (time.perf_counter() - t0) * 1000}
        check_deadline()

        opts = req.options
        try:
            decision = pipeline.run(
                req.product_id, req.title, [im for im, _ in loaded], category=req.category,
                k=opts.sequence_length or None, threshold=opts.threshold if opts.HasField("threshold") else None,
                explain=opts.explain, check_deadline=check_deadline, timings=timings)
        except PipelineError as e:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        except DeadlineExceeded:
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None

        if decision.status == QUEUED and not opts.skip_review and self.review is not None:
            t0 = time.perf_counter()
            sources = {c.id: (data if c.WhichOneof("source") == "data" else None,
                              c.uri if c.WhichOneof("source") == "uri" else None)
                       for c, (_, data) in zip(req.candidates, loaded)}
            decision.review = self.review.send(decision, req.title, req.category, sources)
            decision.timings_ms["queue"] = (time.perf_counter() - t0) * 1000
            decision.timings_ms["total"] += decision.timings_ms["queue"]
        decision.timings_ms["total"] += queued_ms  # the pipeline's total starts at decoding
        metrics.observe_timings(decision.timings_ms)
        return decision_to_proto(decision)

    def _load(self, req, context, check_deadline) -> list[tuple]:
        """Fetch and decode every candidate; all image errors together, or the call's own end."""
        remaining = context.time_remaining()
        ctx = LoadContext(deadline=time.monotonic() + remaining if remaining is not None else float("inf"),
                          gone=lambda: not context.is_active(), budget=self._budget,
                          max_pixels=self.config.images.max_request_pixels)
        jobs = []
        for c in req.candidates:
            if c.WhichOneof("source") == "uri":
                jobs.append(self._fetch.submit(load_candidate, c.id, self.config.images, None, c.uri, ctx))
            else:
                jobs.append(self._decode.submit(load_candidate, c.id, self.config.images, c.data, None, ctx))
        loaded, bad = [], []
        try:
            for job in jobs:
                while True:
                    try:
                        loaded.append(job.result(timeout=0.1))
                        break
                    except futures.TimeoutError:
                        check_deadline()  # the caller gone or out of time: stop waiting
                    except ImageError as e:
                        bad.append(str(e))
                        break
                    except CallOver:
                        check_deadline()
                        raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
        finally:
            for job in jobs:
                job.cancel()  # not started yet: never started (a started one sees ctx and stops)
            if ctx.used >= TRIM_AFTER_PIXELS:
                self._heavy = True
        if bad:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(bad))
        return loaded


def _validate_request(req, cfg: Config) -> None:
    if not req.product_id.strip():
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "product_id is empty")
    if not req.title.strip():
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "title is empty")
    n = len(req.candidates)
    if n == 0:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "no candidate images")
    if n > cfg.server.max_candidates:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"{n} candidates; the limit is {cfg.server.max_candidates} (server.max_candidates)")
    ids = [c.id for c in req.candidates]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"candidate ids must be unique; repeated: {', '.join(repeated)}")
    for i, c in enumerate(req.candidates):
        if not c.id:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"candidate #{i} has no id")
        if c.WhichOneof("source") is None:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"candidate {c.id!r} has neither data nor uri")
    if req.options.sequence_length > 10:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"sequence_length {req.options.sequence_length} is too large (at most 10)")


class HealthWatches(health.HealthServicer):
    """grpc_health's servicer, whose Watch streams end when the server shuts down.

    grpc_health leaves a Watch stream open after enter_graceful_shutdown (it sends NOT_SERVING
    and waits), and server.stop(grace) then waits the whole grace period for it."""

    def __init__(self):
        super().__init__(experimental_non_blocking=True)
        self._watches: set = set()
        self._watch_lock = threading.Lock()
        self._ended = False

    def Watch(self, request, context, send_response_callback=None):
        with self._watch_lock:
            ended = self._ended
            if not ended:
                self._watches.add(send_response_callback)
                context.add_callback(lambda: self._forget(send_response_callback))
        super().Watch(request, context, send_response_callback)
        if ended:  # arrived during shutdown: it has its NOT_SERVING, and ends now
            send_response_callback(None)

    def _forget(self, send) -> None:
        with self._watch_lock:
            self._watches.discard(send)

    def end_watches(self) -> None:
        """Finish every open Watch stream (status OK after its last NOT_SERVING message)."""
        with self._watch_lock:
            self._ended = True
            watches, self._watches = list(self._watches), set()
        for send in watches:
            send(None)


class AgpisServer:
    """One gRPC server: the sequence service, health, reflection, metrics, the review sender."""

    def __init__(self, config: Config, pipeline: Pipeline | None = None, review: bool = True):
        self.config = config
        srv = config.server
        self.tokens = Tokens(srv.api_tokens_file) if srv.api_tokens_file else None
        if self.tokens is None and not _is_loopback(srv.host):
            raise ValueError(f"server.host is {srv.host!r} but server.api_tokens_file is not set: anyone who can "
                             "reach the port could add work to the review queue. Set a tokens file, or listen on "
                             "127.0.0.1")
        if bool(srv.tls_cert_file) != bool(srv.tls_key_file):
            raise ValueError("server.tls_cert_file and server.tls_key_file go together: set both or neither")
        malloc.return_freed_memory_promptly()
        self.models = ModelHolder()
        self._given_pipeline = pipeline
        self.review = None
        if review:
            from agpis.review import ReviewSender

            self.review = ReviewSender(config.queue)
        mb = srv.max_message_mb * 1024 * 1024
        self.gate = Gate(SERVICE_NAME, srv.max_concurrent_rpcs, self.tokens)
        threads = srv.max_concurrent_rpcs + SPARE_THREADS
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
            interceptors=[self.gate],
            # The gate admits max_concurrent_rpcs calls and counts its refusals; gRPC's own limit
            # (uncounted) is only a backstop against floods that would pile up threads.
            maximum_concurrent_rpcs=threads,
            options=[("grpc.max_receive_message_length", mb), ("grpc.max_send_message_length", mb),
                     ("grpc.so_reuseport", 0)])
        self.servicer = SequenceServicer(config, self.models, self.review)
        pb_grpc.add_SequenceServiceServicer_to_server(self.servicer, self.server)
        self.health = HealthWatches()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        address = f"{srv.host}:{srv.port}"
        if srv.tls_cert_file:
            key, cert = open(srv.tls_key_file, "rb").read(), open(srv.tls_cert_file, "rb").read()
            self.port = self.server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {config.server.host}:{config.server.port}")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # For liveness probes: SERVING while the process can answer at all, even while loading.
        self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._load_error: BaseException | None = None
        self._metrics_httpd = None
        self.metrics_port = -1

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    def _set_health(self, status) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start(self) -> "AgpisServer":
        self.server.start()
        self._metrics_httpd, self.metrics_port = metrics.serve(self.config.server.metrics_host,
                                                               self.config.server.metrics_port)
        log.info("listening", extra={"address": self.address, "metrics_port": self.metrics_port})
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _registry(self):
        if not self.config.pipeline.registry:
            return None
        from agpis.loop.registry import Registry

        return Registry(self.config.pipeline.registry)

    def _load(self) -> None:
        try:
            t0 = time.perf_counter()
            if self.review is not None:
                self.review.start()
            registry = self._registry()
            current = registry.current() if registry is not None else None
            pipeline = self._given_pipeline or Pipeline.load(current or self.config.pipeline.model, self.config)
            pipeline.warmup()
            self.models.set(pipeline)
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("serving", extra={"model": pipeline.version, "load_s": round(time.perf_counter() - t0, 2),
                                       **pipeline.model_versions})
        except BaseException as e:  # noqa: BLE001 - reported through wait_ready() and the health status
            self._load_error = e
            log.exception("could not load the models; health stays NOT_SERVING")
        finally:
            self._ready.set()
        if self._load_error is None and self._registry() is not None:
            threading.Thread(target=self._follow_registry, name="model-reloader", daemon=True).start()

    def _follow_registry(self) -> None:
        """Serve each newly promoted version: load and warm it beside the old one, then swap."""
        registry, failed = self._registry(), None
        while not self._stopping.wait(self.config.pipeline.reload_s):
            try:
                name = registry.current_name()
                if name is None or name == self.models.get().version or name == failed:
                    continue
                log.info("new model version promoted; loading it", extra={"model": name})
                pipeline = Pipeline.load(registry.current(), self.config)
                pipeline.warmup()
                self.swap_pipeline(pipeline)
            except Exception:  # noqa: BLE001 - keep serving the old version
                failed = name
                log.exception("could not load the promoted version; still serving the previous one",
                              extra={"model": name})

    def wait_ready(self, timeout: float | None = None) -> "AgpisServer":
        if not self._ready.wait(timeout):
            raise TimeoutError(f"models not ready after {timeout} s")
        if self._load_error is not None:
            raise RuntimeError(f"model loading failed: {self._load_error}") from self._load_error
        return self

    def swap_pipeline(self, pipeline: Pipeline) -> None:
        """Serve a new model version from the next call on; calls in flight finish on the old one."""
        self.models.set(pipeline)
        log.info("model version in service", extra={"model": pipeline.version})

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let the ones in flight finish (up to `grace` s), release everything."""
        grace = self.config.server.grace_s if grace is None else grace
        self._stopping.set()
        self.health.enter_graceful_shutdown()  # NOT_SERVING: load balancers stop sending
        stopped = self.server.stop(grace)  # no new calls from here on
        self.health.end_watches()  # else the grace period is spent waiting for them
        stopped.wait()
        if self.review is not None:
            self.review.close()
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
        log.info("stopped")

    def reload_tokens(self) -> None:
        """Re-read server.api_tokens_file (SIGHUP); a broken file keeps the tokens in use."""
        if self.tokens is None:
            return
        try:
            log.info("api tokens reloaded", extra={"tokens": self.tokens.load()})
        except (OSError, ValueError) as e:
            log.error("api tokens NOT reloaded; the previous ones stay in use", extra={"error": str(e)})

    def handle_signals(self) -> threading.Event:
        """Install the handlers: SIGTERM/SIGINT set the returned event (serve_forever then drains and
        stops), SIGHUP re-reads the api tokens. Until then SIGHUP's default ends the process, so a
        caller that announces itself (a port, a readiness line) installs them first."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # reload_tokens looked up when signalled (a test wraps it)
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload_tokens).start())
        return stop

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        """Block until SIGTERM/SIGINT, then stop gracefully. SIGHUP re-reads the api tokens.
        `stop`: handle_signals()'s event when the caller installed them already."""
        stop = stop or self.handle_signals()
        stop.wait()
        log.info("signal received: draining in-flight calls", extra={"grace_s": self.config.server.grace_s})
        self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
