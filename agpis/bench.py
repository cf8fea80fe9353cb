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
STAGES = ("decode", "wait", "stage1", "stage2", "queue")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


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

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
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
    lines += ["| concurrency | p50 ms | p95 ms | p99 ms | products/s | errors | decode | wait | stage1 | stage2 | queue |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["stages"]
        lines.append(f"| {r['concurrency']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | "
                     f"{r['throughput']:.2f} | {len(r['errors'])} | "
                     + " | ".join(f"{s.get(k, float('nan')):.1f}" for k in STAGES)
                     + " |")
    lines += ["", "Targets (2 cores, default weights): p50 <= 150 ms and p99 <= 400 ms at concurrency 1; "
              ">= 8 products/s at concurrency 8. Stage columns are server-side medians in ms; `wait` is the time a "
              "request waited for one of the `pipeline.parallel_runs` compute slots."]
    return "\n".join(lines)
