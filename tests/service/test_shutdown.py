"""SIGTERM while calls are in flight: they complete, then the process exits cleanly; SIGHUP re-reads the tokens."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


from agpis.client import open_channel
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.conftest import ROOT
from tests.service.helpers import request


def wait_for_lines(stream, text: str, count: int, timeout: float) -> None:
    """Read `count` lines equal to `text` from the server's stdout, failing after `timeout` s.
    A thread reads, since select() cannot see lines already in the text stream's buffer."""
    lines: queue.Queue = queue.Queue()

    def read():
        for _ in range(count):
            lines.put(stream.readline())

    threading.Thread(target=read, daemon=True).start()
    end, seen = time.monotonic() + timeout, 0
    while seen < count:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the server said {text!r} {seen} of {count} times in {timeout} s") from None
        assert line, "the server exited"
        assert line.strip() == text, f"unexpected output from the server: {line!r}"
        seen += 1


def test_sigterm_drains_in_flight_calls_and_sighup_reloads_tokens(queue_cfg, small_product, tmp_path):
    tokens = tmp_path / "api-tokens"
    tokens.write_text("first-token\n")
    overrides = ["server.port=0", "server.metrics_port=-1", "server.grace_s=20", f"server.api_tokens_file={tokens}",
                 f"queue.redis_url={queue_cfg.redis_url}", f"queue.stream={queue_cfg.stream}",
                 f"queue.outbox_dir={queue_cfg.outbox_dir}", f"queue.image_store={queue_cfg.image_store}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.service.slow_server", *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(proc.stdout.readline())
        tokens.write_text("second-token\n")  # rotated: SIGHUP makes the server read it again
        proc.send_signal(signal.SIGHUP)
        wait_for_lines(proc.stdout, "reloaded", 1, timeout=20)
        with open_channel(f"127.0.0.1:{port}", token="second-token") as ch:
            stub = pb_grpc.SequenceServiceStub(ch)

            def call(i):
                resp = stub.GenerateSequence(request(small_product, pid=f"drain{i}"), timeout=30)
                return resp.product_id

            with ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(call, i) for i in range(3)]
                # all three inside the 1.5 s stage 1: on a slow machine a fixed sleep was not
                # enough, and a SIGTERM before a call connects is (rightly) refused
                wait_for_lines(proc.stdout, "entered", 3, timeout=20)
                t_signal = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                results = [f.result() for f in futures]
        assert results == ["drain0", "drain1", "drain2"]
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - t_signal < 20  # drained, not killed at the grace limit
    finally:
        if proc.poll() is None:
            proc.kill()
