"""`agpis eval listings`, the real-listing benchmark (skipped without ../shared)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from agpis import cli, listings_eval as le


@pytest.fixture(scope="module")
def val_listings(shared_dir):
    styles, split_of, lists = le.catalogue_listings("val", shared_dir / "data")
    assert len(lists) >= 2
    return styles, split_of, lists


@pytest.mark.shared
def test_variants_are_deterministic_and_what_they_say(val_listings):
    styles, split_of, lists = val_listings
    lst = lists[0]
    a = le.catalogue_cases(lst, styles, split_of)
    b = le.catalogue_cases(lst, styles, split_of)
    assert [c.variant for c in a] == list(le.VARIANTS)  # this style has other colours: all five variants
    for x, y in zip(a, b):
        assert x.title == y.title and x.info == y.info and x.images == y.images  # bytes and order alike
    by = {c.variant: c for c in a}
    clean = by["clean"]
    paths = [p for _, p in clean.images]
    assert paths == list(dict.fromkeys(im.path for im in lst.images)) and clean.main_id == clean.images[0][0]
    assert lst.images[0].view == "front"

    # the other-colour photo: the main photo of another colour of the same style, not in the listing
    oc = by["other_colour"]
    assert oc.info["source"] == "same style" and oc.info["style"] == lst.style.style
    assert oc.info["colour"] != lst.colour and oc.info["path"] == lst.style.colours[oc.info["colour"]][0].path
    assert oc.info["path"] not in paths and dict(oc.images)[oc.distractor_id] == oc.info["path"]

    # the zoom crop: 65-90% of the main view, resized back
    zc = by["zoom_crop"]
    main = le._load_rgb(paths[0])
    crop = Image.open(io.BytesIO(dict(zc.images)[zc.distractor_id])).convert("RGB")
    assert crop.size == main.size and 0.65 <= zc.info["keep"] <= 0.9 and zc.info["of"] == clean.main_id
    expect = main.crop(tuple(zc.info["box"])).resize(main.size, Image.LANCZOS)
    assert np.abs(np.asarray(crop, np.int16) - np.asarray(expect, np.int16)).mean() < 3
    assert np.abs(np.asarray(crop, np.int16) - np.asarray(main, np.int16)).mean() > 3  # not the main itself

    ov = by["overlay"]
    assert ov.info["rule"] in le.OVERLAY_RULES and ov.info["of"] in clean.clean_ids
    for v in (oc, zc, ov):  # the clean photos stay, in order, the main first; one image added after it
        ids = [i for i, _ in v.images]
        assert ids[0] == clean.main_id and [i for i in ids if i != v.distractor_id] == clean.clean_ids

    tc = by["title_colour"]
    assert tc.images == clean.images and tc.info["colour"] in lst.style.colours and tc.info["colour"] != lst.colour
    assert tc.info["colour"].title() in tc.title and tc.title != clean.title

    # the infographic-only listing: every photo remade (text or collage), none of them clean
    ig = by["infographic"]
    assert len(ig.images) == len(clean.images) and ig.clean_ids == [] and ig.title == clean.title
    assert all(k.split(":")[0] in le.INFOGRAPHIC_RULES for k in ig.info["kinds"])
    for (_, made), path in zip(ig.images, paths):
        assert np.abs(np.asarray(Image.open(io.BytesIO(made)).convert("RGB"), np.int16)
                      - np.asarray(le._load_rgb(path), np.int16)).mean() > 1  # changed, not a re-encode


@pytest.mark.shared
@pytest.mark.slow
def test_eval_listings_small(shared_dir, tmp_path, capsys):
    out, jdir = tmp_path / "evaluation.md", tmp_path / "eval"
    assert cli.main(["eval", "listings", "--split", "val", "--limit", "2", "--quiet",
                     "--out", str(out), "--json-dir", str(jdir)]) == 0
    text = out.read_text()
    assert "<!-- BEGIN listings-val -->" in text and "<!-- BEGIN listings-abo-jd -->" in text
    assert "agpis eval listings --split val" in text and "on real photos" in text and " of 2 (" in text

    data = json.loads((jdir / "listings-val.json").read_text())
    recs, s = data["listings"], data["summary"]
    clean = [r for r in recs if r["variant"] == "clean"]
    assert len(clean) == 2 == s["listings"] and len(recs) == s["runs"] >= 8
    st = s["status"]["clean"]
    assert st["QUEUED"] + st["REJECTED"] + st["TERMINATED"] == len(clean)
    assert s["queued"] == [st["QUEUED"], 2] and s["clean_removed"][1] == sum(len(r["candidates"]) for r in clean)
    for v in le.DISTRACTORS:
        rs = [r for r in recs if r["variant"] == v]
        assert s["caught"][v][0] + s["reaching"][v][0] == len(rs) == s["caught"][v][1]
        for r in rs:
            assert r["distractor"] in r["candidates"]
            assert r["distractor_in_sequence"] == (r["distractor"] in r["sequence"])
            assert r["distractor_queued"] == (r["distractor_in_sequence"] and r["status"] == "QUEUED")
    for r in recs:
        assert r["status"] in ("QUEUED", "REJECTED", "TERMINATED") and r["model"] == data["model"]
        assert (r["status"] == "TERMINATED") == bool(r["terminated_reason"])
        assert r["primary_is_main"] == (r["status"] != "TERMINATED" and r["sequence"][:1] == [r["main"]])

    other = json.loads((jdir / "listings-abo-jd.json").read_text())["listings"]
    assert {r["variant"] for r in other} == {"abo", "jd-clean", "jd-with-004"}
    jd = {r["variant"]: r for r in other if r["group"] == "jd"}
    assert "004" not in jd["jd-clean"]["candidates"] and "004" in jd["jd-with-004"]["candidates"]
    assert "clean listings QUEUED" in capsys.readouterr().out


def test_missing_catalogue_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "listings", "--shared", str(tmp_path), "--no-docs", "--json-dir", str(tmp_path)])
    assert e.value.code not in (0, None) and "magento" in str(e.value.code)
