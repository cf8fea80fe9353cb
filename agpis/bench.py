"""`agpis bench`: drive a running server over loopback and report latency and throughput.

Products of 7 candidates (~800x800 JPEG, drawn by the project's own code) go through
GenerateSequence at each concurrency level; prints p50/p95/p99 latency, products/s and the
median time per stage, and writes the table into docs/benchmarks.md (section `service`).
"""
from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import grpc

from agpis.client import first_token, new_token_file, open_channel
from agpis.config import Config
from agpis.demo import products_as_requests
from agpis.docsections import write_section
from agpis.v1 import agpis_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("queued", "decode", "wait", "stage1", "stage2", "queue")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_clients(client, n: int) -> float:
    """Run `client` on n threads at once; -> seconds until the last one finished."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_level(stub, requests, concurrency: int, n: int, tag: str) -> dict:
    latencies, stage_ms, errors = [], {s: [] for s in STAGES}, []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            req = copy.copy(requests[i % len(requests)])
            req.product_id = f"bench-{tag}-{i}"  # a new product each time: the queue path runs too
            t0 = time.perf_counter()
            try:
                resp = stub.GenerateSequence(req, timeout=60)
            except grpc.RpcError as e:
                with lock:
                    errors.append(e.code().name)
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
                for s in STAGES:
                    if s in resp.timings_ms:
                        stage_ms[s].append(resp.timings_ms[s])

    wall = run_clients(worker, concurrency)
    return {"concurrency": concurrency, "n": len(latencies), "errors": errors,
            "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
            "throughput": len(latencies) / wall,
            "stages": {s: statistics.median(v) for s, v in stage_ms.items() if v}}


def run_bench(cfg: Config, args) -> int:
    from agpis import logs
    from agpis.data.synth import demo_products

    logs.setup("WARNING", json_lines=False)
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    server, tmp = None, None
    address = args.address
    if args.spawn_server or not address:
        if not args.spawn_server:
            print("no --address given: starting a server in-process (--spawn-server)")
        from agpis.service import AgpisServer

        tmp = tempfile.TemporaryDirectory(prefix="agpis-bench-")
        cfg.server.port, cfg.server.metrics_port = 0, -1
        cfg.queue.data_dir, cfg.queue.outbox_dir = f"{tmp.name}/redis", f"{tmp.name}/outbox"
        cfg.queue.image_store = f"{tmp.name}/images"
        cfg.server.api_tokens_file = f"{tmp.name}/api-tokens"
        token = new_token_file(cfg.server.api_tokens_file)
        server = AgpisServer(cfg).start().wait_ready(timeout=300)
        address = server.address
    else:
        token = first_token(args.token_file) if args.token_file else None
    try:
        products = demo_products(16, seed=1, size=800)
        requests = products_as_requests(products, explain=False)
        channel = open_channel(address, token=token)
        stub = pb_grpc.SequenceServiceStub(channel)
        run_level(stub, requests, 1, args.warmup, "warmup")
        results = []
        for c in levels:
            r = run_level(stub, requests, c, args.products, f"c{c}-{time.time_ns()}")
            results.append(r)
            print(f"concurrency {c}: p50 {r['p50']:.0f} ms  p95 {r['p95']:.0f} ms  p99 {r['p99']:.0f} ms  "
                  f"{r['throughput']:.2f} products/s  errors {len(r['errors'])}  stages(ms) "
                  + " ".join(f"{s}={v:.0f}" for s, v in r["stages"].items()), flush=True)
        versions = {}
        if server is not None:
            versions = server.models.get().model_versions
        channel.close()
    finally:
        if server is not None:
            server.stop(grace=5)
        if tmp is not None:
            tmp.cleanup()
    if not args.no_doc:
        path = write_section(ROOT / "docs" / "benchmarks.md", "service", _markdown(results, cfg, versions, args))
        print(f"wrote {path}")
    return 0


def _markdown(results, cfg, versions, args) -> str:
    lines = ["## Service: GenerateSequence over loopback (`agpis bench`)", "",
             f"Measured {date.today()} on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
             f"`pipeline.threads={cfg.pipeline.threads}`, `pipeline.parallel_runs={cfg.pipeline.parallel_runs}`, "
             f"`server.max_concurrent_rpcs={cfg.server.max_concurrent_rpcs}`, "
             f"{args.products} products of 7 candidates (~800x800 JPEG) per level, queue path included. "
             f"Command: `agpis bench --spawn-server --products {args.products}`.", ""]
    if versions:
        lines += ["Models: " + ", ".join(f"{k} `{v}`" for k, v in versions.items()), ""]
    lines += ["| concurrency | p50 ms | p95 ms | p99 ms | products/s | errors | queued | decode | wait | stage1 | stage2 "
              "| queue |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["stages"]
        lines.append(f"| {r['concurrency']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
                     f"{r['throughput']:.2f} | {len(r['errors'])} | "
                     + " | ".join(f"{s.get(k, float('nan')):.1f}" for k in STAGES)
                     + " |")
    lines += ["", "Targets (2 cores, default weights): p50 <= 150 ms and p99 <= 400 ms at concurrency 1; "
              ">= 8 products/s at concurrency 8. Stage columns are server-side medians in ms; `queued` is from the call's "
              "arrival to the start of its work, `wait` the time it waited for one of the `pipeline.parallel_runs` "
              "compute slots."]
    return "\n".join(lines)


# -- memory: peak RSS under the worst allowed requests (`agpis bench memory`) ---------------------
def worst_png(side: int, target_bytes: int, seed: int) -> bytes:
    """A side x side PNG of about target_bytes: flat colour with enough noise rows to fill the
    size limit, so that decoding costs the most pixels and the message the most bytes."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((side, side, 3), (200, 30, 30), np.uint8)
    rows = min(side, int(target_bytes * 0.9) // (side * 3))  # noise does not compress: a little over 1 byte per byte
    pixels[:rows] = rng.integers(0, 256, (rows, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_memory_bench(cfg: Config, args) -> int:
    """Start `agpis serve` as its own process, load it with the worst requests the limits allow
    at the configured concurrency, and report its resident memory: before, peak, and after."""
    import socket
    import subprocess
    import sys

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agpis.v1 import agpis_pb2 as pb

    ic, sc = cfg.images, cfg.server
    n = sc.max_candidates
    side = int((min(ic.max_request_pixels // n, ic.max_pixels)) ** 0.5)  # n images fill the pixel allowance
    per_image = min(ic.max_bytes, (sc.max_message_mb << 20) // n - 4096)
    images = [worst_png(side, per_image, seed=i) for i in range(n)]
    assert all(len(d) <= ic.max_bytes for d in images), "the worst image must still be allowed"
    request = pb.GenerateSequenceRequest(product_id="worst", title="Red ceramic mug with handle",
                                         candidates=[pb.Candidate(id=f"c{i}", data=d) for i, d in enumerate(images)],
                                         options=pb.Options(skip_review=True, explain=False))
    clients = args.clients or sc.max_concurrent_rpcs
    print(f"worst allowed request: {n} PNGs of {side}x{side} ({side * side / 1e6:.1f} MP each, "
          f"{n * side * side / 1e6:.0f} MP in all), {request.ByteSize() / 2**20:.1f} MB; "
          f"{clients} clients x {args.rounds} requests", flush=True)

    tmp = tempfile.TemporaryDirectory(prefix="agpis-membench-")
    token = new_token_file(f"{tmp.name}/api-tokens")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = [f"server.port={port}", "server.metrics_port=-1", f"server.api_tokens_file={tmp.name}/api-tokens",
                 f"queue.data_dir={tmp.name}/redis", f"queue.outbox_dir={tmp.name}/outbox",
                 f"queue.image_store={tmp.name}/images", "log.level=WARNING"]
    cmd = [sys.executable, "-m", "agpis.cli", "serve"] + [a for o in overrides for a in ("--set", o)]
    if args.config:
        cmd += ["--config", args.config]
    cmd += [a for o in args.overrides for a in ("--set", o)]  # the caller's settings win
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    codes: dict[str, int] = {}
    try:
        channel = open_channel(f"127.0.0.1:{port}", token=token)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.5)
        stub = pb_grpc.SequenceServiceStub(channel)
        stub.GenerateSequence(products_as_requests(_one_small_product(), explain=False)[0], timeout=120)
        before = _rss_mb(proc.pid)
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
        lock = threading.Lock()

        def client():
            for _ in range(args.rounds):
                try:
                    stub.GenerateSequence(request, timeout=300)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                with lock:
                    codes[code] = codes.get(code, 0) + 1

        wall = run_clients(client, clients)
        peak = _rss_mb(proc.pid, "VmHWM")
        time.sleep(2)
        after = _rss_mb(proc.pid)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(60)
        tmp.cleanup()
    result = {"side": side, "n": n, "mb": request.ByteSize() / 2**20, "clients": clients, "rounds": args.rounds,
              "before": before, "peak": peak, "after": after, "codes": codes, "wall": wall}
    print(f"RSS before {before:.0f} MB, peak {peak:.0f} MB, 2 s after {after:.0f} MB; answers {codes}; "
          f"{wall:.0f} s", flush=True)
    if not args.no_doc:
        path = write_section(ROOT / "docs" / "benchmarks.md", "memory", _memory_markdown(result, cfg, args))
        print(f"wrote {path}")
    return 0


def _one_small_product() -> list[dict]:
    from agpis.data.synth import demo_products

    return demo_products(1, seed=1, size=800)


def _memory_markdown(r: dict, cfg: Config, args) -> str:
    ic, sc = cfg.images, cfg.server
    return "\n".join([
        "## Service memory: peak RSS under the worst allowed requests (`agpis bench memory`)", "",
        f"Measured {date.today()} on {os.cpu_count()} CPU cores. `agpis serve` in its own process; "
        f"{r['clients']} clients (`server.max_concurrent_rpcs`) each sent {r['rounds']} requests of "
        f"{r['n']} PNGs of {r['side']}x{r['side']} px ({r['n'] * r['side'] ** 2 / 1e6:.0f} MP, the "
        f"`images.max_request_pixels` allowance; noise rows fill each to ~{r['mb'] / r['n']:.1f} MB so the "
        f"message is {r['mb']:.0f} MB of the {sc.max_message_mb} MB allowed). "
        f"`images.max_decoding_pixels={ic.max_decoding_pixels}`. "
        f"Command: `agpis bench memory --rounds {r['rounds']}`.", "",
        "| RSS before (warm) | peak RSS | RSS 2 s after | answers | wall s |",
        "|---|---|---|---|---|",
        f"| {r['before']:.0f} MB | {r['peak']:.0f} MB | {r['after']:.0f} MB | "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["codes"].items())) + f" | {r['wall']:.0f} |", "",
        "The bound this checks (deploy/k8s/deployment.yaml): warm process + `max_concurrent_rpcs` x "
        "`max_message_mb` of requests + `max_decoding_pixels` x 8 bytes of decoding must stay under the "
        "pod's 4 GiB limit."])
