"""EdgeBoxes region proposals (Zitnick & Dollar, 2014) on thin gradient edges (paper §3.3.2).

The structured-edge model that OpenCV's EdgeBoxes sample uses is not obtainable, and EdgeBoxes
only needs an edge-magnitude map and an orientation map: Sobel magnitude masked by Canny (thin,
one-pixel edges; thick Sobel edges made EdgeBoxes ~10x slower, FACTS.md), orientation as in the
structured-edge recipe. Proposals run on a small copy of the image (`side` px longest side):
EdgeBoxes' cost grows with the edge count, and duplicate matching needs object-sized regions,
not fine detail. Boxes come back in the input image's pixel coordinates.

EdgeBoxes finds object-like regions, but a crop or zoom duplicate needs the region of one image
that IS the other image, which is rarely an object boundary: a fixed multi-scale grid of square
windows is added to the proposals for that (on the evaluation pairs it raised crop/zoom recall
at P=0.95 from 0.03 to 0.35; `agpis eval stage1 --duplicates`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class ProposalConfig:
    side: int = 128  # longest side of the copy EdgeBoxes runs on (~2.5 ms per image at 128)
    max_boxes: int = 24
    min_box_area: float = 0.02  # fraction of the image area; smaller boxes carry too little
    max_aspect_ratio: float = 4.0
    alpha: float = 0.5  # sliding-window step; the default 0.65 searched 3x longer for similar boxes
    beta: float = 0.55  # NMS IoU threshold between proposals
    canny_low: int = 40
    canny_high: int = 120
    # Side fractions of the fixed windows added to the proposals, and their step.
    window_fractions: tuple[float, ...] = (0.55, 0.7, 0.85)
    window_step: float = 0.15


class Proposals(np.ndarray):
    """Boxes (N, 4) as `propose` returns them, also carrying `colour`: the image's colour
    thumbnail (THUMB x THUMB x 3 CIELAB, the whole image squashed to a square like the backbone's
    input, so normalised box coordinates index it). The backbone's maps are nearly blind to hue:
    a shop's colour variants are often ONE photo recoloured (Magento: 48 of 63 val pairs of two
    colours' main photos scored >= 0.75), and only pixels tell them apart. The thumbnail rides on
    the boxes so that every caller that hands proposals to `duplicates.image_patches` passes it."""

    colour: np.ndarray | None = None
    detail: np.ndarray | None = None  # (S, S) float32 grey of the backbone's square copy

    def __array_finalize__(self, obj):
        self.colour = getattr(obj, "colour", None)
        self.detail = getattr(obj, "detail", None)


THUMB = 32  # px: colour is compared on regions of a few % of the frame, not on detail
# px: structure (duplicates.structure_difference) is compared on the backbone's square copy (the
# model has it already): fine enough to show a face against the back of a head, or seams and folds.
DETAIL = 224


def colour_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 (any size) -> (THUMB, THUMB, 3) float32 CIELAB (L 0-100), lightly blurred so that
    a transform off by a pixel still compares like with like."""
    small = cv2.resize(pixels, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2Lab), (3, 3), 0)


def square_copy(pixels: np.ndarray, side: int = DETAIL) -> np.ndarray:
    """The whole image squashed to side x side, as the backbone reads it (area filter to shrink)."""
    shrink = pixels.shape[0] >= side and pixels.shape[1] >= side
    return cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def detail_thumbnail(square: np.ndarray) -> np.ndarray:
    """The square RGB uint8 copy (square_copy) -> float32 grey (0-255). Squashed like the colour
    thumbnail, so that one normalised transform maps both."""
    return cv2.cvtColor(square, cv2.COLOR_RGB2GRAY).astype(np.float32)


def windows(fractions: tuple[float, ...], step: float) -> np.ndarray:
    """A grid of windows (M, 4) in normalised coordinates: for each side fraction f, positions
    every `step` from 0 to 1 - f in both directions (the last one flush with the far edge)."""
    out = []
    for f in fractions:
        n = int(np.floor((1 - f) / step + 1e-6)) + 1
        offsets = np.linspace(0, 1 - f, n) if n > 1 else np.zeros(1)
        out += [[x, y, x + f, y + f] for y in offsets for x in offsets]
    return np.asarray(out, np.float32).reshape(-1, 4)


def edge_maps(gray: np.ndarray, cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """gray (H, W) uint8 -> (edges float32 in [0, 1], orientation float32 in [0, pi))."""
    g = cv2.GaussianBlur(gray, (3, 3), 0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    thin = cv2.Canny(g, cfg.canny_low, cfg.canny_high) > 0
    edges = np.where(thin, mag, 0).astype(np.float32)
    edges /= max(float(edges.max()), 1e-6)
    # Orientation from the smoothed edge map's second derivatives (structured-edge recipe).
    e = cv2.GaussianBlur(edges, (5, 5), 0)
    ox = cv2.Sobel(e, cv2.CV_32F, 1, 0, ksize=3)
    oy = cv2.Sobel(e, cv2.CV_32F, 0, 1, ksize=3)
    oxx = cv2.Sobel(ox, cv2.CV_32F, 1, 0, ksize=3)
    oyy = cv2.Sobel(oy, cv2.CV_32F, 0, 1, ksize=3)
    oxy = cv2.Sobel(ox, cv2.CV_32F, 0, 1, ksize=3)
    orient = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi).astype(np.float32)
    return edges, orient


def propose(pixels: np.ndarray, cfg: ProposalConfig | None = None,
            square: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 -> (boxes (N, 4) float32 x0, y0, x1, y1 in `pixels` coordinates, as
    `Proposals` with the image's colour thumbnail; scores (N,)). The whole image is always proposal 0 (score 1): a whole-image duplicate must
    match even when EdgeBoxes finds nothing on a plain product shot. Then the EdgeBoxes boxes
    (their scores), then the fixed windows (score 0). `square`: the image's square_copy, when the
    caller has it (stage1.model: the backbone's input), else made here."""
    cfg = cfg or ProposalConfig()
    h, w = pixels.shape[:2]
    s = cfg.side / max(h, w)
    small = cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    edges, orient = edge_maps(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cfg)
    eb = cv2.ximgproc.createEdgeBoxes(alpha=cfg.alpha, beta=cfg.beta, minBoxArea=cfg.min_box_area * small.shape[0] * small.shape[1],
                                      maxAspectRatio=cfg.max_aspect_ratio)
    eb.setMaxBoxes(cfg.max_boxes)
    found, scores = eb.getBoundingBoxes(edges, orient)
    boxes = [np.array([0, 0, w, h], np.float32)]
    out_scores = [1.0]
    if len(found):
        xywh = np.asarray(found, np.float32) / s
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        boxes += list(np.clip(xyxy, 0, [w, h, w, h]))
        out_scores += list(np.asarray(scores, np.float32).ravel())
    grid = windows(cfg.window_fractions, cfg.window_step) * np.array([w, h, w, h], np.float32)
    out = np.concatenate([np.stack(boxes), grid]).astype(np.float32).view(Proposals)
    out.colour = colour_thumbnail(small)
    out.detail = detail_thumbnail(square_copy(pixels) if square is None else square)
    return out, np.concatenate([np.asarray(out_scores, np.float32), np.zeros(len(grid), np.float32)])
