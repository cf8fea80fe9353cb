"""The review queue against a real Valkey: idempotency, verdicts, crashed reviewers, dead letters."""
from __future__ import annotations

import time

import pytest

from agpis.queue import NotPending, QueueError, ReviewQueue


def payload(pid: str) -> dict:
    return {"product_id": pid, "title": f"Product {pid}", "sequence": ["a", "b", "c"], "p_qualified": 0.8}


def test_enqueue_is_idempotent_per_product_and_sequence(queue_cfg, rclient):
    q = ReviewQueue(rclient, queue_cfg)
    added, first = q.enqueue("p1", "h1", payload("p1"))
    again, second = q.enqueue("p1", "h1", payload("p1"))
    other, third = q.enqueue("p1", "h2", payload("p1"))  # another sequence of the same product
    assert (added, again, other) == (True, False, True)
    assert first == second != third
    assert q.stats()["entries"] == 2


def test_review_approve_and_reject_store_verdicts_once(queue_cfg, rclient):
    q = ReviewQueue(rclient, queue_cfg)
    q.enqueue("p1", "h", payload("p1"))
    q.enqueue("p2", "h", payload("p2"))
    a = q.next("alice")
    assert a.product_id == "p1" and a.title == "Product p1"
    assert q.next("alice").entry_id == a.entry_id  # still hers until she decides; no new delivery
    b = q.next("bob")
    assert b.product_id == "p2"  # no double work
    q.verdict(a.entry_id, "alice", approved=True)
    q.verdict(b.entry_id, "bob", approved=False, rule="watermark", feedback="image 2 has a watermark")
    with pytest.raises(NotPending):
        q.verdict(a.entry_id, "alice", approved=True)  # a second verdict is refused
    decisions = q.decisions()
    assert [(d["product_id"], d["verdict"], d["rule"]) for d in decisions] == \
        [("p1", "approve", "qualified"), ("p2", "reject", "watermark")]
    assert decisions[1]["payload"]["title"] == "Product p2"
    s = q.stats()
    assert (s["in_review"], s["waiting"], s["decisions"]) == (0, 0, 2)
    assert q.next("carol") is None


def test_reject_needs_a_catalogue_rule_and_feedback(queue_cfg, rclient):
    q = ReviewQueue(rclient, queue_cfg)
    q.enqueue("p1", "h", payload("p1"))
    item = q.next("alice")
    with pytest.raises(QueueError, match="rule from the catalogue"):
        q.verdict(item.entry_id, "alice", approved=False, rule="ugly", feedback="x")
    with pytest.raises(QueueError, match="feedback"):
        q.verdict(item.entry_id, "alice", approved=False, rule="watermark", feedback="  ")
    with pytest.raises(NotPending, match="not awaiting a verdict"):
        q.verdict("1-1", "alice", approved=True)
    with pytest.raises(NotPending, match="not a review entry id"):
        q.verdict("garbage", "alice", approved=True)
    assert q.stats()["in_review"] == 1  # the failed attempts lost nothing


def test_crashed_reviewer_entry_is_redelivered(queue_cfg, rclient):
    queue_cfg.claim_idle_s = 0.2
    q = ReviewQueue(rclient, queue_cfg)
    q.enqueue("p1", "h", payload("p1"))
    held = q.next("crashing-reviewer")  # ...who never answers
    assert q.next("bob") is None
    time.sleep(0.3)
    again = q.next("bob")  # the janitor handed it back
    assert again is not None and again.product_id == "p1" and again.deliveries == 1
    added, entry = q.enqueue("p1", "h", payload("p1"))  # idempotency follows the re-delivered entry
    assert not added and entry == again.entry_id
    with pytest.raises(NotPending, match="not awaiting a verdict"):
        q.verdict(held.entry_id, "crashing-reviewer", approved=True)  # the late verdict is refused
    q.verdict(again.entry_id, "bob", approved=True)
    assert q.stats()["decisions"] == 1 and q.stats()["in_review"] == 0


def test_poison_entry_goes_to_dead_letter(queue_cfg, rclient):
    queue_cfg.claim_idle_s, queue_cfg.max_deliveries = 0.05, 3
    q = ReviewQueue(rclient, queue_cfg)
    q.enqueue("p1", "h", payload("p1"))
    for n in range(3):
        assert q.next(f"reviewer{n}") is not None, n
        time.sleep(0.08)
    assert q.next("last") is None
    s = q.stats()
    assert s["dead_letter"] == 1 and s["in_review"] == 0
    dead = rclient.xrange(queue_cfg.dead_letter_stream)
    assert dead[0][1][b"product_id"] == b"p1" and dead[0][1][b"deliveries"] == b"3"


def test_dead_lettered_product_can_be_queued_again(queue_cfg, rclient):
    """Regression (issue 15, defect 5): after dead-lettering, the same product got
    ALREADY_ENQUEUED with the id of a deleted entry, for the 400 days the key lives."""
    queue_cfg.claim_idle_s, queue_cfg.max_deliveries = 0.05, 1
    q = ReviewQueue(rclient, queue_cfg)
    _, first = q.enqueue("p1", "h", payload("p1"))
    assert q.next("vanishing-reviewer").entry_id == first
    time.sleep(0.08)
    assert q.janitor()["dead_lettered"] == 1
    added, second = q.enqueue("p1", "h", payload("p1"))
    assert added and second != first
    assert rclient.xrange(queue_cfg.stream, second, second)  # names an entry that exists


def test_decided_product_can_be_sent_to_review_again(queue_cfg, rclient):
    q = ReviewQueue(rclient, queue_cfg)
    _, first = q.enqueue("p1", "h", payload("p1"))
    q.verdict(q.next("alice").entry_id, "alice", approved=False, rule="watermark", feedback="image 2 has a watermark")
    added, second = q.enqueue("p1", "h", payload("p1"))  # the seller fixed it and sent it again
    assert added and second != first and q.next("alice").entry_id == second


def test_a_stale_dedup_key_never_names_a_missing_entry(queue_cfg, rclient):
    """Keys left behind by dead-lettering before the fix point at deleted entries."""
    q = ReviewQueue(rclient, queue_cfg)
    q.ensure_group()
    rclient.set(q.dedup_key("p1", "h"), "1-1", ex=60)
    added, entry = q.enqueue("p1", "h", payload("p1"))
    assert added and entry != "1-1"
