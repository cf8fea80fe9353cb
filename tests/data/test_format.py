"""The AGPIS-data validator and loader: bad lines are rejected with their line number."""
from __future__ import annotations

import copy
import json

import pytest

from agpis.data import format as fmt

GOOD = {
    "product_id": "p1", "title": "Red Apple, 1 kg", "category": "apple",
    "candidates": ["images/p1/0.jpg", "images/p1/1.jpg", "images/p1/2.jpg", "images/p1/3.jpg"],
    "sequence": [0, 2, 3], "label": "text_overlay", "feedback": "image 2 has a promotional text banner across the top",
    "source": "synthetic", "reviewed_at": "2026-01-02T03:04:05+00:00", "model_version": "",
    "split": "train", "style_split": "train", "group": "g1",
    "violation": {"images": [2], "candidates": [2], "region": "across the top", "detail": "SALE"},
    "candidate_meta": [
        {"view": "front", "rules": [], "primary_ok": True, "dup_group": 0, "box": None, "size": [512, 512],
         "variant": "same", "source": "procedural-cutout"},
        {"view": "side", "rules": [], "primary_ok": False, "dup_group": 1, "box": None, "size": [512, 512],
         "variant": "same"},
        {"view": "side", "rules": ["text_overlay"], "primary_ok": False, "dup_group": 1, "box": [0, 0, 512, 80],
         "size": [512, 512], "variant": "same"},
        {"view": "detail", "rules": [], "primary_ok": False, "dup_group": 2, "box": None, "size": [512, 512],
         "variant": "same"},
    ],
}


def _with(**changes):
    rec = copy.deepcopy(GOOD)
    for k, v in changes.items():
        if v is _DROP:
            rec.pop(k)
        else:
            rec[k] = v
    return rec


_DROP = object()


def test_good_record_is_valid():
    assert fmt.validate_record(GOOD) == []
    r = fmt.Record.from_dict(GOOD)
    assert r.candidate_meta[2].rules == ["text_overlay"]
    assert fmt.validate_record(json.loads(fmt.dumps(r))) == []  # round trip


@pytest.mark.parametrize("changes, expect", [
    ({"title": _DROP}, "missing field(s) title"),
    ({"colour": "red"}, "unknown field(s) colour"),
    ({"sequence": [0, 9, 1]}, "index outside"),
    ({"sequence": [0, 0, 1]}, "repeats an index"),
    ({"label": "blurred"}, "'label' 'blurred' is not"),
    ({"label": "qualified"}, "feedback must be 'yes'"),
    ({"source": "scraped"}, "'source' 'scraped'"),
    ({"reviewed_at": "yesterday"}, "not an ISO-8601 time"),
    ({"split": "dev"}, "'split' 'dev'"),
    ({"style_split": "eval"}, "'style_split' 'eval'"),
    ({"candidates": "a.jpg"}, "'candidates' must be list"),
    ({"violation": {"images": [4]}}, "1-based positions"),
])
def test_bad_record_fields(changes, expect):
    errors = fmt.validate_record(_with(**changes))
    assert any(expect in e for e in errors), errors


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: m.pop(), "4 candidates"),
    (lambda m: m[0].update(view="sideways"), "view 'sideways'"),
    (lambda m: m[0].update(rules=["duplicated_view"]), "not single-image rule ids"),
    (lambda m: m[0].update(primary_ok="yes"), "'primary_ok' must be bool"),
    (lambda m: m[2].update(box=[0, 0, 600, 80]), "outside the 512x512 image"),
    (lambda m: m[2].update(box=[10, 10, 5, 80]), "empty or outside"),
    (lambda m: m[1].pop("dup_group"), "missing dup_group"),
    (lambda m: m[1].update(variant="fake"), "variant 'fake'"),
    (lambda m: m[1].update(size=[512]), "size must be"),
])
def test_bad_candidate_meta(mutate, expect):
    rec = copy.deepcopy(GOOD)
    mutate(rec["candidate_meta"])
    errors = fmt.validate_record(rec)
    assert any(expect in e for e in errors), errors


def test_file_errors_carry_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(GOOD), "{not json", json.dumps(_with(label="nope")), "", json.dumps([1, 2]),
             json.dumps(_with(split="test"))]  # same product, other split: leakage
    path.write_text("\n".join(lines) + "\n")
    n, errors = fmt.validate_file(path)
    assert n == 5  # the blank line is not a record
    assert any(e.startswith(f"{path}:2: not valid JSON") for e in errors), errors
    assert any(e.startswith(f"{path}:3: 'label' 'nope'") for e in errors), errors
    assert any(e.startswith(f"{path}:5: a record must be a JSON object") for e in errors), errors
    assert any(e.startswith(f"{path}:6:") and "split leakage" in e for e in errors), errors
    with pytest.raises(fmt.ValidationError) as info:
        fmt.load_records(path)
    assert ":2:" in str(info.value) and len(info.value.errors) == len(errors)


def test_missing_images_are_reported(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    assert fmt.validate_file(path) == (1, [])
    _, errors = fmt.validate_file(path, check_images=True)
    assert len(errors) == 4 and "does not exist" in errors[0]


def test_leakage_across_files():
    a = fmt.Record.from_dict(GOOD)
    b = fmt.Record.from_dict(_with(split="val", product_id="p2"))  # same group "g1"
    assert fmt.check_leakage([a, b]) == ["group 'g1' is in splits 'train' and 'val'"]
    assert fmt.check_leakage([a]) == []


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert fmt.validate_file(path)[1] == [f"{path}: no records"]
