"""A bounded fuzz run through the real server: 300 mutated JPEG, PNG and WebP files (fixed seed),
each beside two intact candidates so that what still decodes goes through the whole pipeline.
Every answer must be OK or INVALID_ARGUMENT naming the mutated candidate, and the server must
still be SERVING at the end."""
from __future__ import annotations

import io
import random
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from agpis.service import AgpisServer
from agpis.v1 import agpis_pb2_grpc as pb_grpc
from tests.service.helpers import connect, request
from tests.service.test_hardening import hardening_config

pytestmark = pytest.mark.slow

INPUTS, SEED = 300, 15


def encoded(pixels, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of the ways files arrive broken: flipped bytes, a cut, a repeated or foreign block,
    a rewritten header (sizes, chunk lengths, markers)."""
    b = bytearray(data)
    kind = rng.choice(["flip", "truncate", "repeat", "insert", "header"])
    if kind == "flip":
        for _ in range(rng.randint(1, 12)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "truncate":
        del b[rng.randint(1, len(b) - 1):]
    elif kind == "repeat":
        i, n = rng.randrange(len(b)), rng.randint(1, 2000)
        b[i:i] = b[i:i + n]
    elif kind == "insert":
        b[rng.randrange(len(b)):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(64, len(b)))] = rng.randrange(256)
    return bytes(b)


def test_mutated_images_are_answered_ok_or_invalid_argument(valkey, tmp_path, small_product):
    from agpis.samples import warmup_images

    seeds = [encoded(im.pixels[::2, ::2].copy(), fmt) for im in warmup_images(3, size=400)
             for fmt in ("JPEG", "PNG", "WEBP")]
    rng = random.Random(SEED)
    inputs = [mutate(rng.choice(seeds), rng) for _ in range(INPUTS)]
    srv = AgpisServer(hardening_config(valkey, tmp_path), review=False).start().wait_ready(timeout=300)
    codes: Counter = Counter()
    try:
        with connect(srv.address) as ch:
            stub = pb_grpc.SequenceServiceStub(ch)
            for i, data in enumerate(inputs):
                product = [("intact-a", seeds[0]), ("intact-b", seeds[4]), ("mutated", data)]
                try:
                    stub.GenerateSequence(request(product, pid=f"fuzz{i}", explain=False, skip_review=True), timeout=60)
                    codes["OK"] += 1
                except grpc.RpcError as e:
                    codes[e.code().name] += 1
                    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (i, e.code(), e.details())
                    assert "candidate 'mutated'" in e.details(), e.details()
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert stub.GenerateSequence(request(small_product, pid="after", skip_review=True), timeout=60).status
    finally:
        srv.stop(grace=2)
    print(f"fuzz: {INPUTS} mutated inputs: {dict(codes)}")
    assert codes["OK"] and codes["INVALID_ARGUMENT"]  # both kinds occurred: the mutations bite, not all
