"""The review web app end to end in a real headless Chromium, on a real Valkey."""
from __future__ import annotations

import os

import pytest

from agpis.config import Config
from agpis.loop import tokens
from agpis.loop.webapp import ReviewServer
from agpis.pipeline import Decision
from agpis.queue import ReviewQueue
from agpis.review import ReviewSender
from stage1.types import CandidateReport, Removal
from tests.conftest import ROOT

SHOTS = ROOT / "docs" / "screenshots"


def queue_products(queue_cfg, n: int) -> list[dict]:
    """Queue n made-up products the way the service does (images into the content store)."""
    from agpis.data.synth import demo_products

    products = demo_products(n, seed=7, size=400)
    sender = ReviewSender(queue_cfg).start()
    try:
        for p in products:
            ids = [cid for cid, _ in p["images"]]
            d = Decision(product_id=p["product_id"], status="QUEUED", p_qualified=0.42, threshold=0.3,
                         sequence=ids[:3], reports=[CandidateReport(i, 0.5, 0.2) for i in ids], duplicates=[],
                         removed=[Removal(ids[-1], "watermark", "image has a watermark across the middle")],
                         terminated_reason="", predicted_rule="text_overlay",
                         feedback="image 2 has a promotional text banner across the top",
                         model_versions={"model": "test"}, timings_ms={})
            assert sender.send(d, p["title"], p["category"], {cid: (data, None) for cid, data in p["images"]}).state \
                == "ENQUEUED"
    finally:
        sender.close()
    return products


@pytest.fixture
def app(queue_cfg, rclient):
    cfg = Config()
    cfg.queue = queue_cfg
    server = ReviewServer(cfg, port=0).start()
    yield server, tokens.add_reviewer(rclient, "alice"), tokens.add_reviewer(rclient, "bob")
    server.stop()


def sign_in(browser, url, token):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    return page


def test_two_reviewers_approve_and_reject_with_the_keyboard(browser, app, queue_cfg, rclient):
    server, alice_token, bob_token = app
    products = queue_products(queue_cfg, 3)
    alice = sign_in(browser, server.url, alice_token)
    alice.wait_for_selector("#title:not(:empty)")
    assert alice.inner_text("#who") == "signed in as alice"
    first_title = alice.inner_text("#title")
    assert first_title == products[0]["title"]
    # The three images in order, and the removed candidate with its reason, all loaded.
    alice.wait_for_function("[...document.querySelectorAll('#sequence img')].every(i => i.complete && i.naturalWidth > 0)")
    assert alice.locator("#sequence figure").count() == 3
    assert "watermark" in alice.inner_text("#removed")
    assert alice.inner_text("#predRule") == "text_overlay"
    if os.environ.get("AGPIS_WRITE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        alice.screenshot(path=str(SHOTS / "review-ui.png"))

    bob = sign_in(browser, server.url, bob_token)
    bob.wait_for_selector("#title:not(:empty)")
    assert bob.inner_text("#title") == products[1]["title"]  # no double work

    alice.keyboard.press("a")  # approve
    alice.wait_for_function(f"document.getElementById('title').textContent !== {first_title!r}")
    assert alice.inner_text("#title") == products[2]["title"]
    assert alice.inner_text("#statDone") == "1"

    alice.keyboard.press("r")  # reject: the form opens prefilled with the model's rule and feedback
    assert alice.input_value("#rule") == "text_overlay"
    assert alice.input_value("#feedback") == "image 2 has a promotional text banner across the top"
    if os.environ.get("AGPIS_WRITE_SCREENSHOTS"):
        alice.screenshot(path=str(SHOTS / "review-ui-reject.png"), full_page=True)
    alice.select_option("#rule", "watermark")
    alice.fill("#feedback", "image 3 has a semi-transparent watermark in the centre")
    alice.keyboard.press("Control+Enter")
    alice.wait_for_selector("#banner.done")
    assert "queue is empty" in alice.inner_text("#banner")

    decisions = ReviewQueue(rclient, queue_cfg).decisions()
    assert [(d["reviewer"], d["verdict"], d["rule"]) for d in decisions] == \
        [("alice", "approve", "qualified"), ("alice", "reject", "watermark")]
    assert decisions[1]["feedback"] == "image 3 has a semi-transparent watermark in the centre"


def test_bad_token_and_unreachable_queue_are_explained(browser, app, queue_cfg):
    server, _, _ = app
    page = sign_in(browser, server.url, "not-a-token")
    # the sign-in prompt is an error banner too: wait for the server's answer to replace it
    page.wait_for_selector("#banner.error:has-text('unknown token')", timeout=10_000)
    assert "unknown token" in page.inner_text("#banner")

    cfg = Config()
    cfg.queue = queue_cfg
    cfg.queue.redis_url = "redis://127.0.0.1:1/0"  # nothing listens there
    down = ReviewServer(cfg, port=0).start()
    try:
        page = browser.new_page()
        page.goto(down.url)
        page.evaluate("document.cookie = 'agpis_token=x'")
        page.goto(down.url)
        page.wait_for_selector("#banner.error:has-text('review queue is unreachable')", timeout=10_000)
        assert "review queue is unreachable" in page.inner_text("#banner")
    finally:
        down.stop()


@pytest.mark.slow
def test_fifty_sequences_by_keyboard_alone(browser, app, queue_cfg, rclient):
    """The acceptance's '50 sequences in a few minutes': one key per approval, R + Ctrl+Enter
    when the model's prefilled rule and feedback are right. Machine time is printed; a person
    adds the seconds of looking at each sequence."""
    import time

    server, alice_token, _ = app
    products = queue_products(queue_cfg, 50)
    page = sign_in(browser, server.url, alice_token)
    t0 = time.perf_counter()
    for n, product in enumerate(products):
        page.wait_for_function(f"document.getElementById('title').textContent === {product['title']!r}")
        if product["label"] == "qualified":
            page.keyboard.press("a")
        else:
            page.keyboard.press("r")
            page.keyboard.press("Control+Enter")
        page.wait_for_function(f"document.getElementById('statDone').textContent === '{n + 1}'")
    page.wait_for_selector("#banner.done")
    elapsed = time.perf_counter() - t0
    print(f"50 verdicts through the web app in {elapsed:.1f} s of machine time")
    if os.environ.get("AGPIS_WRITE_SCREENSHOTS"):
        page.screenshot(path=str(SHOTS / "review-ui-50-done.png"))
    decisions = ReviewQueue(rclient, queue_cfg).decisions()
    assert len(decisions) == 50
    assert sum(d["verdict"] == "approve" for d in decisions) == sum(p["label"] == "qualified" for p in products)
    assert ReviewQueue(rclient, queue_cfg).stats()["in_review"] == 0
