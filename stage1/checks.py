"""Explainable checks beside the learned models: pure functions of the pixels (and the original
size), each returning the rule it tests, a score in [0, 1] (>= 0.5: the check says the rule is
broken; higher = more certain), a box in the given pixels when it has one, the measured value
and a sentence a reviewer can read. Thresholds come from `CheckConfig` (part of Stage1Config).

Scores map a measured value linearly through its threshold: score = 0.5 + (value - threshold)
/ (2 * softness), clipped to [0, 1], with the sign chosen so that "worse" is higher. So the
threshold is exactly the 0.5 point and `softness` how far from it the check becomes certain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class CheckConfig:
    # Resolution: longest side of the ORIGINAL image (Amazon/eBay: >= 500 px).
    min_long_side: int = 500
    # Aspect ratio: long/short side above this is far from the square marketplaces ask of the
    # primary (no catalogue rule id: reported as `other`, used for the primary only).
    max_aspect: float = 2.0
    # White background of the primary: white share of the background on the frame's free sides
    # (white_background_share: a product crossing one or two edges is normal).
    min_white_border: float = 0.85
    white_level: int = 235  # a pixel is white when every channel is >= this ...
    white_chroma: int = 14  # ... and its channels differ by at most this
    # Product-to-frame ratio of the primary: longest side of the non-white content / frame side.
    min_fill: float = 0.45  # the data's too-small primaries fill 24-44%
    # Exposure, luminance in [0, 1]: the 99th percentile must reach this (else too dark) ...
    min_highlight: float = 0.6
    # ... and the 2nd percentile must stay below this (else washed out).
    max_shadow: float = 0.58
    # Blur: log10 variance of the Laplacian over the content box at the work size.
    min_log_sharpness: float = 1.15
    # Marks on the background: pieces of content apart from the product, this share of the image.
    mark_min_area: float = 0.0005
    mark_max_area: float = 0.04
    mark_max_count: int = 3
    # Insets: a picture pasted into the photo shows as a rectangle of straight, axis-aligned
    # edges (its frame, or a drop shadow's L). Sides as a share of the image's side ...
    inset_min_side: float = 0.2
    inset_max_side: float = 0.55  # larger: the product itself (a box, a book, a screen)
    inset_step: int = 24  # ... an edge is a channel step of this much across 2 px ...
    # ... and the rectangle counts when its four sides are covered this much on average (0.75
    # = three whole sides: a white frame whose shadow and picture give the other edges).
    # Checked on real clean photos and generated insets (`python -m stage1.inset_eval`).
    inset_min_closed: float = 0.75
    # The ring just outside must show this much white background (a picture laid on a studio
    # photo, not a panel inside a pack's artwork). Off: at 0.3 it also lost the insets laid on
    # full-bleed close-ups (84 against 95 of 150 generated insets on train+val photos) and no
    # real clean photo needed it (`python -m stage1.inset_eval --set inset_ring_white=0.3`);
    # the sides-stop-at-corners and lines-inside tests keep pack panels out.
    inset_ring_white: float = 0.0
    # Pasted pictures hug the image's border (a corner or one side): within this share of the
    # side from it. Further in, a rectangle is more likely a part of the product.
    inset_border_margin: float = 0.1
    # Pixel checks run on a copy at most this size (longest side); the pipeline passes the
    # backbone's 224x224 input so that one resize serves both.
    work_side: int = 224


@dataclass
class CheckResult:
    check: str  # e.g. "resolution"
    rule: str  # a rule id from agpis.rules (or "other")
    score: float
    value: float
    box: tuple[int, int, int, int] | None = None  # in the pixels given to the check
    message: str = ""
    detail: str = ""  # for the rule's feedback template ({detail}), e.g. a colour word
    stats: dict[str, float] = field(default_factory=dict)  # raw measurements (model inputs)
    # Regions that need a closer look (normalised x0, y0, x1, y1), e.g. marks on the background.
    candidates: list[tuple[float, float, float, float]] = field(default_factory=list)


def _score(value: float, threshold: float, softness: float, higher_is_worse: bool) -> float:
    d = (value - threshold) if higher_is_worse else (threshold - value)
    return float(np.clip(0.5 + d / (2 * softness), 0.0, 1.0))


def _small(pixels: np.ndarray, side: int) -> np.ndarray:
    s = side / max(pixels.shape[:2])
    if s >= 1:
        return pixels
    return cv2.resize(pixels, (max(1, round(pixels.shape[1] * s)), max(1, round(pixels.shape[0] * s))),
                      interpolation=cv2.INTER_AREA)


def white_mask(rgb: np.ndarray, cfg: CheckConfig) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mn, mx = cv2.min(cv2.min(r, g), b), cv2.max(cv2.max(r, g), b)  # cv2: ~10x numpy's axis reductions
    return (mn >= cfg.white_level) & (cv2.subtract(mx, mn) <= cfg.white_chroma)


# --- checks on the original size -------------------------------------------------------------

def check_resolution(orig_size: tuple[int, int], cfg: CheckConfig) -> CheckResult:
    long_side = max(orig_size)
    score = _score(long_side, cfg.min_long_side, cfg.min_long_side * 0.3, higher_is_worse=False)
    return CheckResult("resolution", "low_resolution", score, float(long_side), None,
                       f"{orig_size[0]}x{orig_size[1]} px; the longest side should be at least {cfg.min_long_side} px")


def check_aspect(orig_size: tuple[int, int], cfg: CheckConfig) -> CheckResult:
    w, h = orig_size
    ratio = max(w, h) / max(1, min(w, h))
    score = _score(ratio, cfg.max_aspect, 0.5, higher_is_worse=True)
    return CheckResult("aspect_ratio", "other", score, ratio, None,
                       f"aspect ratio {ratio:.1f}:1; a primary image should be close to square")


# --- checks on the pixels ------------------------------------------------------------------------

@dataclass
class Prepared:
    """What every pixel check needs, computed once per image at the work size."""
    rgb: np.ndarray  # (h, w, 3) uint8 at work size
    luma: np.ndarray  # (h, w) uint8
    white: np.ndarray  # (h, w) bool: near-white pixels
    box: tuple[int, int, int, int] | None  # content box at work size (None: nothing but white)
    scale: float  # multiply a work-size coordinate by this to get one in the given pixels


def prepare(pixels: np.ndarray, cfg: CheckConfig) -> Prepared:
    rgb = np.ascontiguousarray(_small(pixels, cfg.work_side))
    white = white_mask(rgb, cfg)
    # Content = not white, opened so that JPEG specks on the background do not count.
    content = cv2.morphologyEx((~white).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    box = None
    cols, rows = np.flatnonzero(content.any(axis=0)), np.flatnonzero(content.any(axis=1))
    if content.sum() >= 0.001 * content.size and len(cols) and len(rows):
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return Prepared(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), white, box, pixels.shape[1] / rgb.shape[1])


def _band(a: np.ndarray) -> np.ndarray:
    """The outer band of an image (4% of the short side), flattened."""
    b = max(1, min(a.shape[:2]) // 25)
    parts = [a[:b], a[-b:], a[b:-b, :b], a[b:-b, -b:]]
    return np.concatenate([p.reshape(-1, *a.shape[2:]) for p in parts])


def white_background_share(white: np.ndarray) -> float:
    """How white the background is, judged where the background is: the larger of the whole
    border band's white share and the mean white share of the two whitest sides. A product or
    a model crossing one or two edges of the frame (legs cut at the knees, a bag filling the
    width) is normal catalogue photography and leaves two sides free; a coloured backdrop or a
    shop photo colours every side. (On the Magento main photos the band alone gave 0.86-0.90,
    at the 0.85 threshold; the two free sides give 1.0; backdrops and shop photos give <= 0.06.)"""
    b = max(1, min(white.shape[:2]) // 25)
    sides = sorted((float(white[:b].mean()), float(white[-b:].mean()), float(white[:, :b].mean()),
                    float(white[:, -b:].mean())))
    return max(float(_band(white).mean()), (sides[-1] + sides[-2]) / 2)


COLOUR_WORDS = (("black", (20, 20, 20)), ("grey", (128, 128, 128)), ("light grey", (200, 200, 200)),
                ("red", (200, 40, 40)), ("orange", (240, 140, 40)), ("yellow", (235, 210, 60)),
                ("green", (60, 150, 70)), ("blue", (50, 90, 190)), ("light blue", (170, 200, 235)),
                ("purple", (120, 60, 150)), ("pink", (235, 150, 180)), ("brown", (120, 80, 45)),
                ("beige", (225, 210, 180)), ("cream", (245, 240, 220)))


def colour_word(rgb: np.ndarray) -> str:
    d = [np.abs(np.asarray(c, np.float32) - rgb).sum() for _, c in COLOUR_WORDS]
    return COLOUR_WORDS[int(np.argmin(d))][0]


def check_white_background(p: Prepared, cfg: CheckConfig) -> CheckResult:
    white = _band(p.white)
    frac = white_background_share(p.white)
    score = _score(frac, cfg.min_white_border, 0.15, higher_is_worse=False)
    band = _band(p.rgb)
    detail = colour_word(np.median(band[~white], axis=0)) if (~white).any() else "white"
    return CheckResult("white_background", "primary_background_not_white", score, frac, None,
                       f"the background is {frac:.0%} white on the frame's free sides (needs "
                       f"{cfg.min_white_border:.0%}); it looks {detail}", detail)


def check_fill(p: Prepared, cfg: CheckConfig) -> CheckResult:
    h, w = p.white.shape
    box = p.box
    fill = 0.0 if box is None else max((box[2] - box[0]) / w, (box[3] - box[1]) / h)
    score = _score(fill, cfg.min_fill, 0.15, higher_is_worse=False)
    full_box = None if box is None else tuple(int(round(v * p.scale)) for v in box)
    return CheckResult("product_fill", "primary_product_too_small", score, fill, full_box,
                       f"the product spans {fill:.0%} of the frame (needs {cfg.min_fill:.0%})")


def check_exposure(p: Prepared, cfg: CheckConfig) -> CheckResult:
    """Too dark: even the brightest pixels are grey (a catalogue shot's white background, a
    shop's lights, the product's highlights all fail to reach white). Too bright: even the
    darkest pixels are light (washed out; the product's shadows and outlines are gone)."""
    lo, hi = np.percentile(p.luma, [2, 99]) / 255.0
    dark = _score(hi, cfg.min_highlight, 0.1, higher_is_worse=False)
    light = _score(lo, cfg.max_shadow, 0.1, higher_is_worse=True)
    stats = {"p2": float(lo), "p99": float(hi)}
    if dark >= light:
        return CheckResult("exposure", "bad_exposure", dark, float(hi), None,
                           f"the brightest pixels reach only {hi:.2f} of white (dark below {cfg.min_highlight:.2f})",
                           "dark", stats)
    return CheckResult("exposure", "bad_exposure", light, float(lo), None,
                       f"the darkest pixels are at {lo:.2f} of white (washed out above {cfg.max_shadow:.2f})",
                       "bright", stats)


def check_blur(p: Prepared, cfg: CheckConfig) -> CheckResult:
    """Variance of the Laplacian over the content's box (the flat white background would dilute
    it), at a fixed working size so that the value does not depend on the decode size."""
    y = p.luma
    if p.box is not None and (p.box[2] - p.box[0]) >= 16 and (p.box[3] - p.box[1]) >= 16:
        x0, y0, x1, y1 = p.box
        y = y[y0:y1, x0:x1]
    sharp = float(np.log10(cv2.Laplacian(y, cv2.CV_32F).var() + 1e-6))
    score = _score(sharp, cfg.min_log_sharpness, 0.3, higher_is_worse=False)
    return CheckResult("blur", "blurry", score, sharp, None,
                       f"sharpness {sharp:.2f} (log10 Laplacian variance; blurry below {cfg.min_log_sharpness:.2f})")


def find_background_marks(p: Prepared, cfg: CheckConfig) -> CheckResult:
    """Small marks standing apart from the product on a clean background: where an added logo,
    price or slogan usually sits (a brand logo above a JD product shot, a shop mark in a corner).
    Only candidates: the text detector looks at each (stage1.model) and the finding needs text.
    Score 0 here; `candidates` holds the marks' boxes, normalised."""
    h, w = p.white.shape
    white_border = white_background_share(p.white)
    result = CheckResult("background_marks", "logo", 0.0, 0.0, None, "", "", {"white_border": white_border})
    if white_border < cfg.min_white_border:  # no clean background to stand apart on
        return result
    content = cv2.morphologyEx((~p.white).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(content, connectivity=8)
    if n <= 2:  # background + at most one piece
        return result
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    if areas.max() < 0.05 * h * w:  # no product-sized piece: a text panel or a pattern, not marks
        return result
    mx, my, mw, mh = stats[main, :4]
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if i == main or not (cfg.mark_min_area * h * w <= area <= cfg.mark_max_area * h * w):
            continue
        # apart from the product: no overlap with the main piece's box (grown by 2 px)
        if x < mx + mw + 2 and mx - 2 < x + bw and y < my + mh + 2 and my - 2 < y + bh:
            continue
        pad_x, pad_y = bw * 0.3 + 2, bh * 0.6 + 2
        result.candidates.append((max(0.0, (x - pad_x) / w), max(0.0, (y - pad_y) / h),
                                  min(1.0, (x + bw + pad_x) / w), min(1.0, (y + bh + pad_y) / h)))
    if len(result.candidates) > cfg.mark_max_count:  # many pieces: a collage, a text panel, a pack
        result.candidates = []
    result.value = float(len(result.candidates))
    result.message = f"{len(result.candidates)} mark(s) apart from the product on the background"
    return result


def _runs(edge: np.ndarray, min_len: int) -> list[tuple[int, int, int]]:
    """(row, start, end) of the horizontal runs of `edge` at least `min_len` long, gaps of up
    to 2 px bridged (JPEG and resizing break a drawn line here and there)."""
    closed = cv2.morphologyEx(edge.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 3), np.uint8))
    # Only rows with that many edge pixels can hold such a run: most rows of a photo do not.
    rows = np.flatnonzero(closed.sum(axis=1, dtype=np.int32) >= min_len)
    d = np.diff(np.pad(closed[rows], ((0, 0), (1, 1))).astype(np.int8), axis=1)
    r, c = np.divmod(np.flatnonzero(d), d.shape[1])  # row-major: each run's start, then its end
    x0, x1 = c[0::2], c[1::2]
    keep = x1 - x0 >= min_len
    return list(zip(rows[r[0::2][keep]].tolist(), x0[keep].tolist(), x1[keep].tolist()))


def _straight_edges(rgb: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge pixels of horizontal (H) and vertical (V) edges, each only at the exact row (column)
    where the step across it peaks, so that only a truly straight edge makes a long run. The
    step is the largest channel difference 2 px apart (the outermost rows stay unpeaked)."""
    h, w = rgb.shape[:2]
    H, V = np.zeros((h, w), bool), np.zeros((h, w), bool)
    d = cv2.absdiff(rgb[2:], rgb[:-2])
    d = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    H[1:-1] = d >= step
    H[2:-2] &= (d[1:-1] >= d[:-2]) & (d[1:-1] >= d[2:])
    d = cv2.absdiff(rgb[:, 2:], rgb[:, :-2])
    d = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    V[:, 1:-1] = d >= step
    V[:, 2:-2] &= (d[:, 1:-1] >= d[:, :-2]) & (d[:, 1:-1] >= d[:, 2:])
    return H, V


def _ring_white(white: np.ndarray, box: tuple[int, int, int, int], near: int = 3, far: int = 8) -> float:
    """White share of the ring `near`..`far` px outside a box (beyond a frame's drop shadow)."""
    x0, y0, x1, y1 = box
    ring = np.zeros_like(white)
    ring[max(0, y0 - far):y1 + far, max(0, x0 - far):x1 + far] = True
    ring[max(0, y0 - near):y1 + near, max(0, x0 - near):x1 + near] = False
    return float(white[ring].mean()) if ring.any() else 0.0


def _runs_past_corners(H: np.ndarray, V: np.ndarray, box: tuple[int, int, int, int], slack: int = 4) -> bool:
    """Whether a side of the box is part of a longer straight edge: it goes on beyond a corner
    by more than `slack` px (a band of a pack, a shelf), where a pasted picture's sides stop."""
    x0, y0, x1, y1 = box

    def beyond(line: np.ndarray, start: int, stop: int) -> bool:  # edge pixels past [start, stop)
        before = line[max(0, start - 3 * slack):max(0, start - slack)]
        after = line[min(len(line), stop + slack):min(len(line), stop + 3 * slack)]
        return bool((before.size and before.all()) or (after.size and after.all()))

    for y in (y0, y1 - 1):
        if beyond(H[max(0, y - 1):y + 2].any(axis=0), x0, x1):
            return True
    for x in (x0, x1 - 1):
        if beyond(V[:, max(0, x - 1):x + 2].any(axis=1), y0, y1):
            return True
    return False


def _side_cover(edges: np.ndarray) -> np.ndarray:
    """Cumulative count, along each row, of edge pixels within 1 px across it: [y, x] counts
    row y's edge pixels (thickened) in [0, x)."""
    thick = edges.copy()
    thick[1:] |= edges[:-1]
    thick[:-1] |= edges[1:]
    return np.pad(np.cumsum(thick, axis=1, dtype=np.int32), ((0, 0), (1, 0)))


def _pairs(ends: list[int], n: int, cfg: CheckConfig) -> np.ndarray:
    """(lo, hi) pairs of candidate side positions as far apart as a picture's side can be."""
    e = np.array(sorted(set(ends)), np.int32)
    lo, hi = np.meshgrid(e, e, indexing="ij")
    keep = (hi - lo >= cfg.inset_min_side * n) & (hi - lo <= cfg.inset_max_side * n)
    return np.stack([lo[keep], hi[keep]], axis=1)


def find_inset(p: Prepared, cfg: CheckConfig) -> CheckResult:
    """A picture inside the picture: a rectangle of straight, axis-aligned edges (a frame, or
    a frame's drop shadow) of 20-55% of the image's side, near the border and off the centre.
    Its sides are where long straight runs are or end; its value is the mean share of its four
    sides that are edge (1 px either way), so 0.75 is three whole sides. Real product edges
    are rarely straight to the pixel over a fifth of the frame on three sides; a pack's bands
    and panels have sides that run on beyond their corners (the pack's outline); a table or a
    text column has lines inside its box. Score 0.5 at `inset_min_closed`."""
    h, w = p.white.shape
    H, V = _straight_edges(p.rgb, cfg.inset_step)
    # straight runs of half a picture's side: (row, start, end) and (column, start, end)
    h_runs, v_runs = _runs(H, int(cfg.inset_min_side * w / 2)), _runs(V.T, int(cfg.inset_min_side * h / 2))
    # the long ones, away from the image's own border, are where a picture's sides can be
    hsegs = [s for s in h_runs if s[2] - s[1] >= int(cfg.inset_min_side * w) and 3 <= s[0] < h - 3]
    vsegs = [s for s in v_runs if s[2] - s[1] >= int(cfg.inset_min_side * h) and 3 <= s[0] < w - 3]
    none = CheckResult("inset", "collage_or_inset", 0.0, 0.0, None, "no framed picture inside the image", "inset")
    if not hsegs or not vsegs:  # a rectangle needs one long run each way at least
        return none
    # candidate sides: the runs, and where the runs of the other direction end
    ys = _pairs([r for r, _, _ in hsegs] + [e for _, a, b in vsegs for e in (a, b - 1)], h, cfg)
    xs = _pairs([c for c, _, _ in vsegs] + [e for _, a, b in hsegs for e in (a, b - 1)], w, cfg)
    if not len(ys) or not len(xs):
        return none
    top, bottom = np.repeat(ys[:, 0], len(xs)), np.repeat(ys[:, 1], len(xs))
    left, right = np.tile(xs[:, 0], len(ys)), np.tile(xs[:, 1], len(ys))
    ch, cv = _side_cover(H), _side_cover(V.T)
    cover = ((ch[top, right + 1] - ch[top, left]) + (ch[bottom, right + 1] - ch[bottom, left])) / (right + 1 - left) \
        + ((cv[left, bottom + 1] - cv[left, top]) + (cv[right, bottom + 1] - cv[right, top])) / (bottom + 1 - top)
    closed = cover / 4
    centre = (left <= w / 2) & (w / 2 <= right) & (top <= h / 2) & (h / 2 <= bottom)  # the product's
    near = np.minimum(np.minimum(left / w, top / h), np.minimum(1 - right / w, 1 - bottom / h)) <= cfg.inset_border_margin
    closed = np.where(centre | ~near, -1.0, closed)  # the cheap conditions first, for all at once
    # Lines inside the box: one long one (a table's rule, a panel's edge) or several half as
    # long (a column of text, whose lines make short straight runs) mean a layout, not a picture.
    lines = [(0, r, a, b) for r, a, b in h_runs] + [(1, c, a, b) for c, a, b in v_runs]
    best, best_box = 0.0, None
    for i in np.argsort(-closed)[:40]:
        if closed[i] < cfg.inset_min_closed - 0.2:
            break
        x0, y0, x1, y1 = int(left[i]), int(top[i]), int(right[i]) + 1, int(bottom[i]) + 1
        if _runs_past_corners(H, V, (x0, y0, x1, y1)):
            continue  # its sides go on beyond it: the outline of something larger
        if cfg.inset_ring_white and _ring_white(p.white, (x0, y0, x1, y1)) < cfg.inset_ring_white:
            continue  # nothing of the background around it: a panel of the product's own
        m = 5  # a frame's inner edge and a shadow's lie within this of its sides
        inside = [b - a for horiz, pos, a, b in lines
                  if ((y0 + m < pos < y1 - m and x0 - 3 <= a and b <= x1 + 3) if horiz == 0 else
                      (x0 + m < pos < x1 - m and y0 - 3 <= a and b <= y1 + 3))]
        if len(inside) >= 3 or any(n >= cfg.inset_min_side * min(h, w) for n in inside):
            continue  # lines inside the box: a table, a text column or a panel layout
        best, best_box = float(closed[i]), (x0, y0, x1, y1)
        break
    if best_box is None:
        return none
    box = tuple(int(round(v * p.scale)) for v in best_box)
    return CheckResult("inset", "collage_or_inset", _score(best, cfg.inset_min_closed, 0.1, higher_is_worse=True),
                       best, box, f"a framed picture inside the image ({best:.0%} of a rectangle's sides are "
                       "straight edges)", "inset")


def run_checks(pixels: np.ndarray, orig_size: tuple[int, int], cfg: CheckConfig) -> dict[str, CheckResult]:
    """Every pixel/size check of one image (the text detector runs separately: it costs more)."""
    p = prepare(pixels, cfg)
    return {r.check: r for r in (
        check_resolution(orig_size, cfg), check_aspect(orig_size, cfg), check_white_background(p, cfg),
        check_fill(p, cfg), check_exposure(p, cfg), check_blur(p, cfg), find_background_marks(p, cfg),
        find_inset(p, cfg))}


# Raw check measurements given to the learned heads beside the backbone features, so that the
# models can use exactly what the explainable checks see (all roughly in [-2, 2]).
CHECK_FEATURES = ("white_border", "fill", "shadow_p2", "highlight_p99", "sharpness", "log2_long_side", "log_aspect")


def check_vector(results: dict[str, CheckResult]) -> np.ndarray:
    exp = results["exposure"].stats
    return np.array([results["white_background"].value, results["product_fill"].value, exp["p2"], exp["p99"],
                     results["blur"].value - 2.0, np.log2(max(results["resolution"].value, 1) / 512),
                     np.log(results["aspect_ratio"].value)], np.float32)
