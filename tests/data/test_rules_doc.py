"""docs/rules.md is generated from the catalogue and must be up to date."""
from pathlib import Path

from agpis import rules
from agpis.data import rulesdoc

ROOT = Path(__file__).resolve().parents[2]


def test_rules_doc_is_up_to_date():
    assert (ROOT / "docs" / "rules.md").read_text() == rulesdoc.render_markdown(), \
        "docs/rules.md is stale: run `agpis data rules-doc`"


def test_every_template_formats():
    for r in rules.RULES:
        for kind in [None, *dict(r.kinds)]:
            for v in range(len(r.templates(kind))):
                text = rules.feedback(r.id, image=1, images=[0, 2], region="across the top", detail="red",
                                      kind=kind, variant=v)
                assert "{" not in text and text == " ".join(text.split()), text


def test_feedback_lists_every_template():
    """Whoever matches sentences against Rule.feedback (stage2.metrics) must see kind templates."""
    for r in rules.RULES:
        assert r.feedback[:len(r.generic)] == r.generic
        for _, ts in r.kinds:
            assert set(ts) <= set(r.feedback)


def test_class_list_is_stable():
    """Rule ids and their order are a contract: checkpoints store class lists by name."""
    assert rules.CLASSES == (
        "qualified", "text_overlay", "watermark", "logo", "border", "collage_or_inset", "low_resolution", "blurry",
        "bad_exposure", "primary_background_not_white", "primary_product_too_small", "primary_not_whole_product",
        "duplicated_view", "inconsistent_product", "title_mismatch", "improper_order", "insufficient_views", "other")
