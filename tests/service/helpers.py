"""Test helpers for the service: a deliberately slow stage 1 (to have calls in flight for
deadline, concurrency and shutdown tests) around the REAL stage 1 of a model version."""
from __future__ import annotations

import functools
import tempfile
import threading
import time
from pathlib import Path

import grpc

from agpis.client import open_channel
from agpis.config import Config
from agpis.pipeline import Pipeline
from agpis.v1 import agpis_pb2 as pb


TOKEN = "test-token-4f1c2a"  # the tests run with authentication on, as production does


@functools.lru_cache(maxsize=None)
def tokens_file() -> str:
    path = Path(tempfile.mkdtemp(prefix="agpis-tokens-")) / "api-tokens"
    path.write_text(f"# the test suite's token\n{TOKEN}\n")
    return str(path)


def with_token(cfg: Config) -> Config:
    cfg.server.api_tokens_file = tokens_file()
    return cfg


def connect(address: str) -> grpc.Channel:
    """A channel that sends the test token with every call."""
    return open_channel(address, token=TOKEN)


class SlowStage1:
    """The real stage 1, after `delay` seconds during which the deadline is checked.
    `on_enter` is called as a call enters it: a test can wait for calls to be in flight
    instead of guessing with a sleep."""

    def __init__(self, inner, delay: float, on_enter=None):
        self.inner, self.delay, self.on_enter = inner, delay, on_enter
        self.version = inner.version + f" (+{delay}s test delay)"

    def run(self, images, k, check_deadline=None, title=""):
        if self.on_enter:
            self.on_enter()
        end = time.monotonic() + self.delay
        while time.monotonic() < end:
            time.sleep(0.02)
            if check_deadline:
                check_deadline()
        return self.inner.run(images, k, check_deadline, title=title)


def slow_pipeline(config: Config, delay: float, model: str = "default", on_enter=None) -> Pipeline:
    p = Pipeline.load(model, config)
    p.stage1 = SlowStage1(p.stage1, delay, on_enter)
    return p


class GatedPipeline(Pipeline):
    """Warm-up waits for `gate`: lets a test see the server before the models are ready."""

    gate: threading.Event

    def warmup(self):
        self.gate.wait(30)
        super().warmup()


def request(product, pid="p1", explain=True, **options) -> pb.GenerateSequenceRequest:
    return pb.GenerateSequenceRequest(product_id=pid, title="Ceramic mug with handle", category="kitchen",
                                      candidates=[pb.Candidate(id=cid, data=data) for cid, data in product],
                                      options=pb.Options(explain=explain, **options))
