"""The colour check (stage1/colour.py) on drawn images: names, skin, backdrops, title words,
and the listing-level verdicts the learned stage 1 acts on."""
from __future__ import annotations

import numpy as np
import pytest

from stage1 import colour

SKIN = (224, 172, 140)


def person(garment, size=224, backdrop=(255, 255, 255)) -> np.ndarray:
    """A model on a studio backdrop: a skin-toned head and arms, a garment for a torso."""
    import cv2

    im = np.full((size, size, 3), backdrop, np.uint8)
    cv2.circle(im, (112, 40), 22, SKIN, -1)
    cv2.rectangle(im, (40, 70), (62, 170), SKIN, -1)
    cv2.rectangle(im, (162, 70), (184, 170), SKIN, -1)
    cv2.rectangle(im, (66, 66), (158, 200), garment, -1)
    return im


@pytest.mark.parametrize("rgb,name", [
    ((220, 30, 30), "red"), ((20, 30, 90), "blue"), ((60, 110, 220), "blue"), ((220, 230, 60), "yellow"),
    ((30, 150, 60), "green"), ((255, 140, 0), "orange"), ((120, 50, 170), "purple"), ((255, 160, 200), "pink"),
    ((110, 65, 30), "brown"), ((128, 128, 128), "gray"), ((12, 12, 12), "black"), ((250, 250, 250), "white"),
])
def test_basic_names(rgb, name):
    assert colour.NAMES[int(colour.name_pixels(np.array([rgb], np.uint8), skin=False)[0])] == name


def test_skin_is_left_out_of_the_product():
    shares = colour.colour_shares(person((220, 30, 30)))
    assert shares is not None and colour.named(shares)[colour.NAMES.index("red")] > 0.9
    assert 0.1 < shares[colour.SKIN] < 0.5  # the head and arms: counted apart
    # without the skin rule the head and arms count as the product's colours
    raw = colour.colour_shares(person((220, 30, 30)), colour.ColourConfig(skin=False))
    assert raw[colour.NAMES.index("red")] < 0.8


def test_no_plain_backdrop_is_not_judged():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert colour.colour_shares(scene) is None
    assert colour.colour_shares(np.full((224, 224, 3), 255, np.uint8)) is None  # nothing on it


def test_title_words():
    assert colour.title_colours("Chaz Kangeroo Hoodie, Navy") == [("navy", "blue"), ("navy", "black")]
    assert colour.title_colours("Red and Blue Tee") == [("red", "red"), ("blue", "blue")]
    assert colour.title_colours("Starter Yoga Bag, Iron Grey, duffel") == [("grey", "gray")]
    assert colour.title_colours("Vitamin E 268 mg, 365 capsules") == []


def test_shade_words_accept_each_basic_name_they_span():
    # A teal garment photographs green (hue ~196): "Teal" accepts green and blue, "Blue" does not.
    teal = colour.colour_shares(person((0, 128, 128)))
    assert colour.describe(teal) == "mostly green"
    assert colour.check_title("Tee, Teal", [teal, teal], 0.25).agree == [True, True]
    assert colour.check_title("Tee, Blue", [teal, teal], 0.25).mismatch
    # Navy dark enough to read black passes "Navy"; the sentence names the word once.
    navy = colour.colour_shares(person((15, 15, 30)))
    v = colour.check_title("Hoodie, Navy", [navy], 0.25)
    assert v.agree == [True] and v.said == "navy"


def test_title_against_images():
    red, blue = colour.colour_shares(person((220, 30, 30))), colour.colour_shares(person((40, 70, 200)))
    ok = colour.check_title("Tee, Red", [red, red, None], 0.2)
    assert ok.agree == [True, True, None] and not ok.mismatch
    wrong = colour.check_title("Tee, Blue", [red, red, None], 0.2)
    assert wrong.agree == [False, False, None] and wrong.mismatch
    # one image in another colour: that image is off, the title is right
    one_off = colour.check_title("Tee, Red", [red, red, blue], 0.2)
    assert one_off.agree == [True, True, False] and not one_off.mismatch
    # a title without a colour word says nothing
    none = colour.check_title("Tee", [red, blue], 0.2)
    assert none.words == [] and none.agree == [None, None] and not none.mismatch


def test_a_skin_toned_product_is_brown_enough():
    # A tan jacket over dark trousers: the jacket's pixels are skin-toned, so the named product
    # is mostly the trousers; only a brown title counts the skin tones (as a neighbour).
    tan = person((190, 140, 105))
    tan[200:224, 70:154] = (15, 15, 15)
    tan = colour.colour_shares(tan)
    assert colour.describe(tan) == "mostly black"
    assert colour.title_score(tan, "brown") >= 0.2
    assert colour.title_score(tan, "blue") < 0.2
    # A black garment on the same model still fails a brown title: the skin is a quarter's worth.
    black = colour.colour_shares(person((20, 20, 20)))
    assert colour.title_score(black, "brown") < 0.2
    assert colour.title_score(black, "black") == 1.0


def test_neighbours_count_by_how_close_they_are():
    # A bluish purple (hue 315, 15 degrees past blue's range) passes a blue title, barely; a
    # reddish purple (hue 328) does not. Neither passes green, which is no neighbour.
    bluish = colour.colour_shares(person((120, 50, 170)))
    assert colour.title_score(bluish, "purple") == 1.0
    assert 0.25 <= colour.title_score(bluish, "blue") <= 0.3
    assert colour.title_score(bluish, "green") == 0.0
    assert colour.describe(bluish) == "mostly purple"
    reddish = colour.colour_shares(person((150, 40, 150)))
    assert colour.describe(reddish) == "mostly purple" and colour.title_score(reddish, "blue") < 0.1
    # Lightness for the neutrals: a charcoal (L 25) passes a gray title, a deep black (L 9) does not.
    assert colour.title_score(colour.colour_shares(person((60, 60, 60))), "gray") >= 0.4
    assert colour.title_score(colour.colour_shares(person((25, 25, 25))), "gray") < 0.2


def test_learned_stage1_acts_on_the_colour_check():
    """Through the shipped stage 1: a title naming another colour is a decisive rejection with a
    sentence; an image in another colour is removed as inconsistent_product."""
    import stage1
    from stage1.config import Stage1Config
    from stage1.paths import DEFAULT_STAGE1_DIR
    from stage1.types import CandidateImage

    model = stage1.load(DEFAULT_STAGE1_DIR, Stage1Config())
    big = lambda g: np.ascontiguousarray(np.kron(person(g), np.ones((3, 3, 1), np.uint8)))  # noqa: E731
    ims = [CandidateImage(f"im{i}", big(g), (672, 672)) for i, g in enumerate([(220, 30, 30), (200, 25, 25), (230, 40, 40),
                                                                    (40, 70, 200)])]
    res = model.run(ims, 3, title="Crew Tee, Blue")
    assert res.rejection is not None and res.rejection.rule == "title_mismatch"
    assert "blue" in res.rejection.message and "mostly red" in res.rejection.message
    res = model.run(ims, 3, title="Crew Tee, Red")
    assert res.rejection is None
    gone = {r.id: r for r in res.removed}
    assert gone["im3"].rule == "inconsistent_product" and "mostly blue" in gone["im3"].reason
    # not decisive: the finding stays, nothing is removed for it
    cfg = Stage1Config(decisive_checks=["resolution", "white_background"])
    res = stage1.load(DEFAULT_STAGE1_DIR, cfg).run(ims, 3, title="Crew Tee, Red")
    assert "im3" not in {r.id for r in res.removed if r.rule == "inconsistent_product"}
    assert any(f.source == "check:product_colour" for r in res.reports if r.id == "im3" for f in r.findings)
