"""Sending decisions to review without ever losing one or blocking a call on Redis.

The service calls `send()` for every QUEUED decision. When Redis answers, the entry is added
(idempotently); when it does not, the entry goes to the local outbox, the call answers PENDING
at once, and from then on new entries skip Redis (no connect timeout per call) until the
background flusher gets through again and delivers the outbox.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import redis

from agpis import metrics
from agpis.config import QueueConfig
from agpis.imagestore import ImageStore
from agpis.outbox import Outbox
from agpis.pipeline import Decision, ReviewInfo
from agpis.queue import ReviewQueue, now_iso
from agpis.redisconn import RedisHandle, RedisUnavailable

log = logging.getLogger("agpis.review")


def payload_for(decision: Decision, title: str, category: str, uris: dict[str, str]) -> dict[str, Any]:
    """Everything a reviewer needs, and everything retraining needs from a verdict."""
    reports = {r.id: r for r in decision.reports}
    return {
        "product_id": decision.product_id,
        "title": title,
        "category": category,
        "sequence": decision.sequence,
        "candidates": [{"id": cid, "uri": uris.get(cid, ""), "p_primary": round(r.p_primary, 4),
                        "p_noncompliant": round(r.p_noncompliant, 4),
                        "findings": [{"rule": f.rule, "score": round(f.score, 4), "message": f.message,
                                      "box": list(f.box) if f.box else None} for f in r.findings]}
                       for cid, r in reports.items()],
        "removed": [{"id": r.id, "rule": r.rule, "reason": r.reason} for r in decision.removed],
        "duplicates": [{"id_a": d.id_a, "id_b": d.id_b, "score": round(d.score, 4), "removed_id": d.removed_id}
                       for d in decision.duplicates],
        "p_qualified": round(decision.p_qualified, 4),
        "threshold": decision.threshold,
        "predicted_rule": decision.predicted_rule,
        "feedback": decision.feedback,
        # Sent although stage 2 would reject: its images are far from the training data.
        "uncertain": decision.uncertain,
        "novelty": round(decision.novelty, 4),
        "model_versions": decision.model_versions,
        "sequence_hash": decision.sequence_hash,
        "created_at": now_iso(),
    }


def entry_for(decision: Decision, title: str, category: str, uris: dict[str, str]) -> dict[str, Any]:
    """A review entry: its idempotency key (product id + sequence hash) and its payload."""
    return {"product_id": decision.product_id, "sequence_hash": decision.sequence_hash,
            "payload": payload_for(decision, title, category, uris)}


class ReviewSender:
    def __init__(self, cfg: QueueConfig):
        self.cfg = cfg
        self.outbox = Outbox(cfg.outbox_dir)
        self.images = ImageStore(cfg.image_store)
        self._handle: RedisHandle | None = None
        self._queue: ReviewQueue | None = None
        self._up = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "ReviewSender":
        self._connect()
        self._thread = threading.Thread(target=self._loop, name="review-flusher", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self.flush()  # last chance before the embedded server stops
        except Exception:  # noqa: BLE001 - whatever is left stays in the outbox for next time
            pass
        if self._handle:
            self._handle.close()

    @property
    def queue(self) -> ReviewQueue | None:
        return self._queue

    def _connect(self) -> bool:
        with self._lock:
            if self._queue is None:
                try:
                    self._handle = RedisHandle(self.cfg)
                    self._queue = ReviewQueue(self._handle.client, self.cfg)
                except (RedisUnavailable, redis.RedisError, OSError) as e:
                    log.error("review queue unavailable; entries will wait in the outbox",
                              extra={"error": str(e), "outbox": str(self.outbox.dir)})
                    self._set_up(False)
                    return False
            try:
                self._handle.client.ping()
                self._queue._group_ready = False  # a restarted Redis may have lost the group
                self._queue.ensure_group()
                self._set_up(True)
            except redis.RedisError as e:
                self._set_up(False)
                log.warning("review queue unreachable", extra={"where": self._handle.where, "error": str(e)})
        return self._up

    def _set_up(self, up: bool) -> None:
        if up != self._up:
            log.info("review queue is " + ("reachable" if up else "DOWN: sending to the outbox"))
        self._up = up
        metrics.REDIS_UP.set(1 if up else 0)

    # -- sending ----------------------------------------------------------------------------------
    def send(self, decision: Decision, title: str, category: str,
             sources: dict[str, tuple[bytes | None, str | None]]) -> ReviewInfo:
        """Queue one decision. `sources`: candidate id -> (encoded bytes or None, URI or None)."""
        uris = {cid: uri or self.images.put(data) for cid, (data, uri) in sources.items()}
        return self.send_entry(entry_for(decision, title, category, uris))

    def send_entry(self, entry: dict[str, Any]) -> ReviewInfo:
        """Queue one entry built by `entry_for` (`agpis batch` builds it in a worker, sends it here)."""
        if self._up and self._queue is not None:
            try:
                added, entry_id = self._queue.enqueue(entry["product_id"], entry["sequence_hash"], entry["payload"])
                return ReviewInfo("ENQUEUED" if added else "ALREADY_ENQUEUED", entry_id, self.cfg.stream)
            except redis.RedisError as e:
                metrics.ERRORS.labels("redis").inc()
                log.warning("enqueue failed; kept in the outbox", extra={"product_id": entry["product_id"],
                                                                          "error": str(e)})
                self._set_up(False)
        self.outbox.put(self._outbox_key(entry), entry)
        metrics.OUTBOX.set(len(self.outbox))
        return ReviewInfo("PENDING", "", self.cfg.stream)

    @staticmethod
    def _outbox_key(entry: dict) -> str:
        return hashlib.sha256(f"{entry['product_id']}\0{entry['sequence_hash']}".encode()).hexdigest()[:32]

    def flush(self) -> int:
        if not len(self.outbox):
            return 0
        if not self._connect():
            return 0
        try:
            sent = self.outbox.flush(lambda e: self._queue.enqueue(e["product_id"], e["sequence_hash"], e["payload"]))
        except redis.RedisError as e:
            self._set_up(False)
            log.warning("outbox flush stopped: Redis still unreachable", extra={"error": str(e)})
            return 0
        finally:
            metrics.OUTBOX.set(len(self.outbox))
        if sent:
            log.info("delivered entries from the outbox", extra={"count": sent})
        return sent

    def _loop(self) -> None:
        last_janitor = 0.0
        while not self._stop.wait(self.cfg.outbox_retry_s):
            try:
                self.flush() if len(self.outbox) else self._connect()
                if self._up and self._queue is not None:
                    if time.monotonic() - last_janitor > max(1.0, self.cfg.claim_idle_s / 4):
                        moved = self._queue.janitor()
                        last_janitor = time.monotonic()
                        if any(moved.values()):
                            log.info("janitor handed back idle entries", extra=moved)
                    metrics.QUEUE_DEPTH.set(self._queue.depth())
            except redis.RedisError as e:
                self._set_up(False)
                log.debug("review loop: Redis unreachable", extra={"error": str(e)})
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("review loop error")
