"""The learned stage 1 from the committed weights (weights/default/stage1), as the service runs it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import stage1
from agpis import rules
from agpis.config import ImagesConfig
from stage1.config import Stage1Config
from stage1.paths import DEFAULT_STAGE1_DIR
from stage1.types import CandidateImage, Stage1Result

GOLDEN = DEFAULT_STAGE1_DIR.parents[2] / "tests" / "stage1" / "golden_stage1.json"


@pytest.fixture(scope="module")
def model():
    if not (DEFAULT_STAGE1_DIR / "stage1.json").is_file():
        pytest.fail("weights/default/stage1 is not committed; run `agpis train stage1`")
    return stage1.load(DEFAULT_STAGE1_DIR, Stage1Config())


@pytest.fixture(scope="module")
def products():
    from agpis.data.synth import demo_products
    from agpis.images import decode

    out = []
    for p in demo_products(4, seed=0, size=600):
        out.append((p, [decode(cid, data, ImagesConfig()) for cid, data in p["images"]]))
    return out


def test_import_stays_cheap():
    import subprocess
    import sys

    code = "import sys, stage1.types, stage1; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_result_contract(model, products):
    for p, ims in products:
        res = model.run(ims, 3)
        assert isinstance(res, Stage1Result)
        ids = [im.id for im in ims]
        assert [r.id for r in res.reports] == ids
        for r in res.reports:
            assert 0.0 <= r.p_primary <= 1.0 and 0.0 <= r.p_noncompliant <= 1.0
            for f in r.findings:
                assert rules.is_known(f.rule), f.rule
                assert 0.0 <= f.score <= 1.0 and f.source and f.message
                if f.box is not None:
                    w, h = next(im.orig_size for im in ims if im.id == r.id)
                    x0, y0, x1, y1 = f.box
                    assert all(isinstance(v, int) for v in f.box)
                    assert 0 <= x0 < x1 <= w + 1 and 0 <= y0 < y1 <= h + 1
        for rm in res.removed:
            assert rm.id in ids and rm.rule in rules.BY_ID and rm.reason
            assert rm.id != res.primary_id, "the primary is never removed"
        for d in res.duplicates:
            assert d.removed_id in ("", d.id_a, d.id_b) and d.removed_id != res.primary_id
        # stage 2's contract: the frozen backbone's final map, per candidate
        assert set(res.features) == set(ids)
        for f in res.features.values():
            assert f.shape == (49, 1280) and f.dtype == np.float32
        if res.terminated_reason is None:
            assert res.primary_id is not None and res.sequences
            removed = {rm.id for rm in res.removed}
            assert res.sequences[0][0] == res.primary_id  # the primary's sequences come first
            p_primary = {r.id: r.p_primary for r in res.reports}
            for seq in res.sequences:  # ... then a runner-up primary's (stage1.alternative_primaries)
                assert seq[0] == res.primary_id or p_primary[seq[0]] > 0.5
                assert len(seq) == 3 and len(set(seq)) == 3
                assert not removed & set(seq)
        else:
            assert res.terminated_reason in rules.TERMINATION_REASONS and res.sequences == []
        for step in ("resize", "backbone", "proposals", "checks", "heads"):
            assert step in res.timings_ms


def test_termination_reasons(model, products):
    dark = [CandidateImage(f"d{i}", np.full((300, 300, 3), 10 * i, np.uint8), (300, 300)) for i in range(4)]
    assert model.run(dark, 3).terminated_reason == "no_primary"
    _, ims = products[0]
    res = model.run(ims, 3)
    if res.primary_id is not None:  # ask for more images than survive stage 1
        assert model.run(ims, len(ims) + 1).terminated_reason == "too_few_images"


def test_bad_input(model):
    with pytest.raises(ValueError, match="uint8"):
        model.run([CandidateImage("a", np.zeros((50, 50, 3), np.float32), (50, 50))], 3)
    with pytest.raises(ValueError, match="too small"):
        model.run([CandidateImage("a", np.zeros((4, 50, 3), np.uint8), (50, 4))], 3)
    with pytest.raises(ValueError, match="k must be"):
        model.run([CandidateImage("a", np.zeros((50, 50, 3), np.uint8), (50, 50))], 0)


def test_checkpoint_loads_strictly(tmp_path):
    d = tmp_path / "stage1"
    shutil.copytree(DEFAULT_STAGE1_DIR, d)
    m = json.loads((d / "stage1.json").read_text())
    m["heads"]["sha256"] = "0" * 64
    (d / "stage1.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="sha256"):
        stage1.load(d, Stage1Config())
    with pytest.raises(FileNotFoundError):
        stage1.load(tmp_path, Stage1Config())
    with pytest.raises(ValueError, match="decisive_checks"):
        stage1.load(DEFAULT_STAGE1_DIR, Stage1Config(decisive_checks=["nonsense"]))


def test_thresholds_come_from_the_config(model, products):
    _, ims = products[0]
    strict = stage1.load(DEFAULT_STAGE1_DIR, Stage1Config(primary_threshold=1.0))
    assert strict.run(ims, 3).terminated_reason == "no_primary"
    remove_all = stage1.load(DEFAULT_STAGE1_DIR, Stage1Config(noncompliant_threshold=0.0))
    res = remove_all.run(ims, 3)
    assert len(res.removed) == len(ims) and res.terminated_reason == "no_primary"


def test_golden_outputs_of_the_shipped_weights(model, products):
    """Probabilities on drawn products match those recorded when the weights were committed."""
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN} missing; regenerate with tests/stage1/make_golden.py")
    golden = json.loads(GOLDEN.read_text())
    assert golden["version"] == model.version, "new weights: regenerate the golden file"
    for (p, ims), expected in zip(products, golden["products"]):
        res = model.run(ims, 3)
        got = {r.id: [r.p_primary, r.p_noncompliant] for r in res.reports}
        for cid, (pp, pn) in expected["probs"].items():
            assert got[cid][0] == pytest.approx(pp, abs=0.03) and got[cid][1] == pytest.approx(pn, abs=0.03), cid


def test_service_pipeline_runs_the_learned_stage1(products):
    """The service's Pipeline with the default model version uses this stage 1 (manifest)."""
    from agpis.models import read_manifest, resolve
    from agpis.pipeline import Pipeline

    manifest = read_manifest(resolve("default"))
    if manifest["stage1"].get("kind") != "learned":
        pytest.fail("weights/default/manifest.json does not select the learned stage 1")
    pipe = Pipeline.load("default")
    assert not pipe.stage1.version.startswith("stage1-placeholder")
    p, ims = products[0]
    decision = pipe.run(p["product_id"], p["title"], ims)
    direct = pipe.stage1.run(ims, 3)
    if direct.terminated_reason is None:
        assert decision.sequence[0] == direct.primary_id
    else:
        assert decision.terminated_reason == direct.terminated_reason
    assert any(k.startswith("stage1.") for k in decision.timings_ms)


def _cleanest(model, products) -> CandidateImage:
    _, ims = products[0]
    return max(ims, key=lambda im: model.run([im], 1).reports[0].p_primary)  # the cleanest product shot


def _with_shop_mark(base: CandidateImage, product) -> CandidateImage:
    """`product` (pixels of base's size) with a shop name written in the top-left corner."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(product)
    font = ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans-Bold.ttf", 22)
    ImageDraw.Draw(img).text((12, 8), "bestshop", fill=(20, 20, 20), font=font)
    return CandidateImage("marked", np.asarray(img), base.orig_size)


def test_added_logo_is_removed_with_its_rule_and_box(model, products):
    """Text on a mark apart from the product (the JD listing's brand logo case), end to end:
    the background_marks check + the PP-OCR detector remove the image, name the rule and the box."""
    from PIL import Image

    base = _cleanest(model, products)
    h, w = base.pixels.shape[:2]
    img = Image.new("RGB", (w, h), "white")  # the product a little smaller, a shop mark in the corner
    img.paste(Image.fromarray(base.pixels).resize((w * 3 // 4, h * 3 // 4)), (w // 4, h // 4))
    marked = _with_shop_mark(base, np.asarray(img))
    res = model.run([base, marked], 1)
    removed = {r.id: r for r in res.removed}
    # a shop name in a corner: logo, added text or a watermark by the rules; which one the learned
    # head names is its call (the f32-trunk heads say watermark), the check's finding is below
    assert "marked" in removed and removed["marked"].rule in ("logo", "text_overlay", "watermark")
    assert "top" in removed["marked"].reason
    f = next(f for f in res.reports[1].findings if f.source == "check:background_marks")
    x0, y0, x1, y1 = f.box
    s = base.scale
    assert x0 <= 14 * s and y0 <= 12 * s and x1 < base.orig_size[0] / 2 and y1 < base.orig_size[1] / 4
    assert base.id not in removed


def test_inset_picture_is_removed_with_its_rule_kind_and_box(model, products):
    """A framed picture pasted into a corner (our generator's inset, drawn here by hand): the
    explainable inset check finds it and where; the image is removed (as collage_or_inset,
    "an inset picture in the bottom-left corner", when the check is what decided)."""
    from PIL import Image, ImageDraw

    base = _cleanest(model, products)
    h, w = base.pixels.shape[:2]
    img = Image.new("RGB", (w, h), "white")
    img.paste(Image.fromarray(base.pixels).resize((w * 3 // 4, h * 3 // 4)), (w // 4, 0))
    side = w * 3 // 10
    inset = Image.new("RGB", (side + 8, side + 8), (40, 40, 40))
    shot = Image.new("RGB", (side, side), "white")  # a studio shot: the product, small enough
    shot.paste(Image.fromarray(base.pixels).resize((side // 3, side // 3)), (side // 3, side // 3))  # that its
    # straight bands stay shorter than the lines that make the check take a box for a layout
    inset.paste(shot, (4, 4))
    x, y = w // 30, h - side - 8 - h // 30
    ImageDraw.Draw(img).rectangle((x + 5, y + 5, x + side + 13, y + side + 13), fill=(150, 150, 150))
    img.paste(inset, (x, y))
    res = model.run([base, CandidateImage("inset", np.asarray(img), base.orig_size)], 1)
    removed = {r.id: r for r in res.removed}
    assert "inset" in removed  # by the check, or by the learned head when it is as sure
    f = next(f for f in res.reports[1].findings if f.source == "check:inset")
    assert f.rule == "collage_or_inset" and f.score >= 0.5 and "framed picture" in f.message
    if removed["inset"].rule == "collage_or_inset":
        assert "inset picture in the bottom-left corner" in removed["inset"].reason
    assert f.box[0] <= x + 10 * base.scale and f.box[3] >= (y + side) * 0.95
    assert base.id not in removed


def test_duplicate_of_an_image_removed_for_another_rule_is_reported(model, products):
    """The JD listing's case: the logo image is also a mirrored near-duplicate of a kept view. It
    is removed once, for the logo; the pair is still reported, naming it as the one dropped, and
    the kept view stays (a pair with an image already gone removes nothing more). The product is
    drawn a little smaller so that the mark, mirrored or not, stands apart from it."""
    from PIL import Image

    shot = _cleanest(model, products)
    h, w = shot.pixels.shape[:2]
    img = Image.new("RGB", (w, h), "white")  # the product a little smaller: its top corners free
    img.paste(Image.fromarray(shot.pixels).resize((w * 3 // 4, h * 3 // 4)), (w // 8, h // 4))
    base = CandidateImage(shot.id, np.asarray(img), shot.orig_size)
    marked = _with_shop_mark(base, np.ascontiguousarray(base.pixels[:, ::-1]))
    res = model.run([base, marked], 1)
    (removal,) = res.removed  # once, for the added mark (whichever of its rules), not as a duplicate
    assert removal.id == "marked" and removal.rule in ("logo", "text_overlay", "watermark")
    assert res.primary_id == base.id
    (pair,) = res.duplicates
    assert {pair.id_a, pair.id_b} == {base.id, "marked"} and pair.removed_id == "marked"
    assert pair.score >= model.config.duplicate_threshold and pair.matches


def test_the_sellers_first_image_stays_primary_within_the_margin():
    """The first uploaded image is the seller's main view: a look-alike (a back view) scoring a
    little higher does not replace it; one scoring much higher, or a first image below the
    threshold, does; a removed first image never stays."""
    from types import SimpleNamespace

    from stage1.config import Stage1Config
    from stage1.model import LearnedStage1
    from stage1.types import CandidateReport

    me = SimpleNamespace(config=Stage1Config(first_image_margin=0.15))

    def choose(ps, removed=()):
        reports = [CandidateReport(f"c{i}", p, 0.0) for i, p in enumerate(ps)]
        decisions = [{"remove": i in removed} for i in range(len(ps))]
        return LearnedStage1._choose_primary(me, reports, decisions)

    assert choose([0.86, 0.92, 0.1]) == "c0"
    assert choose([0.60, 0.95, 0.1]) == "c1"
    assert choose([0.40, 0.45, 0.1]) is None
    assert choose([0.45, 0.55, 0.1]) == "c1"
    assert choose([0.90, 0.92, 0.1], removed={0}) == "c1"


def test_backbone_across_products_gives_each_product_its_own_maps_and_result(model, products):
    """`agpis batch` runs the backbone once for several products (backbone_many) and each product's
    stage 1 with its share: the maps are those of the product's own forward, bit for bit (MobileNetV2
    has no batch-dependent layer), so every decision is the one `run` makes alone."""
    from stage1.train import resize_224

    ims = [ims for _, ims in products]
    many = model.backbone_many(ims)
    assert len(many) == len(ims)
    for (p, own_ims), features in zip(products, many):
        own = model.backbone.features(resize_224([im.pixels for im in own_ims], 224))
        assert np.array_equal(own["final"], features["final"]) and np.array_equal(own["patch"], features["patch"])
        alone, shared = model.run(own_ims, 3, title=p["title"]), model.run(own_ims, 3, title=p["title"], features=features)
        for name in ("reports", "duplicates", "removed", "primary_id", "sequences", "terminated_reason", "rejection"):
            assert getattr(shared, name) == getattr(alone, name), name
        assert all(np.array_equal(shared.features[i], alone.features[i]) for i in alone.features)
        assert "backbone" not in shared.timings_ms  # it ran once, before
    with pytest.raises(ValueError, match="too small"):  # a bad image is refused before the forward
        model.backbone_many([ims[0], [CandidateImage("tiny", np.zeros((4, 4, 3), np.uint8), (4, 4))]])


def test_without_the_side_thread_every_decision_is_the_same(model, products):
    """stage1.side_thread false (`agpis batch`'s actors): the calling thread does the side tasks
    and the pair checks alone, and every result is the one the two threads give."""
    alone = stage1.load(DEFAULT_STAGE1_DIR, Stage1Config(side_thread=False))
    assert alone._pool is None
    for p, ims in products:
        two, one = model.run(ims, 3, title=p["title"]), alone.run(ims, 3, title=p["title"])
        for name in ("reports", "duplicates", "removed", "primary_id", "sequences", "terminated_reason", "rejection"):
            assert getattr(one, name) == getattr(two, name), name
        assert one.timings_ms["wait_side_thread"] == 0.0
