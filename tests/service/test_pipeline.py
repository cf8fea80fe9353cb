"""The pipeline's use of stage 2: every proposed sequence scored, the best kept, and the
feedback sentence generated for the kept sequence when it is rejected (or asked for)."""
from __future__ import annotations

import pytest

from agpis import Pipeline

@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.load("default")


@pytest.fixture(scope="module")
def product():
    from agpis.data.synth import demo_products

    return demo_products(1, seed=0, size=800)[0]  # a clean product: stage 1 proposes sequences


def test_a_rejection_carries_its_feedback_sentence_even_without_explanations(pipeline, product):
    images = product["images"]
    rejected = pipeline.generate(product["title"], images, threshold=1.0, explain=False)
    assert rejected.status == "REJECTED"
    assert rejected.predicted_rule and rejected.feedback and rejected.feedback != "yes"
    # the kept sequence is the best scored one, and its score is the decision's
    assert rejected.sequence == rejected.alternatives[0].ids
    assert rejected.p_qualified == max(a.p_qualified for a in rejected.alternatives)

    queued = pipeline.generate(product["title"], images, threshold=0.0, explain=False)
    assert queued.status == "QUEUED" and queued.feedback == ""
    assert queued.p_qualified == pytest.approx(rejected.p_qualified, abs=1e-6)
    explained = pipeline.generate(product["title"], images, threshold=0.0, explain=True)
    assert explained.feedback


def test_compute_slots_serve_waiters_in_arrival_order_and_give_up_on_a_deadline():
    import threading
    import time

    from agpis.pipeline import _Slots

    slots, order, started = _Slots(1), [], []
    slots.acquire(lambda: None)  # the one slot is taken

    def waiter(name):
        started.append(name)
        slots.acquire(lambda: None)
        order.append(name)
        slots.release()

    threads = []
    for name in "abc":
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        while name not in started:
            time.sleep(0.001)
        time.sleep(0.02)  # each waiter is queued before the next arrives

    class Late(Exception):
        pass

    def deadline():
        raise Late

    with pytest.raises(Late):
        slots.acquire(deadline)  # gives its place up instead of waiting for ever
    slots.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c"]
    slots.acquire(lambda: None)  # nothing leaked: the slot is free again
    slots.release()
