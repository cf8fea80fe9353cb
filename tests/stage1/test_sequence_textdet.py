"""The sequence builder and the PP-OCR text detector."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from stage1.sequence import build_sequences
from stage1.textdet import TextDetConfig, TextDetector, db_boxes, model_path


def test_sequences_primary_first_ranked_and_bounded():
    p_nc = {"a": 0.0, "b": 0.4, "c": 0.01, "d": 0.02}
    seqs = build_sequences("p", ["a", "b", "c", "d"], 3, 4, p_nc)
    assert len(seqs) == 4 and all(s[0] == "p" and len(s) == 3 for s in seqs)
    assert seqs[0] == ["p", "a", "c"]  # the two most surely compliant, in upload order
    assert all("b" not in s for s in seqs[:3])  # the doubtful image comes last
    assert len({tuple(s) for s in seqs}) == 4


def test_sequences_prefer_distinct_images():
    sim = {frozenset(("a", "c")): 0.45}  # a near-duplicate pair below the removal threshold
    seqs = build_sequences("p", ["a", "c", "d"], 3, 3, {}, sim)
    assert seqs[0] in (["p", "a", "d"], ["p", "c", "d"])
    assert seqs[-1] == ["p", "a", "c"]


def test_sequences_too_few_and_bad_args():
    assert build_sequences("p", ["a"], 3, 4, {}) == []
    assert build_sequences("p", [], 1, 4, {}) == [["p"]]
    with pytest.raises(ValueError):
        build_sequences("p", ["a", "b"], 0, 4, {})
    with pytest.raises(ValueError):
        build_sequences("p", ["a", "b"], 2, 0, {})


def test_db_postprocessing_on_a_synthetic_map():
    prob = np.zeros((64, 96), np.float32)
    prob[10:20, 10:60] = 0.9  # a text line
    prob[40:42, 70:90] = 0.9  # 2 px high: dilated to 3, the minimum side, so kept
    prob[50:60, 5:15] = 0.35  # above thresh but below box_thresh on average
    boxes = db_boxes(prob, TextDetConfig())
    assert len(boxes) == 2
    (x0, y0, x1, y1), score = boxes[0]
    assert x0 < 10 and y0 < 10 and x1 > 60 and y1 > 20 and score > 0.75  # grown outwards (unclip)


@pytest.fixture(scope="module")
def detector():
    try:
        model_path()
    except FileNotFoundError as e:
        pytest.fail(str(e))
    return TextDetector(TextDetConfig(side=320))


def test_text_detector_finds_a_banner(detector):
    import matplotlib

    font_path = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans-Bold.ttf"
    img = Image.new("RGB", (400, 400), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((100, 120, 300, 360), fill=(200, 60, 40))
    d.rectangle((0, 0, 400, 60), fill=(230, 30, 30))
    d.text((40, 12), "SALE 50% OFF", fill="white", font=ImageFont.truetype(font_path, 34))
    found = detector.detect(np.asarray(img))
    assert found, "no text found"
    (x0, y0, x1, y1), score = max(found, key=lambda b: b[1])
    assert y1 <= 80 and x1 - x0 > 150 and score > 0.5
    plain = np.full((300, 300, 3), 255, np.uint8)
    assert detector.detect(plain) == []
