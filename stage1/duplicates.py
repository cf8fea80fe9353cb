"""Image-pair rule `duplicated_view`: EdgeBoxes proposals + patch features + kNN (paper §3.3.2,
Figure 3, where a faiss index finds the neighbours).

Per image: EdgeBoxes proposals (stage1.proposals; the whole image is always proposal 0) and,
for each box, a feature average-pooled from the backbone's maps. There is ONE forward pass per
image: boxes only choose which cells of the maps to pool (integral images, so any box costs
the same). A box feature is the stride-16 patch map (576 channels, local detail) and the
stride-32 final map (1280 channels, more invariant to scale and re-encoding), each pooled and
L2-normalised, concatenated.

Across the request's images: inner products between every box (a few hundred: one matrix
product, faster than a faiss index here); each box's nearest neighbours in the other images are
candidate matches. Each of a pair's best matches proposes a
geometric transform (scale + translation, plain or mirrored) that would carry one box onto the
other. The transform is then checked everywhere: every other proposal of either image is mapped
into the other image and the features pooled THERE are compared with its own. A crop, zoom,
flip, re-encode or small rotation keeps that agreement high for every proposal; two different
views of a product may share one look-alike region but nothing consistent around it. (Matching
proposals to proposals instead needed EdgeBoxes to find the same boxes in both images, which
at 128 px it often did not: crop/zoom recall at P=0.95 was 0.47.)

Zoom crops and crops were the weak kind (real Magento val photos: 0 of 106 65-90% zoom crops
found at precision 0.95): box matches place a zoom only to a cell, and a 1.5x zoom changes the
pooled features. So transforms also come from the colour thumbnails (proposals.Proposals): each
image, shrunk to 62-100% of its side and mirrored or not, is slid over the other
(cv2.matchTemplate); that places a zoom, crop or mirror to about 1/32 of the frame, and a local
search on the thumbnails refines it. The backbone's maps are nearly blind to hue, and a shop's
colour variants are often one photo recoloured (63 val pairs of two colours' main photos: 48
scored as duplicates), so a transform must also make the thumbnails agree in colour.

The pair's score is the lower of the feature agreement (mean re-pooled cosine under the
transform, rescaled to [0, 1] and saturating at `feature_full`) and the colour agreement (1 -
the share of the foreground whose colour differs / `colour_share_zero`) for the best transform;
the matched boxes are the explanation (paper Figure 3).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np


@dataclass
class DuplicateConfig:
    k: int = 4  # neighbours per box searched in the index (per other image)
    hypotheses: int = 3  # best box matches of a pair whose transforms are verified
    match_min_sim: float = 0.6  # box cosine below which a match proposes nothing
    max_scale: float = 1.9  # a >= 2x zoom on a part is a close-up, a new view (docs/data.md)
    max_anisotropy: float = 1.3  # sx/sy: a duplicate keeps its aspect (within re-encoding slack)
    min_inside: float = 0.8  # a mapped box must lie this much inside the other image to count
    min_checked: int = 4  # fewer checkable boxes than this and a transform proves nothing
    # Mean re-pooled cosine mapped linearly from [sim_floor, 1] onto the score [0, 1].
    sim_floor: float = 0.6
    same_transform: float = 0.05  # transforms closer than this (scale and shift) are checked once
    sure: float = 0.9  # a transform scoring this ends the search for the pair
    pair_gate: float = 0.78  # whole image vs best box of the other below this: not checked (score 0)
    max_matches_reported: int = 4
    # Pair gate for zooms and crops: the whole of one image against every region of the other
    # on the final map's 7 x 7 grid whose sides each keep at least region_min of the frame.
    region_min: float = 0.6
    # Colour check (thumbnails from proposals.Proposals; images without one are not checked):
    # share of the foreground whose CIELAB difference exceeds colour_delta under the transform.
    # Chosen on Magento val pairs (`python -m stage1.dupeval --real`): delta 20 with 2 px of
    # slack let 19 of 21 front/back pairs through at 0.75; delta 12 with 1 px: 4, every copy
    # still found (both without colour_angles). 1 px of slack keeps rotated copies duplicates.
    colour_delta: float = 12.0
    colour_slack: int = 1  # px of the thumbnail (3% of the frame) a colour may come from
    colour_share_zero: float = 0.4  # colour score 1 - share / this: 0 when 40% of the foreground differs
    # Small rotations tried for the final colour comparison (degrees): the old evaluation's
    # 3-10 degree rotated copies stay duplicates.
    colour_angles: tuple[float, ...] = (0.0, -6.0, 6.0)
    colour_floor: float = 0.2  # rough colour score below which a transform is not checked further
    # Best transforms whose colour comparison is refined. 1 (was 2) on Magento val: recall at
    # 0.9 0.989 (524 of 530; before 0.991), the same 3 false positives, matching ~10% faster.
    colour_checked: int = 1
    feature_full: float = 0.5  # feature score (re-pooled cosine 0.8) that counts as full agreement
    # Second cheap gate: a pair whose best thumbnail placement (any zoom, crop or mirror, or a
    # turn of the whole, rotated_difference) still differs by more than this is not checked
    # further. The measure (_gate_difference): mean squared CIELAB difference over the
    # best-agreeing gate_share of the product's pixels. Magento pairs of
    # `python -m stage1.dupeval --real`, train: every copy found at 0.9 lies at <= 65 (val
    # <= 37); of the different photos past the first gate, 343 of 402 lie above 100 (val 135
    # of 148), 322 above 150 (val 125); such pairs were most of the matching time. 120: about
    # twice the highest copy. Pairs with added-mark regions (`ignore`) are always checked.
    colour_gate: float = 120.0
    # Turns tried by rotated_difference: a 3-10 degree turned copy is within 3-4 degrees of one.
    gate_angles: tuple[float, ...] = (-7.0, 7.0)
    gate_share: float = 0.85  # of the thumbnail's pixels, the best-agreeing, that the gates average
    # Side fractions at which each thumbnail is slid over the other (template_hypotheses).
    # Six scales (0.62-1.0 by 0.08) were not faster and let a real front/back pair through (0.91).
    zoom_scales: tuple[float, ...] = (0.62, 0.66, 0.7, 0.74, 0.78, 0.82, 0.86, 0.9, 0.94, 1.0)
    # Structure check (structure_difference), last: a garment's front and back on a model, mirrored,
    # can agree in outline and colour everywhere but the face, the navel, the shoes (Magento
    # train+val: 6 front/back pairs scored >= 0.9 without it). Under the pair's transform, refined
    # on the grey square copies (proposals.DETAIL), each textured block of 1/structure_blocks of
    # the side must find its content again (normalised cross-correlation >= structure_ncc,
    # within a pixel). The structure score is 1 - share / structure_share_zero: 6% of the blocks
    # off is the 0.9 threshold. Chosen on Magento train+val pairs only (`python -m
    # stage1.dupeval --real --splits train,val`): the 6 front/back pairs at >= 0.9 had 9-24% of
    # their blocks off, 4 of 2,046 copies at >= 0.9 more than 6%. Shipped, train: copies found at
    # 0.9 1522 -> 1514 of 1540, front/back flagged 5 -> 0 of 54 (highest score 0.667).
    structure_ncc: float = 0.7
    structure_share_zero: float = 0.6
    structure_from: float = 0.5  # pairs scoring below this are not worth the check (~10 ms)
    structure_blocks: int = 12  # blocks a side
    structure_min_std: float = 8.0  # grey levels: a flatter block (white, plain fabric) says nothing
    structure_scales: tuple[float, ...] = (1.0, 0.98, 1.02)  # scale refinements tried about b's centre


class PooledMaps:
    """Integral images of one image's feature maps: mean features of any box in O(1)."""

    def __init__(self, patch_map: np.ndarray, final_tokens: np.ndarray):
        side = int(round(len(final_tokens) ** 0.5))
        assert side * side == len(final_tokens), final_tokens.shape
        self.maps = [_integral(patch_map), _integral(final_tokens.reshape(side, side, -1))]
        self.coarse_cells = side  # the final map's grid (7): regions snap to it

    def pool(self, boxes: np.ndarray) -> np.ndarray:
        """boxes (N, 4) normalised to [0, 1] -> (N, 576 + 1280) unit-norm features (each half
        L2-normalised, then scaled by 1/sqrt(2))."""
        parts = []
        for integral in self.maps:
            f = _pool(integral, boxes)
            parts.append(f * (np.float32(1 / np.sqrt(2.0)) / (np.sqrt(np.einsum("ij,ij->i", f, f)) + 1e-6))[:, None])
        return np.concatenate(parts, axis=1)


def _integral(m: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Summed-area table, flattened to ((h+1) * (w+1), C) rows for one gather per pool."""
    h, w, c = m.shape
    out = np.zeros((h + 1, w + 1, c), np.float32)
    out[1:, 1:] = m
    # Running sums row by row, then column by column, in place: the same additions in the same
    # order as cumsum(0).cumsum(1), ~10x faster (numpy's cumsum along a leading axis is slow).
    for r in range(2, h + 1):
        out[r] += out[r - 1]
    for col in range(2, w + 1):
        out[:, col] += out[:, col - 1]
    return out.reshape(-1, c), h, w


def _pool(integral: tuple[np.ndarray, int, int], boxes: np.ndarray) -> np.ndarray:
    """Mean of the cells whose centres lie in each box (at least one cell)."""
    table, h, w = integral
    x0 = np.clip(np.floor(boxes[:, 0] * w + 0.5), 0, w - 1).astype(np.intp)
    y0 = np.clip(np.floor(boxes[:, 1] * h + 0.5), 0, h - 1).astype(np.intp)
    x1 = np.maximum(np.clip(np.ceil(boxes[:, 2] * w - 0.5), 0, w).astype(np.intp), x0 + 1)
    y1 = np.maximum(np.clip(np.ceil(boxes[:, 3] * h - 0.5), 0, h).astype(np.intp), y0 + 1)
    n, stride = len(boxes), w + 1
    corners = table.take(np.concatenate([y1 * stride + x1, y0 * stride + x1, y1 * stride + x0, y0 * stride + x0]),
                         axis=0)  # (4N, C), one gather
    sums = corners[:n] - corners[n:2 * n] - corners[2 * n:3 * n] + corners[3 * n:]
    return sums / ((y1 - y0) * (x1 - x0)).astype(np.float32)[:, None]


def regions(cells: int, min_side: float) -> np.ndarray:
    """Every box (M, 4), normalised, whose edges lie on a grid of `cells` and whose sides each
    keep at least `min_side` of the frame: the places a zoom or crop copy can have come from.
    Cell-aligned because pooling rounds to cells anyway (7 cells: 36 boxes at 0.6)."""
    edges = np.arange(cells + 1) / cells
    spans = [(x0, x1) for x0 in edges for x1 in edges if x1 - x0 >= min_side - 1e-6]
    return np.asarray([[x0, y0, x1, y1] for y0, y1 in spans for x0, x1 in spans], np.float32)


@dataclass
class ImagePatches:
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 in the image's pixels (as given)
    maps: PooledMaps
    size: tuple[int, int]  # (width, height) of that image
    # Regions (M, 4), normalised, holding marks added to the photo (a logo or slogan the text
    # detector found apart from the product): not content, so no box that touches one checks a
    # transform, in this image or mapped into it. An added overlay does not make a duplicate new
    # (docs/data.md, dup_group), but it lowers the mean agreement of every box that covers it.
    ignore: np.ndarray | None = None
    # (T, T, 3) CIELAB thumbnail of the whole image (proposals.Proposals.colour); None: no check.
    colour: np.ndarray | None = None
    # (D, D) float32 grey copy of the whole image (proposals.Proposals.detail); None: no check.
    detail: np.ndarray | None = None
    region_min: float = 0.6  # see DuplicateConfig.region_min
    feats: np.ndarray = field(init=False)  # (N, C) unit-norm box features
    norm_boxes: np.ndarray = field(init=False)  # boxes / size, in [0, 1]

    def __post_init__(self):
        w, h = self.size
        if self.colour is None:
            self.colour = getattr(self.boxes, "colour", None)
        if self.detail is None:
            self.detail = getattr(self.boxes, "detail", None)
        self.norm_boxes = (np.asarray(self.boxes, np.float32) / np.array([w, h, w, h], np.float32))
        self.feats = self.maps.pool(self.norm_boxes)
        mask = ~self.touches_ignored(self.norm_boxes)
        self.check_boxes, self.check_feats = self.norm_boxes[mask], self.feats[mask]
        self.regions = regions(self.maps.coarse_cells, self.region_min)
        self.region_feats = self.maps.pool(self.regions)
        self.foreground = _foreground(self.colour) if self.colour is not None else None
        if self.colour is not None:  # thumbnail pixels inside added marks
            n = self.colour.shape[0]
            c = (np.arange(n, dtype=np.float32) + 0.5) / n
            self.ignored = np.zeros((n, n), bool)
            for x0, y0, x1, y1 in ([] if self.ignore is None else np.asarray(self.ignore, np.float32).reshape(-1, 4)):
                self.ignored |= ((c >= y0) & (c <= y1))[:, None] & ((c >= x0) & (c <= x1))[None, :]
        self._templates: dict[tuple[bool, float], np.ndarray] = {}

    def template(self, flipped: bool, scale: float) -> np.ndarray:
        """The colour thumbnail (mirrored or not) shrunk to `scale` of its side; cached, as
        every pair of a request slides the same few."""
        key = (flipped, scale)
        if key not in self._templates:
            src = self.colour[:, ::-1] if flipped else self.colour
            m = int(round(scale * self.colour.shape[0]))
            self._templates[key] = np.ascontiguousarray(cv2.resize(src, (m, m), interpolation=cv2.INTER_AREA))
        return self._templates[key]

    def touches_ignored(self, boxes: np.ndarray) -> np.ndarray:
        """(N,) bool: which normalised boxes overlap an ignored region."""
        if self.ignore is None or not len(self.ignore):
            return np.zeros(len(boxes), bool)
        r = np.asarray(self.ignore, np.float32)[None]  # (1, M, 4)
        b = boxes[:, None]
        return ((np.minimum(b[..., 2], r[..., 2]) > np.maximum(b[..., 0], r[..., 0])) &
                (np.minimum(b[..., 3], r[..., 3]) > np.maximum(b[..., 1], r[..., 1]))).any(1)


def image_patches(patch_map: np.ndarray, final_tokens: np.ndarray, boxes: np.ndarray,
                  size: tuple[int, int], ignore: np.ndarray | None = None) -> ImagePatches:
    """One image's backbone maps (patch (h, w, 576), final tokens (49, 1280)) and proposals;
    `ignore`: normalised regions of added marks (see ImagePatches)."""
    return ImagePatches(boxes, PooledMaps(patch_map, final_tokens), size, ignore)


@dataclass
class PairMatch:
    i: int
    j: int
    score: float  # in [0, 1]
    matches: list[tuple[int, int, float]] = field(default_factory=list)  # (box in i, box in j, cosine)
    flipped: bool = False
    colour_difference: float = 0.0  # share of the foreground whose colour differs under the transform
    transform: np.ndarray | None = None  # (sx, tx, sy, ty), normalised, carrying i onto j; sx < 0 mirrors
    structure_difference: float = 0.0  # share of textured blocks whose content is not found under it


def _transforms(a: np.ndarray, b: np.ndarray, flipped: bool) -> np.ndarray:
    """Box pairs (H, 4) -> transforms (H, 4) = (sx, tx, sy, ty) with T(a) = b; sx < 0 mirrors."""
    sx = (b[:, 2] - b[:, 0]) / np.maximum(a[:, 2] - a[:, 0], 1e-6)
    sy = (b[:, 3] - b[:, 1]) / np.maximum(a[:, 3] - a[:, 1], 1e-6)
    if flipped:
        return np.stack([-sx, b[:, 2] + sx * a[:, 0], sy, b[:, 1] - sy * a[:, 1]], 1)
    return np.stack([sx, b[:, 0] - sx * a[:, 0], sy, b[:, 1] - sy * a[:, 1]], 1)


def _apply(t: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """One transform (sx, tx, sy, ty) applied to boxes (N, 4) -> (N, 4), corners re-ordered."""
    sx, tx, sy, ty = t
    x = np.stack([sx * boxes[:, 0] + tx, sx * boxes[:, 2] + tx], 1)
    return np.stack([x.min(1), sy * boxes[:, 1] + ty, x.max(1), sy * boxes[:, 3] + ty], 1)


def _inverse(t: np.ndarray) -> np.ndarray:
    sx, tx, sy, ty = t
    return np.array([1 / sx, -tx / sx, 1 / sy, -ty / sy], np.float32)


def _inside(boxes: np.ndarray) -> np.ndarray:
    """Share of each box's area inside the unit square."""
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    c = np.clip(boxes, 0, 1)
    return (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) / area


def check_transforms(a: ImagePatches, b: ImagePatches, ts: np.ndarray, cfg: DuplicateConfig) -> list[tuple[float, int]]:
    """For each transform t (a -> b) in `ts` (T, 4): the mean cosine between every box and the
    features pooled where t puts it in the other image, over the boxes that land inside it, and
    how many did. All transforms of a pair are pooled in one gather per direction (the Python
    overhead of one pool call per transform was most of the matching time)."""
    n_t = len(ts)
    if not n_t:
        return []
    sums, counts = np.zeros(n_t, np.float64), np.zeros(n_t, np.int64)
    inverse = np.stack([_inverse(t) for t in ts])
    for src, dst, tts in ((a, b, ts), (b, a, inverse)):
        nb = len(src.check_boxes)
        if not nb:
            continue
        mapped = np.concatenate([_apply(t, src.check_boxes) for t in tts])  # (T * nb, 4)
        ok = (_inside(mapped) >= cfg.min_inside) & ~dst.touches_ignored(mapped)
        if not ok.any():
            continue
        sims = (dst.maps.pool(np.clip(mapped[ok], 0, 1)) * np.tile(src.check_feats, (n_t, 1))[ok]).sum(1)
        owner = np.repeat(np.arange(n_t), nb)[ok]
        sums += np.bincount(owner, weights=sims, minlength=n_t)
        counts += np.bincount(owner, minlength=n_t)
    return [((float(s / c) if c else 0.0), int(c)) for s, c in zip(sums, counts)]


def score_pair(a: ImagePatches, b: ImagePatches, ts: np.ndarray, flips: np.ndarray,
               cfg: DuplicateConfig) -> tuple[float, np.ndarray | None, bool, float, float]:
    """The best of the transform hypotheses ts (T, 4) a -> b -> (score in [0, 1], transform,
    flipped, colour difference, the turn in degrees the colours agreed best at). A transform
    scores the lower of its feature agreement (every
    proposal mapped and re-pooled, check_transforms) and its colour agreement (thumbnails, after
    refining it to a thumbnail pixel): a copy agrees on both, a colour variant (the same photo
    recoloured) only on features, a different view of the same silhouette on neither."""
    best = (0.0, None, False, 0.0, 0.0)
    sx, sy = np.abs(ts[:, 0]), ts[:, 2]
    ok = (np.maximum(sx, 1 / sx) <= cfg.max_scale) & (np.maximum(sy, 1 / sy) <= cfg.max_scale) & \
         (np.maximum(sx / sy, sy / sx) <= cfg.max_anisotropy)
    if not ok.any():
        return best
    # Hypotheses often agree on one transform (that is the point): check each distinct one once.
    _, first = np.unique(np.round(ts[ok] / cfg.same_transform), axis=0, return_index=True)
    distinct, flipped = ts[ok][np.sort(first)], flips[ok][np.sort(first)]
    rough = np.ones(len(distinct))
    if a.colour is not None and b.colour is not None:
        # Colours first (a remap per transform): most hypotheses of a non-duplicate pair end here,
        # before the costlier re-pooling of every proposal.
        rough = 1 - _colour_cost(a, b, distinct, cfg)[0] / cfg.colour_share_zero
        keep = rough >= cfg.colour_floor
        distinct, flipped, rough = distinct[keep], flipped[keep], rough[keep]
    if not len(distinct):
        return best
    checked = check_transforms(a, b, distinct, cfg)
    feat = np.array([(mean - cfg.sim_floor) / (1 - cfg.sim_floor) if n >= cfg.min_checked else 0.0
                     for mean, n in checked])
    # Features only have to be plausible: at a 65% zoom the re-pooled cosine of a true copy falls
    # to ~0.8 (feature score ~0.5), while the thumbnails, once aligned, still agree pixel for pixel.
    feat = np.clip(feat / cfg.feature_full, 0, 1)
    if a.colour is None or b.colour is None:
        h = int(np.argmax(feat))
        return float(feat[h]), distinct[h], bool(flipped[h]), 0.0, 0.0
    for h in np.argsort(-np.minimum(feat, rough))[: cfg.colour_checked]:  # the best few, refined
        if min(feat[h], 1.0) <= best[0]:
            continue
        share_h, t, angle = colour_difference(a, b, distinct[h], cfg, enough=min(float(feat[h]), 1.0))
        score = float(np.clip(min(feat[h], 1 - share_h / cfg.colour_share_zero), 0, 1))
        if score > best[0]:
            best = (score, t, bool(flipped[h]), share_h, angle)
    return best


def template_hypotheses(a: ImagePatches, b: ImagePatches, cfg: DuplicateConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Zoom and crop transforms found on the colour thumbnails: each image, shrunk to each of
    cfg.zoom_scales of its side (and mirrored), slid over the other (cv2.matchTemplate, squared
    difference per pixel); the best place per direction and mirror -> (transforms a -> b (H, 4),
    flipped (H,), the lowest mean squared CIELAB difference of all placements). The feature maps
    (14 cells a side) only place a zoom to about a cell, and a 65% zoom moves every cell's
    content by a third of its size, which pooled features blur."""
    if a.colour is None or b.colour is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, bool), 0.0
    n = a.colour.shape[0]
    whole = np.array([[0, 0, 1, 1]], np.float32)
    ts, flips, lowest = [], [], np.inf
    for big, small, small_is_b in ((a, b, True), (b, a, False)):
        for flipped in (False, True):
            best = (np.inf, None, None)
            for s in cfg.zoom_scales:
                tmpl = small.template(flipped, s)
                m = tmpl.shape[0]
                res = cv2.matchTemplate(big.colour, tmpl, cv2.TM_SQDIFF)
                lo, _, (x, y), _ = cv2.minMaxLoc(res)
                if lo / (m * m) < best[0]:
                    best = (lo / (m * m), np.array([[x / n, y / n, (x + m) / n, (y + m) / n]], np.float32),
                            (big.colour[y:y + m, x:x + m], tmpl))
            region = best[1]
            lowest = min(lowest, _gate_difference(*best[2], cfg))
            box_a, box_b = (region, whole) if small_is_b else (whole, region)
            ts.append(_transforms(box_a, box_b, flipped)[0])
            flips.append(flipped)
    return np.array(ts, np.float32), np.array(flips), float(lowest)


def rotated_difference(a: ImagePatches, b: ImagePatches, cfg: DuplicateConfig) -> float:
    """The lowest mean squared CIELAB difference between b's thumbnail and a's turned by each of
    cfg.gate_angles about the centre, over the central part (turned corners are made up): a
    copy turned 3-10 degrees, which no zoom placement lines up, stays past colour_gate."""
    if a.colour is None or b.colour is None:
        return 0.0
    n = a.colour.shape[0]
    k = n // 8
    out = np.inf
    for angle in cfg.gate_angles:
        r = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), angle, 1.0)
        turned = cv2.warpAffine(a.colour, r, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = min(out, _gate_difference(turned[k:-k, k:-k], b.colour[k:-k, k:-k], cfg))
    return out


def _gate_difference(x: np.ndarray, y: np.ndarray, cfg: DuplicateConfig) -> float:
    """The gates' measure of two aligned Lab thumbnails: the mean squared difference over the
    best-agreeing gate_share of the pixels that are product in either (studio white agrees
    anyway; an added banner or logo on one copy differs on a few percent); 0 with almost no
    product (no verdict: the pair is checked)."""
    fg = _foreground(x) | _foreground(y)
    if fg.sum() < 0.02 * fg.size:
        return 0.0
    d = ((x - y) ** 2).sum(-1)[fg]
    k = max(1, int(cfg.gate_share * len(d)))
    return float(np.partition(d, k - 1)[:k].mean())  # the k best-agreeing (their order does not matter)


def _warp(src: np.ndarray, t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """src (a square image of any side) carried by the transform t (src -> other, normalised)
    into the other's n x n frame -> (warped, (n, n) bool: pixels t maps from inside src)."""
    m = src.shape[0]
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    sx, tx, sy, ty = t
    u, v = (c - tx) / sx, (c - ty) / sy  # the other's pixel centres in src's normalised coordinates
    map_x = np.ascontiguousarray(np.broadcast_to((u * m - 0.5).astype(np.float32), (n, n)))
    map_y = np.ascontiguousarray(np.broadcast_to((v * m - 0.5).astype(np.float32)[:, None], (n, n)))
    warped = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, ((v >= 0) & (v <= 1))[:, None] & ((u >= 0) & (u <= 1))[None, :]


def _colour_cost(a: ImagePatches, b: ImagePatches, ts: np.ndarray, cfg: DuplicateConfig,
                 with_share: bool = True, angle: float = 0.0) -> tuple[np.ndarray | None, np.ndarray]:
    """For transforms ts (T, 4) a -> b: (share of the compared foreground whose CIELAB
    difference exceeds colour_delta, mean clipped difference) per transform. Compared: b's
    thumbnail pixels that t maps from inside a and that are not white in either image."""
    n = b.colour.shape[0]
    warped = np.empty((len(ts), n, n, 3), np.float32)
    inside = np.empty((len(ts), n, n), bool)
    for k, t in enumerate(ts):  # axis-aligned: one remap per transform
        warped[k], inside[k] = _warp(a.colour, t, n)
        if angle:
            r = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), angle, 1.0)
            warped[k] = cv2.warpAffine(warped[k], r, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            inside[k] = cv2.warpAffine(inside[k].astype(np.uint8), r, (n, n), flags=cv2.INTER_NEAREST) > 0
    fg = inside & (b.foreground[None] | _foreground(warped)) & ~b.ignored[None]  # added marks: not compared
    delta = np.sqrt(((warped - b.colour[None]) ** 2).sum(3))
    count = fg.sum((1, 2))
    few = count < 0.02 * n * n  # nothing to compare (a blank frame): no verdict
    cost = np.where(few, 0.0, (np.minimum(delta, 2 * cfg.colour_delta) * fg).sum((1, 2)) / np.maximum(count, 1))
    if not with_share:
        return None, cost
    # A pixel agrees when its colour lies within the range of a's colours around where t puts
    # it (cfg.colour_slack px either way): a small rotation, or a transform a pixel off, moves
    # edges by a pixel or two; a recoloured product differs everywhere inside its outline.
    kernel = np.ones((2 * cfg.colour_slack + 1,) * 2, np.uint8)
    lo = np.stack([cv2.erode(w, kernel) for w in warped])
    hi = np.stack([cv2.dilate(w, kernel) for w in warped])
    off = np.maximum(lo - b.colour[None], 0) + np.maximum(b.colour[None] - hi, 0)
    # ... and the other way round: a print on one image that the other lacks is off either way.
    lo_b, hi_b = cv2.erode(b.colour, kernel), cv2.dilate(b.colour, kernel)
    off = np.maximum(off, np.maximum(lo_b[None] - warped, 0) + np.maximum(warped - hi_b[None], 0))
    share = ((np.sqrt((off ** 2).sum(3)) > cfg.colour_delta) & fg).sum((1, 2)) / np.maximum(count, 1)
    return np.where(few, 0.0, share), cost


def colour_difference(a: ImagePatches, b: ImagePatches, t: np.ndarray, cfg: DuplicateConfig,
                      enough: float = 1.0) -> tuple[float, np.ndarray, float]:
    """The transform t (a -> b) refined on the colour thumbnails (the feature maps place it to
    about a cell, 1/14 of the frame, too coarse to compare pixels), and the share of the
    foreground whose colour still differs under it -> (share, refined t, the angle in degrees of
    cfg.colour_angles that gave the share). A copy lines up
    everywhere; a colour variant (the same photo recoloured) differs on the whole product."""
    if a.colour is None or b.colour is None:
        return 0.0, t, 0.0
    n = b.colour.shape[0]
    for step in (1.0 / n,):  # hypotheses are placed to about a thumbnail pixel: 27 candidates around t
        d = np.array([-step, 0, step], np.float32)
        k = 1 + np.array([-step, 0, step], np.float32)
        kk, dx, dy = (g.ravel() for g in np.meshgrid(k, d, d, indexing="ij"))
        sx, tx, sy, ty = t  # scale about b's centre by kk, then shift by (dx, dy)
        ts = np.stack([sx * kk, kk * (tx - 0.5) + 0.5 + dx, sy * kk, kk * (ty - 0.5) + 0.5 + dy], 1)
        t = ts[int(np.argmin(_colour_cost(a, b, ts, cfg, with_share=False)[1]))]
    # A copy may also be turned a few degrees (the share then counts the frame's rotated edges):
    # the lowest share over cfg.colour_angles, rotating a's warped thumbnail about b's centre.
    # The caller scores min(feature, colour): once the colour score reaches `enough` (the
    # feature score), no rotation can raise it, and the other angles are not tried.
    share, turned = 1.0, 0.0
    for angle in cfg.colour_angles:
        share_a = float(_colour_cost(a, b, t[None], cfg, angle=angle)[0][0])
        if share_a < share:
            share, turned = share_a, angle
        if 1 - share / cfg.colour_share_zero >= enough:
            break
    return share, t, turned


def structure_difference(a: ImagePatches, b: ImagePatches, t: np.ndarray, cfg: DuplicateConfig,
                         enough: float = 0.0, turned: bool = False) -> float:
    """Share of the textured blocks of one image whose content the other does not show where the
    transform t (a -> b) puts it: 0 for a copy, ~0.1-0.4 for a front and back of one garment.

    The colour thumbnails place t to about 1/32 of the frame and cannot tell a near-symmetric
    product from its mirror image, so t is refined on the grey DETAIL copies first: t and its
    mirror, each at cfg.structure_scales, shifted by phase correlation; the lowest share wins.
    `turned`: the colours agreed best with one image turned a few degrees (a turned copy), which
    no shift lines up: t and its mirror are refined by ECC instead (a rotation, ~10 ms each).
    The comparison runs in the frame of the zoomed-out image (the zoomed-in one is shrunk, not
    the other blown up: a blurred block does not correlate with a sharp one). Blocks touching an
    added mark (`ignored` regions) or leaving the other image are not compared. The search stops
    once the share is at most `enough` (the caller's score cannot rise further)."""
    t = np.asarray(t, np.float32)
    if abs(t[0]) > 1:
        a, b, t = b, a, _inverse(t)
    blocks = _textured_blocks(b, cfg)
    if blocks.sum() < 4:
        return 0.0  # nothing to compare (a plain product): no verdict
    best = 1.0
    for base in (t, np.array([-t[0], 1 - t[1], t[2], t[3]], np.float32)):
        for k in ((1.0,) if turned else cfg.structure_scales):  # scale about b's centre
            tt = np.array([base[0] * k, k * (base[1] - 0.5) + 0.5, base[2] * k, k * (base[3] - 0.5) + 0.5], np.float32)
            best = min(best, _blocks_off(a.detail, b.detail, tt, blocks, cfg, turned))
            if best <= enough:
                return best
    return best


def _blocks(im: np.ndarray, s: int, dy: int = 0, dx: int = 0) -> np.ndarray:
    """The (g, g) grid of s x s blocks of a square image, one pixel in from its edges (room for
    the shift search), moved by (dy, dx): (g, g, s * s)."""
    g = (im.shape[0] - 2) // s
    part = im[1 + dy:1 + dy + g * s, 1 + dx:1 + dx + g * s]
    return part.reshape(g, s, g, s).transpose(0, 2, 1, 3).reshape(g, g, s * s)


def _textured_blocks(im: ImagePatches, cfg: DuplicateConfig) -> np.ndarray:
    """(g, g) bool: which blocks of im's grid have texture and hold no added mark."""
    n = im.detail.shape[0]
    s = n // cfg.structure_blocks
    out = _blocks(im.detail, s).std(axis=2) >= cfg.structure_min_std
    if im.ignore is not None and len(im.ignore):
        g = out.shape[0]
        y, x = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        boxes = np.stack([1 + x * s, 1 + y * s, 1 + (x + 1) * s, 1 + (y + 1) * s], -1).reshape(-1, 4) / n
        out &= ~im.touches_ignored(boxes.astype(np.float32)).reshape(g, g)
    return out


def _blocks_off(a: np.ndarray, b: np.ndarray, t: np.ndarray, blocks: np.ndarray, cfg: DuplicateConfig,
                turned: bool = False) -> float:
    """Share of b's textured `blocks` whose best normalised cross-correlation with a, warped by t
    and aligned by _refine, within a pixel either way, is below cfg.structure_ncc.
    Not compared: blocks that t maps from outside a, and blocks that are flat in a (texture on
    one side only: a mark added on the white around the product, or detail lost to a blur; a
    face against the back of a head has texture on both)."""
    n = b.shape[0]
    s = n // cfg.structure_blocks
    warped, inside = _warp(a, t, n)
    warped, inside = _refine(warped, b, inside.astype(np.float32), turned)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))  # the block and its one-pixel margin
    use = blocks & (_blocks(inside, s).min(axis=2) >= 0.5) & (_blocks(warped, s).std(axis=2) >= cfg.structure_min_std)
    if use.sum() < 4:
        return 0.0
    bb = _blocks(b, s)[use]
    bb = bb - bb.mean(1, keepdims=True)
    bb /= np.sqrt((bb * bb).sum(1, keepdims=True)) + 1e-6
    best = np.full(len(bb), -1.0, np.float32)
    for dy_ in (-1, 0, 1):
        for dx_ in (-1, 0, 1):
            w = _blocks(warped, s, dy_, dx_)[use]
            w = w - w.mean(1, keepdims=True)
            ncc = (w * bb).sum(1) / (np.sqrt((w * w).sum(1)) + 1e-6)
            np.maximum(best, ncc, out=best)
    return float((best < cfg.structure_ncc).mean())


def _refine(warped: np.ndarray, b: np.ndarray, inside: np.ndarray, turned: bool) -> tuple[np.ndarray, np.ndarray]:
    """warped (a under the pair's transform) aligned to b: shifted by phase correlation (the
    thumbnails placed it to about 1/32 of the frame), or, when `turned`, turned and shifted by ECC
    (cv2.findTransformECC, a rotation and a shift); unchanged when neither finds a small one."""
    n = b.shape[0]
    flags = cv2.INTER_LINEAR
    m = np.eye(2, 3, dtype=np.float32)
    if turned:
        try:
            _, m = cv2.findTransformECC(b, warped, m, cv2.MOTION_EUCLIDEAN,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5),
                                        (inside > 0.5).astype(np.uint8), 5)
        except cv2.error:  # did not converge
            return warped, inside
        flags |= cv2.WARP_INVERSE_MAP
        ok = abs(float(m[1, 0])) < 0.25 and np.abs(m[:, 2]).max() < n / 6  # up to ~14 degrees about the centre
    else:
        dx, dy = _phase_shift(warped, b, _hanning(n) * inside)
        m[:, 2] = dx, dy
        ok = max(abs(dx), abs(dy)) < n / 32  # a residual of the thumbnails' placement, not a jump elsewhere
    if not ok:
        return warped, inside
    return (cv2.warpAffine(warped, m, (n, n), flags=flags, borderMode=cv2.BORDER_REPLICATE),
            cv2.warpAffine(inside, m, (n, n), flags=flags))


def _phase_shift(x: np.ndarray, y: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """The shift (dx, dy) carrying x onto y, by phase correlation on copies zero-padded to an even
    size that OpenCV needs not pad further: at an odd padded size (224 -> 225) cv2.phaseCorrelate
    is biased by half a pixel (5.0.0: two identical images come out 0.5 px apart), and at a size
    that needs no padding it applies the window to its inputs in place."""
    n = x.shape[0]
    p = 2 * cv2.getOptimalDFTSize((n + 1) // 2) - n
    x, y, window = (cv2.copyMakeBorder(v, 0, p, 0, p, cv2.BORDER_CONSTANT, value=0) for v in (x, y, window))
    return cv2.phaseCorrelate(x, y, window)[0]


@functools.lru_cache(maxsize=4)
def _hanning(n: int) -> np.ndarray:
    return cv2.createHanningWindow((n, n), cv2.CV_32F)


def _foreground(lab: np.ndarray) -> np.ndarray:
    """Not studio white: darker than L 90 or visibly coloured."""
    return (lab[..., 0] < 90) | (np.abs(lab[..., 1]) + np.abs(lab[..., 2]) > 10)


def find_duplicates(images: list[ImagePatches], cfg: DuplicateConfig | None = None,
                    run: Callable[[Callable, list], list] = lambda fn, items: [fn(x) for x in items]
                    ) -> list[PairMatch]:
    """Every pair (i < j) with at least one box match, scored; the caller thresholds. `run(fn,
    items)` -> [fn(item) ...] in order: the pairs' checks, which a caller may spread over threads
    (stage1.model runs them on two: OpenCV's and numpy's larger steps release the GIL)."""
    cfg = cfg or DuplicateConfig()
    if len(images) < 2:
        return []
    owner = np.concatenate([np.full(len(im.feats), i) for i, im in enumerate(images)])
    local = np.concatenate([np.arange(len(im.feats)) for im in images])
    feats = np.ascontiguousarray(np.concatenate([im.feats for im in images]), dtype=np.float32)
    # Enough neighbours to get past the box's own image (its own boxes are usually nearest).
    k = min(len(feats), cfg.k * (len(images) - 1) + max(len(im.feats) for im in images))
    # Every box's k most similar boxes, best first: a few hundred boxes, so one matrix product and a
    # partial sort (~9 ms; a flat faiss index took ~14 ms for the same neighbours).
    every = feats @ feats.T
    nbrs = np.argpartition(-every, k - 1, axis=1)[:, :k]
    sims = np.take_along_axis(every, nbrs, 1)
    best_first = np.argsort(-sims, axis=1, kind="stable")
    nbrs, sims = np.take_along_axis(nbrs, best_first, 1), np.take_along_axis(sims, best_first, 1)  # (P, k)
    # Each box's k best matches in every other image (rows are sorted by similarity).
    nb_owner = np.where(nbrs >= 0, owner[np.maximum(nbrs, 0)], -1)
    valid = (nbrs >= 0) & (sims >= cfg.match_min_sim) & (nb_owner != owner[:, None])
    keep = np.zeros_like(valid)
    for o in range(len(images)):
        m = valid & (nb_owner == o)
        keep |= m & (np.cumsum(m, axis=1) <= cfg.k)
    rows, cols = np.nonzero(keep)
    q = nbrs[rows, cols]
    # Each match once, seen from the lower image index (a match found from both sides keeps its
    # first place and its last similarity, as a dict would); grouped per pair, strongest first.
    i_, j_, a_, b_, s_ = owner[rows], owner[q], local[rows], local[q], sims[rows, cols]
    swap = i_ > j_
    i_, j_, a_, b_ = np.where(swap, j_, i_), np.where(swap, i_, j_), np.where(swap, b_, a_), np.where(swap, a_, b_)
    boxes = max(len(im.feats) for im in images)
    key = ((i_ * len(images) + j_) * boxes + a_) * boxes + b_
    _, first = np.unique(key, return_index=True)
    _, last = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - last
    pair_of = i_[first] * len(images) + j_[first]
    order = np.lexsort((first, -s_[last], pair_of))
    pairs: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
    for p_, a, b, s in zip(pair_of[order].tolist(), a_[first][order].tolist(), b_[first][order].tolist(),
                           s_[last][order].tolist()):
        pairs.setdefault(divmod(p_, len(images)), []).append((a, b, s))
    found = run(lambda pair: _match_pair(images, pair[0], pair[1], cfg), list(pairs.items()))
    return [m for m in found if m is not None]


def _match_pair(images: list[ImagePatches], ij: tuple[int, int], candidates: list[tuple[int, int, float]],
                cfg: DuplicateConfig) -> PairMatch | None:
    """One pair's verification (find_duplicates): None when a gate stops it."""
    i, j = ij
    a_im, b_im = images[i], images[j]
    # The whole of one image against every large region of the other: a zoom's whole image
    # resembles the region it came from more than any proposal of it.
    reg_s = np.r_[a_im.region_feats @ b_im.feats[0], b_im.region_feats @ a_im.feats[0]]
    # Cheap gate before the costly check: a duplicate's whole image resembles some region of
    # the other (>= 0.79 for 99% of the evaluation duplicates; 68% of non-duplicates fall below).
    whole = max(float((b_im.feats @ a_im.feats[0]).max()), float((a_im.feats @ b_im.feats[0]).max()),
                float(reg_s.max()) if len(reg_s) else 0.0)
    if whole < cfg.pair_gate:
        return None
    top = candidates[: cfg.hypotheses]
    # First the thumbnails' zoom/crop/mirror placements; then, unless one is already sure,
    # the best box matches (they also catch what the thumbnails cannot: a small rotation).
    ts, flips, lowest = template_hypotheses(a_im, b_im, cfg)
    # an added banner may cover much of the product: pairs with marks found are always checked
    marked = any(getattr(im, "ignored", None) is not None and im.ignored.any() for im in (a_im, b_im))
    if not marked and lowest > cfg.colour_gate and rotated_difference(a_im, b_im, cfg) > cfg.colour_gate:
        return None  # no zoom, crop, mirror or turn of one thumbnail matches the other's colours
    best = score_pair(a_im, b_im, ts, flips, cfg)
    if best[0] < cfg.sure and top:
        box_a = a_im.norm_boxes[[m[0] for m in top]]
        box_b = b_im.norm_boxes[[m[1] for m in top]]
        # A box match says nothing about mirroring: each proposes both.
        ts = np.concatenate([_transforms(box_a, box_b, False), _transforms(box_a, box_b, True)])
        flips = np.r_[np.zeros(len(top), bool), np.ones(len(top), bool)]
        best = max(best, score_pair(a_im, b_im, ts, flips, cfg), key=lambda r: r[0])
    score, t, flipped, colour, angle = best
    structure = 0.0
    if t is not None and score >= cfg.structure_from and a_im.detail is not None and b_im.detail is not None:
        structure = structure_difference(a_im, b_im, t, cfg, enough=(1 - score) * cfg.structure_share_zero,
                                         turned=angle != 0)
        score = min(score, max(0.0, 1 - structure / cfg.structure_share_zero))
    matches = []
    if t is not None:
        for a, b, s in candidates:  # report the strongest matches that the winning transform explains
            mapped = _apply(t, a_im.norm_boxes[[a]])[0]
            if _iou(mapped, b_im.norm_boxes[b]) >= 0.5:
                matches.append((a, b, s))
            if len(matches) == cfg.max_matches_reported:
                break
    return PairMatch(i, j, score, matches, flipped, colour, t, structure)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
