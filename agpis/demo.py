"""`agpis demo` (README command 1): the whole service end to end on one machine, no network.

Starts an embedded Valkey and the gRPC server on free ports, sends made-up products (drawn by
the project's own code) through GenerateSequence, prints each decision and then what is in
the review queue, and shuts everything down cleanly.
"""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from agpis.client import new_token_file, open_channel
from agpis.config import Config
from agpis.convert import describe
from agpis.v1 import agpis_pb2 as pb
from agpis.v1 import agpis_pb2_grpc as pb_grpc


def products_as_requests(products: list[dict], explain: bool = True) -> list[pb.GenerateSequenceRequest]:
    return [pb.GenerateSequenceRequest(
        product_id=p["product_id"], title=p["title"], category=p.get("category", ""),
        candidates=[pb.Candidate(id=cid, data=data) for cid, data in p["images"]],
        options=pb.Options(explain=explain)) for p in products]


def run_demo(cfg: Config, n_products: int = 8, keep: bool = False) -> int:
    from agpis import logs
    from agpis.data.synth import demo_products
    from agpis.service import AgpisServer

    logs.setup("WARNING", json_lines=False)
    root = Path("var/demo") if keep else Path(tempfile.mkdtemp(prefix="agpis-demo-"))
    if keep and root.exists():
        shutil.rmtree(root)
    cfg = copy.deepcopy(cfg)
    cfg.server.host, cfg.server.port, cfg.server.metrics_port = "127.0.0.1", 0, 0
    cfg.queue.redis_url = None
    cfg.queue.data_dir = str(root / "redis")
    cfg.queue.outbox_dir = str(root / "outbox")
    cfg.queue.image_store = str(root / "images")
    cfg.server.api_tokens_file = str(root / "api-tokens")  # authentication on, as in production
    token = new_token_file(cfg.server.api_tokens_file)

    print(f"== AGPIS demo (data in {root}) ==")
    t0 = time.perf_counter()
    server = AgpisServer(cfg).start()
    try:
        channel = open_channel(server.address, token=token)
        health = health_pb2_grpc.HealthStub(channel)
        print(f"gRPC server on {server.address} (calls carry a bearer token from {cfg.server.api_tokens_file}); "
              f"metrics on http://127.0.0.1:{server.metrics_port}/metrics")
        print(f"health while the models load: {_health(health)}")
        server.wait_ready(timeout=300)
        print(f"health after loading and warm-up ({time.perf_counter() - t0:.1f} s): {_health(health)}")
        print("model versions:", json.dumps(server.models.get().model_versions, indent=None))

        products = demo_products(n_products, seed=0, size=800)
        stub = pb_grpc.SequenceServiceStub(channel)
        print(f"\n== {len(products)} products through GenerateSequence ==")
        for product, request in zip(products, products_as_requests(products)):
            resp = stub.GenerateSequence(request, timeout=60)
            print(_describe(product, resp))

        queue = server.review.queue if server.review else None
        print("\n== review queue ==")
        if queue is None:
            print("(no queue)")
        else:
            stats = queue.stats()
            print(f"{stats['entries']} entries in {stats['stream']}, {stats['waiting']} waiting for a reviewer")
            for entry_id, raw in queue.r.xrange(cfg.queue.stream):
                payload = json.loads(raw[b"payload"])
                print(f"  {entry_id.decode()}  {payload['product_id']:<10} p={payload['p_qualified']:.2f}  "
                      f"{' > '.join(payload['sequence'])}  \"{payload['title'][:50]}\"")
            if keep:
                print(f"review them with:  AGPIS_QUEUE__DATA_DIR={cfg.queue.data_dir} agpis review next"
                      f"   (or agpis review-ui)")
            else:
                print("(the demo's queue is thrown away at exit; `agpis demo --keep` keeps it in var/demo "
                      "for `agpis review` and `agpis review-ui`)")
        channel.close()
    finally:
        server.stop(grace=5)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nshut down cleanly in {time.perf_counter() - t0:.1f} s")
    return 0


def _health(stub) -> str:
    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def _describe(product: dict, resp) -> str:
    status = pb.Status.Name(resp.status)
    head = (f"{resp.product_id:<10} {status:<10} p_qualified={resp.p_qualified:.2f}  "
            f"(made as: {product.get('label', '?')})  \"{product['title'][:60]}\"")
    return "\n".join([head] + describe(resp, "    "))
