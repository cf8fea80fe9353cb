"""The procedural builder end to end: valid output, labels as planned, no split leakage,
deterministic for a seed whatever the number of workers. Needs no ../shared."""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from agpis import rules
from agpis.data import builder, format as fmt, listing, splits
from agpis.data.synth import ProceduralSource


def test_built_dataset_validates(synth_dataset):
    out, summary = synth_dataset
    assert summary["records"] == 48
    total = 0
    for split in fmt.SPLITS:
        path = out / f"{split}.jsonl"
        if path.exists():
            n, errors = fmt.validate_file(path, check_images=True)
            assert errors == []
            total += n
    assert total == 48
    records = fmt.load_dataset(out)
    assert fmt.check_leakage(records) == []
    assert (out / "CARD.md").read_text().startswith("# Dataset card")
    assert json.loads((out / "build.json").read_text())["images"] == summary["images"]


def test_records_are_consistent_with_candidate_meta(synth_dataset):
    out, _ = synth_dataset
    for r in fmt.load_dataset(out):
        meta = r.candidate_meta
        seq = [meta[i] for i in r.sequence]
        assert len(r.sequence) == 3
        if r.label == rules.QUALIFIED:
            assert r.feedback == "yes"
            assert seq[0].primary_ok and all(not m.rules and m.variant == "same" for m in seq)
            assert len({m.dup_group for m in seq}) == 3
        elif rules.category_of(r.label) == "single":
            bad = [m for m in seq if r.label in m.rules]
            assert len(bad) == 1 and r.violation["images"] == [seq.index(bad[0]) + 1]
            assert f"image {r.violation['images'][0]}" in r.feedback
        elif rules.category_of(r.label) == "primary":
            assert not seq[0].primary_ok
        elif r.label == "duplicated_view":
            a, b = (seq[p - 1] for p in r.violation["images"])
            assert a.dup_group == b.dup_group
        elif r.label == "inconsistent_product":
            assert any(m.variant != "same" for m in seq)
        elif r.label == "improper_order":
            assert not seq[0].primary_ok and any(m.primary_ok for m in seq[1:])
        for i, m in enumerate(meta):
            with Image.open(r.path(i)) as im:
                assert list(im.size) == m.size


def test_listing_makes_every_label():
    src = ProceduralSource(n=12, seed=5)
    groups = list(src.groups())
    others = [src.product(g) for g in groups[6:]]
    for k, label in enumerate(rules.CLASSES[:-1]):  # every class but `other`
        lst = listing.make_listing(src.product(groups[k % 6]), f"p{k}", [label], 128, "heldout", seed=k,
                                   others=others)
        (rec,) = lst.records
        assert rec["label"] == label
        assert len(set(rec["sequence"])) == 3
        assert 3 <= len(lst.images) <= 10
        errors = fmt.validate_record({"product_id": "p", "title": rec["title"], "category": lst.category,
                                      "candidates": [f"{i}.jpg" for i in range(len(lst.images))],
                                      "sequence": rec["sequence"], "label": label, "feedback": rec["feedback"],
                                      "source": "synthetic", "reviewed_at": "2026-01-01T00:00:00", "model_version": "",
                                      "candidate_meta": lst.metas, **({"violation": rec["violation"]}
                                                                      if "violation" in rec else {})})
        assert errors == [], (label, errors)


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "build.json" and p.name != "CARD.md":
            h.update(p.relative_to(out).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_deterministic_across_workers(tmp_path):
    spec = [("procedural", {"n": 10, "seed": 1})]
    a = builder.build(spec, builder.BuildConfig(out=str(tmp_path / "a"), records=12, size=96, seed=7, workers=1),
                      progress=False)
    b = builder.build(spec, builder.BuildConfig(out=str(tmp_path / "b"), records=12, size=96, seed=7, workers=2),
                      progress=False)
    assert a["images"] == b["images"]
    assert (tmp_path / "a" / "train.jsonl").read_text().replace("a-0", "X") == \
        (tmp_path / "b" / "train.jsonl").read_text().replace("b-0", "X")
    c = builder.build(spec, builder.BuildConfig(out=str(tmp_path / "c"), records=12, size=96, seed=8, workers=1),
                      progress=False)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_splits_are_by_group_and_stable():
    groups = {f"g{i}": "fruit" if i % 3 else "milk" for i in range(60)}
    a = splits.assign_splits(groups)
    assert a == splits.assign_splits(dict(reversed(list(groups.items()))))  # order does not matter
    counts = Counter(a.values())
    assert counts["train"] == 48 and counts["val"] == 6 and counts["test"] == 6
    for stratum in ("fruit", "milk"):
        assert {a[g] for g, s in groups.items() if s == stratum} == {"train", "val", "test"}
    assert splits.assign_splits({"only": "x"}) == {"only": "train"}
    assert splits.style_split_for("p", "train") == "train"
    assert {splits.style_split_for(f"p{i}", "test") for i in range(50)} == {"train", "heldout"}


def test_plan_never_leaks_and_follows_the_mix():
    src = ProceduralSource(n=40, seed=2)
    cfg = builder.BuildConfig(out="unused", records=4000, seed=1)
    tasks = builder.plan([src], cfg, "x")
    split_of = {}
    labels = Counter()
    for _, pid, group, others, labs, split, style in tasks:
        assert split_of.setdefault(group, split) == split
        assert all(split_of.get(o, split) == split for o in others)
        assert style == "train" or split != "train"
        labels.update(labs)
    assert sum(labels.values()) == 4000
    assert 0.67 < labels["qualified"] / 4000 < 0.75
    multi = sum(labels[r.id] for r in rules.rules_in("multi")) / 4000
    assert 0.07 < multi < 0.13


def test_mix_parsing():
    assert builder.parse_mix("qualified=1,pair=1") == {"qualified": 0.5, "pair": 0.5}
    with pytest.raises(ValueError, match="unknown mix category"):
        builder.parse_mix("good=1")
    with pytest.raises(ValueError, match="positive sum"):
        builder.parse_mix("qualified=0")


def test_styles_are_disjoint():
    from agpis.data import styles

    for table in (styles.FONTS, styles.SHOPS, styles.LOGO_SHAPES, styles.PALETTES, styles.BANNER_POS,
                  styles.CORNERS, styles.BACKDROPS, styles.BORDER_COLOURS):
        assert not set(table["train"]) & set(table["heldout"])
    for lang, text in styles.PROMO:
        assert any(styles.covers(f, text) for f in styles.FONTS["train"]), text
        assert any(styles.covers(f, text) for f in styles.FONTS["heldout"]), text


def test_violations_change_pixels_and_boxes_fit():
    from agpis.data import violations
    from agpis.data.styles import Styles

    src = ProceduralSource(n=3, seed=0)
    p = src.product(next(iter(src.groups())))
    from agpis.data import render

    base, _ = render.compose(p.cutouts["front"], 256, 0.8, random.Random(0))
    for name, fn in violations.SINGLE.items():
        for split in ("train", "heldout"):
            for seed in range(3):
                a = fn(base, random.Random(seed), Styles(split), [base])
                assert a.image is not base and a.image.tobytes() != base.tobytes(), name
                if a.box:
                    x0, y0, x1, y1 = a.box
                    assert 0 <= x0 < x1 <= a.image.width and 0 <= y0 < y1 <= a.image.height, (name, a.box)
