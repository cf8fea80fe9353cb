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


def test_a_rejection_of_images_unlike_the_training_data_goes_to_review_marked_uncertain(pipeline, product):
    """The uncertain band: with the real MUIsC and an index whose threshold every sequence
    passes, stage 2's rejection alone does not reject; with one no sequence passes, it does."""
    import numpy as np

    from stage2.novelty import NoveltyIndex

    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 1280)).astype(np.float32)
    index = NoveltyIndex.fit(train, [train[:3], train[3:6]], dims=16)
    s2 = pipeline.stage2
    saved = s2.novelty_index
    try:
        s2.novelty_index = index
        index.threshold = -1.0  # everything is novel
        d = pipeline.generate(product["title"], product["images"], threshold=1.0, explain=False)
        assert d.status == "QUEUED" and d.uncertain and d.novelty > index.threshold
        assert d.predicted_rule and d.feedback  # the model's guess still travels to the reviewer
        assert d.to_dict()["uncertain"] is True
        index.threshold = 3.0  # nothing is
        d = pipeline.generate(product["title"], product["images"], threshold=1.0, explain=False)
        assert d.status == "REJECTED" and not d.uncertain and d.novelty >= 0
        queued = pipeline.generate(product["title"], product["images"], threshold=0.0, explain=False)
        assert queued.status == "QUEUED" and not queued.uncertain  # confident acceptances stay as they are
    finally:
        s2.novelty_index = saved


def test_novelty_is_low_for_training_like_images_and_high_for_others():
    import numpy as np

    from stage2.novelty import NoveltyIndex

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 64)) * 4
    train = np.concatenate([c + rng.normal(size=(80, 64)) for c in centres]).astype(np.float32)
    val = [c + rng.normal(size=(3, 64)) for c in centres for _ in range(8)]
    index = NoveltyIndex.fit(train, val, dims=16, percentile=95)
    alien = rng.normal(size=(3, 64)) * 4 + 40
    assert index.sequence_novelty(alien) > index.threshold > 0
    inside = sum(index.sequence_novelty(s) > index.threshold for s in val)
    assert inside <= 2  # ~5% of 40 held-out sequences like the training data
