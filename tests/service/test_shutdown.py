"""SIGTERM while calls are in flight: they complete, then the process exits cleanly; SIGHUP re-reads the tokens."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


from agpis.client import open_channel
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.conftest import ROOT
from tests.service.helpers import request


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
        time.sleep(0.5)
        with open_channel(f"127.0.0.1:{port}", token="second-token") as ch:
            stub = pb_grpc.SequenceServiceStub(ch)

            def call(i):
                resp = stub.GenerateSequence(request(small_product, pid=f"drain{i}"), timeout=30)
                return resp.product_id

            with ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(call, i) for i in range(3)]
                time.sleep(0.6)  # all three are inside the 1.5 s stage 1 now
                t_signal = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                results = [f.result() for f in futures]
        assert results == ["drain0", "drain1", "drain2"]
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - t_signal < 20  # drained, not killed at the grace limit
    finally:
        if proc.poll() is None:
            proc.kill()
