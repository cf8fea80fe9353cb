"""EdgeBoxes proposals, box pooling, transform verification and the duplicate decision, with the
committed backbone on drawn images (no ../shared)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from stage1.backbone import Backbone
from stage1.config import Stage1Config
from stage1.duplicates import (DuplicateConfig, PooledMaps, _apply, _inverse, _transforms, find_duplicates,
                               image_patches)
from stage1.dupeval import phash, phash_similarity, recall_at_precision, transform
from stage1.paths import BASE_DIR
from stage1.proposals import ProposalConfig, propose, windows


def scene(seed: int, size: int = 400) -> np.ndarray:
    """A drawn 'product photo': several shapes and stripes, different for every seed."""
    rng = np.random.default_rng(seed)
    im = np.full((size, size, 3), 255, np.uint8)
    for _ in range(7):
        c = tuple(int(v) for v in rng.integers(0, 230, 3))
        x, y = (int(v) for v in rng.integers(20, size - 20, 2))
        if rng.random() < 0.5:
            cv2.circle(im, (x, y), int(rng.integers(15, 70)), c, -1)
        else:
            cv2.rectangle(im, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 120))), c, -1)
    y = int(rng.integers(size // 2, size - 40))
    for k in range(int(rng.integers(0, 20)), size, int(rng.integers(15, 30))):
        cv2.line(im, (k, y), (k + 10, y + 40), (40, 40, 40), 2)
    return im


@pytest.fixture(scope="module")
def backbone():
    return Backbone(BASE_DIR, threads=1)


def patches(backbone, ims):
    f = backbone.features(ims)
    return [image_patches(f["patch"][i], f["final"][i], propose(im)[0], (im.shape[1], im.shape[0]))
            for i, im in enumerate(ims)]


def test_proposals_whole_image_first_then_boxes_then_windows():
    im = scene(0)
    boxes, scores = propose(im, ProposalConfig(max_boxes=10))
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    np.testing.assert_array_equal(boxes[0], [0, 0, 400, 400])
    assert scores[0] == 1.0
    n_windows = len(windows((0.55, 0.7, 0.85), 0.15))
    assert n_windows == 16 + 9 + 4
    assert 1 + n_windows < len(boxes) <= 1 + 10 + n_windows  # EdgeBoxes found some boxes on the shapes
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 400


def test_windows_cover_the_frame():
    w = windows((0.5,), 0.25)
    assert len(w) == 9
    assert w[:, 0].min() == 0 and w[:, 2].max() == pytest.approx(1.0)


def test_transform_algebra():
    a = np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)
    b = np.array([[0.3, 0.1, 0.9, 0.7]], np.float32)
    for flipped in (False, True):
        t = _transforms(a, b, flipped)[0]
        np.testing.assert_allclose(_apply(t, a), b, atol=1e-6)
        np.testing.assert_allclose(_apply(_inverse(t), b), a, atol=1e-6)


def test_pooling_matches_direct_mean():
    rng = np.random.default_rng(0)
    patch = rng.random((14, 14, 8)).astype(np.float32)
    final = rng.random((49, 4)).astype(np.float32)
    m = PooledMaps(patch, final)
    f = m.pool(np.array([[0.0, 0.0, 0.5, 0.5]], np.float32))[0]
    direct = patch[:7, :7].mean((0, 1))
    np.testing.assert_allclose(f[:8], direct / np.linalg.norm(direct) / np.sqrt(2), rtol=1e-5)
    assert np.linalg.norm(f) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def different_scores(backbone):
    """Scores of every pair of six different drawn scenes (white background, similar shapes)."""
    return [f.score for f in find_duplicates(patches(backbone, [scene(s) for s in range(10, 16)]))]


@pytest.mark.parametrize("kind", ["crop", "zoom", "flip", "reencode", "rotate"])
def test_made_duplicates_outscore_different_images(backbone, different_scores, kind):
    rng = np.random.default_rng(1)
    a = scene(3)
    b = transform(a, kind, rng)
    found = find_duplicates(patches(backbone, [a, b]))
    assert len(found) == 1
    assert found[0].score > max(different_scores), (kind, found[0].score, max(different_scores))
    assert found[0].matches, "a duplicate comes with matched boxes"
    if kind in ("flip", "reencode", "rotate"):  # whole-image duplicates: above the service threshold
        assert found[0].score >= Stage1Config().duplicate_threshold, (kind, found[0].score)


def test_different_images_are_not_duplicates(different_scores):
    assert len(different_scores) == 15
    assert max(different_scores) < Stage1Config().duplicate_threshold, different_scores


def test_added_mark_regions_do_not_count_against_a_duplicate(backbone):
    """A mirrored copy with a banner added in a corner: boxes touching the banner (in either
    image, after mapping) no longer check the transform, so the pair scores higher, and the
    banner's own image keeps only the boxes clear of it."""
    a = scene(3)
    b = a[:, ::-1].copy()
    cv2.rectangle(b, (0, 0), (150, 90), (200, 30, 30), -1)
    cv2.putText(b, "SALE", (10, 65), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (255, 255, 255), 4)
    f = backbone.features([a, b])
    region = np.array([[0.0, 0.0, 155 / 400, 95 / 400]], np.float32)

    def score(ignore):
        ims = [image_patches(f["patch"][k], f["final"][k], propose(im)[0], (400, 400), ignore=ig)
               for k, (im, ig) in enumerate(((a, None), (b, ignore)))]
        found = find_duplicates(ims)
        return found[0].score, ims[1]

    plain, _ = score(None)
    masked, pb = score(region)
    assert masked > plain + 0.02, (plain, masked)
    nb = pb.norm_boxes
    clear = ~((nb[:, 0] < region[0, 2]) & (nb[:, 1] < region[0, 3]))
    assert len(pb.check_boxes) == int(clear.sum()) < len(pb.boxes)
    assert not pb.touches_ignored(pb.check_boxes).any()


def test_find_duplicates_edge_cases(backbone):
    assert find_duplicates([]) == []
    assert find_duplicates(patches(backbone, [scene(1)])) == []


def test_phash_and_recall_at_precision():
    a = scene(5)
    assert phash_similarity(phash(a), phash(a)) == 1.0
    assert phash_similarity(phash(a), phash(scene(6))) < 0.9
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 1, 0, 1, 0])
    r, t = recall_at_precision(scores, labels, 0.95)
    assert r == pytest.approx(2 / 3) and t == pytest.approx(0.8)
    r, t = recall_at_precision(scores, labels, 0.7)
    assert r == 1.0 and t == pytest.approx(0.6)
