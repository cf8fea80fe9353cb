"""The review queue on Redis Streams (at-least-once, nothing lost).

    producer   XADD review stream, idempotent per (product id, sequence hash)   enqueue()
    reviewer   XREADGROUP in a consumer group; verdict = XACK + XADD decisions,
               atomically, first verdict wins                                    next(), verdict()
    janitor    entries a reviewer held longer than claim_idle_s are handed back:
               XAUTOCLAIM, then re-added as a fresh entry (deliveries + 1), or moved to the
               dead-letter stream once delivered max_deliveries times            janitor()

Stream entry fields: product_id, sequence_hash, deliveries, payload (JSON with everything a
reviewer needs: title, images in order with URIs, scores, removed candidates, model versions).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from agpis import rules
from agpis.config import QueueConfig

# Idempotent add: the dedup key remembers the entry id of (product, sequence) while that entry
# awaits a verdict. A key naming an entry no longer in the stream (left by an older version
# after dead-lettering) is stale: the product is queued anew, never answered with a ghost id.
_ENQUEUE = """
local existing = redis.call('GET', KEYS[2])
if existing and #redis.call('XRANGE', KEYS[1], existing, existing) > 0 then return {0, existing} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[1]))
return {1, id}
"""

# A verdict is stored and the entry acknowledged together; if the entry is no longer pending
# (someone else decided, or the janitor handed it on), nothing is written. The decided entry
# no longer holds the dedup key: the product can be sent to review again (a new title, say).
_VERDICT = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return false end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
"""

# The janitor hands an abandoned entry on, all or nothing: a fresh entry in KEYS[2] (the review
# stream again, or the dead-letter stream), the old one acknowledged and deleted, and the dedup
# key following it (requeued) or released (dead-lettered, so the product can be queued again).
# Nothing happens if a verdict acknowledged the entry meanwhile.
_HAND_ON = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then
  if ARGV[3] == 'dead' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], id, 'KEEPTTL') end
end
return id
"""

DEDUP_TTL_S = 400 * 24 * 3600  # longer than the 3-month retraining window, with margin


class QueueError(RuntimeError):
    pass


class NotPending(QueueError):
    """The entry is not waiting for a verdict (decided already, handed on, or unknown)."""


@dataclass
class ReviewItem:
    entry_id: str
    product_id: str
    deliveries: int
    payload: dict[str, Any]

    @property
    def title(self) -> str:
        return self.payload.get("title", "")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _fields(raw: dict) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


class ReviewQueue:
    def __init__(self, client: redis.Redis, cfg: QueueConfig):
        self.r, self.cfg = client, cfg
        self._enqueue = client.register_script(_ENQUEUE)
        self._verdict = client.register_script(_VERDICT)
        self._hand_on = client.register_script(_HAND_ON)
        self._group_ready = False

    def dedup_key(self, product_id: str, sequence_hash: str) -> str:
        return f"{self.cfg.stream}:seen:{product_id}:{sequence_hash}"

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the stream's start ("0"), so entries added before the group existed are reviewed too.
            self.r.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    # -- producer -------------------------------------------------------------------------------
    def enqueue(self, product_id: str, sequence_hash: str, payload: dict[str, Any]) -> tuple[bool, str]:
        """Add an entry once per (product, sequence). -> (added now?, entry id)."""
        self.ensure_group()
        fields = ["product_id", product_id, "sequence_hash", sequence_hash, "deliveries", "0",
                  "payload", json.dumps(payload, ensure_ascii=False)]
        added, entry_id = self._enqueue(keys=[self.cfg.stream, self.dedup_key(product_id, sequence_hash)],
                                        args=[DEDUP_TTL_S, *fields])
        return bool(added), _s(entry_id)

    # -- reviewer -------------------------------------------------------------------------------
    def next(self, reviewer: str, block_ms: int | None = None) -> ReviewItem | None:
        """The reviewer's entry awaiting a verdict, else a new one; None when the queue is empty.

        An entry this reviewer already holds is shown again without counting a new delivery
        (reloading the page is not abandoning the entry).
        """
        self.ensure_group()
        self.janitor()
        held = self.r.xpending_range(self.cfg.stream, self.cfg.group, min="-", max="+", count=1,
                                     consumername=reviewer)
        if held:
            entry_id = _s(held[0]["message_id"])
            rows = self.r.xrange(self.cfg.stream, entry_id, entry_id)
            if rows:
                return self._item(entry_id, rows[0][1])
            self.r.xack(self.cfg.stream, self.cfg.group, entry_id)  # trimmed away: nothing to review
        resp = self.r.xreadgroup(self.cfg.group, reviewer, {self.cfg.stream: ">"}, count=1, block=block_ms)
        if not resp:
            return None
        entry_id, raw = resp[0][1][0]
        return self._item(_s(entry_id), raw)

    def _item(self, entry_id: str, raw: dict) -> ReviewItem:
        f = _fields(raw)
        return ReviewItem(entry_id, f.get("product_id", ""), int(f.get("deliveries", "0")),
                          json.loads(f.get("payload", "{}")))

    def verdict(self, entry_id: str, reviewer: str, approved: bool, rule: str = "", feedback: str = "") -> str:
        """Store the verdict and acknowledge the entry. -> the decision's stream id.

        Approve: rule is `qualified`, feedback "yes" (the paper's constant). Reject: a rule id
        from the catalogue and a sentence.
        """
        if approved:
            rule, feedback = rules.QUALIFIED, feedback or "yes"
        else:
            if not rules.is_known(rule) or rule == rules.QUALIFIED:
                raise QueueError(f"reject needs a rule from the catalogue; got {rule!r}. "
                                 f"Rules: {', '.join(r.id for r in rules.RULES)}, {rules.OTHER}")
            if not feedback.strip():
                raise QueueError("reject needs a sentence of feedback")
        try:
            rows = self.r.xrange(self.cfg.stream, entry_id, entry_id)
        except redis.ResponseError:
            raise NotPending(f"{entry_id!r} is not a review entry id (they look like 1732000000000-0)") from None
        if not rows:
            raise NotPending(self._not_pending(entry_id))
        item = self._item(entry_id, rows[0][1])
        sequence_hash = _fields(rows[0][1]).get("sequence_hash", "")
        decision = ["entry_id", entry_id, "product_id", item.product_id, "reviewer", reviewer,
                    "verdict", "approve" if approved else "reject", "rule", rule, "feedback", feedback,
                    "decided_at", now_iso(), "payload", json.dumps(item.payload, ensure_ascii=False)]
        decision_id = self._verdict(keys=[self.cfg.stream, self.cfg.decisions_stream,
                                          self.dedup_key(item.product_id, sequence_hash)],
                                    args=[self.cfg.group, entry_id, *decision])
        if not decision_id:
            raise NotPending(self._not_pending(entry_id))
        return _s(decision_id)

    def _not_pending(self, entry_id: str) -> str:
        return (f"entry {entry_id} is not awaiting a verdict: unknown, decided already, or handed to "
                f"another reviewer after {self.cfg.claim_idle_s:g} s idle")

    # -- janitor --------------------------------------------------------------------------------
    def janitor(self) -> dict[str, int]:
        """Hand back entries held too long by a reviewer (crashed, closed the tab, went home)."""
        self.ensure_group()
        counts = {"requeued": 0, "dead_lettered": 0}
        min_idle = int(self.cfg.claim_idle_s * 1000)
        start = "0-0"
        while True:
            start, claimed, deleted = self.r.xautoclaim(self.cfg.stream, self.cfg.group, "janitor", min_idle,
                                                        start_id=start, count=100)
            for entry_id in deleted or []:
                self.r.xack(self.cfg.stream, self.cfg.group, entry_id)
            for entry_id, raw in claimed:
                if raw is None:
                    continue
                f = _fields(raw)
                deliveries = int(f.get("deliveries", "0")) + 1
                if deliveries >= self.cfg.max_deliveries:
                    kind, target = "dead", self.cfg.dead_letter_stream
                    fields = {**f, "deliveries": deliveries, "original_id": _s(entry_id), "dead_at": now_iso()}
                else:
                    kind, target = "requeued", self.cfg.stream
                    fields = {**f, "deliveries": deliveries, "redelivery_of": _s(entry_id)}
                moved = self._hand_on(
                    keys=[self.cfg.stream, target, self.dedup_key(f.get("product_id", ""), f.get("sequence_hash", ""))],
                    args=[self.cfg.group, _s(entry_id), kind, *[x for kv in fields.items() for x in kv]])
                if moved:
                    counts["dead_lettered" if kind == "dead" else "requeued"] += 1
            if _s(start) == "0-0":
                return counts

    # -- numbers --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        self.ensure_group()
        pending = self.r.xpending(self.cfg.stream, self.cfg.group)
        groups = {_s(g["name"]): g for g in self.r.xinfo_groups(self.cfg.stream)}
        g = groups.get(self.cfg.group, {})
        lag = g.get("lag")
        return {
            "stream": self.cfg.stream,
            "entries": self.r.xlen(self.cfg.stream),
            "waiting": int(lag) if lag is not None else None,  # not yet delivered to any reviewer
            "in_review": int(pending["pending"]),  # delivered, no verdict yet
            "reviewers": {_s(c["name"]): int(c["pending"]) for c in pending.get("consumers") or []},
            "decisions": self.r.xlen(self.cfg.decisions_stream),
            "dead_letter": self.r.xlen(self.cfg.dead_letter_stream),
        }

    def depth(self) -> int:
        """Entries not yet decided: waiting plus in review (for the metrics gauge)."""
        s = self.stats()
        return (s["waiting"] or 0) + s["in_review"]

    def decisions(self, start: str = "-", count: int = 1000) -> list[dict[str, Any]]:
        """Verdicts from stream id `start` on ("-": the first; "(ID": after ID; "MS-0": from a time)."""
        rows = self.r.xrange(self.cfg.decisions_stream, min=start, max="+", count=count)
        out = []
        for entry_id, raw in rows:
            f = _fields(raw)
            f["payload"] = json.loads(f.get("payload", "{}"))
            f["decision_id"] = _s(entry_id)
            out.append(f)
        return out


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll until predicate() is true (for tests and shutdown paths)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
