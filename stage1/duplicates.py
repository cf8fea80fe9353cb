"""Image-pair rule `duplicated_view`: EdgeBoxes proposals + patch features + faiss kNN
(paper §3.3.2, Figure 3).

Per image: EdgeBoxes proposals (stage1.proposals; the whole image is always proposal 0) and,
for each box, a feature average-pooled from the backbone's maps. There is ONE forward pass per
image: boxes only choose which cells of the maps to pool (integral images, so any box costs
the same). A box feature is the stride-16 patch map (576 channels, local detail) and the
stride-32 final map (1280 channels, more invariant to scale and re-encoding), each pooled and
L2-normalised, concatenated.

Across the request's images: one faiss inner-product index over every box; each box's nearest
neighbours in the other images are candidate matches. Each of a pair's best matches proposes a
geometric transform (scale + translation, plain or mirrored) that would carry one box onto the
other. The transform is then checked everywhere: every other proposal of either image is mapped
into the other image and the features pooled THERE are compared with its own. A crop, zoom,
flip, re-encode or small rotation keeps that agreement high for every proposal; two different
views of a product may share one look-alike region but nothing consistent around it. (Matching
proposals to proposals instead needed EdgeBoxes to find the same boxes in both images, which
at 128 px it often did not: crop/zoom recall at P=0.95 was 0.47.)

The pair's score is the mean re-pooled cosine under the best transform, rescaled to [0, 1];
the matched boxes are the explanation (paper Figure 3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


class PooledMaps:
    """Integral images of one image's feature maps: mean features of any box in O(1)."""

    def __init__(self, patch_map: np.ndarray, final_tokens: np.ndarray):
        side = int(round(len(final_tokens) ** 0.5))
        assert side * side == len(final_tokens), final_tokens.shape
        self.maps = [_integral(patch_map), _integral(final_tokens.reshape(side, side, -1))]

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
    feats: np.ndarray = field(init=False)  # (N, C) unit-norm box features
    norm_boxes: np.ndarray = field(init=False)  # boxes / size, in [0, 1]

    def __post_init__(self):
        w, h = self.size
        self.norm_boxes = (np.asarray(self.boxes, np.float32) / np.array([w, h, w, h], np.float32))
        self.feats = self.maps.pool(self.norm_boxes)
        mask = ~self.touches_ignored(self.norm_boxes)
        self.check_boxes, self.check_feats = self.norm_boxes[mask], self.feats[mask]

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


def score_pair(a: ImagePatches, b: ImagePatches, candidates: list[tuple[int, int, float]],
               cfg: DuplicateConfig) -> tuple[float, np.ndarray | None, bool]:
    """Best verified transform among the top box matches -> (score in [0, 1], transform, flipped)."""
    best = (0.0, None, False)
    top = sorted(candidates, key=lambda m: -m[2])[: cfg.hypotheses]
    if not top:
        return best
    ia = np.array([m[0] for m in top])
    ib = np.array([m[1] for m in top])
    for flipped in (False, True):
        ts = _transforms(a.norm_boxes[ia], b.norm_boxes[ib], flipped)
        sx, sy = np.abs(ts[:, 0]), ts[:, 2]
        ok = (np.maximum(sx, 1 / sx) <= cfg.max_scale) & (np.maximum(sy, 1 / sy) <= cfg.max_scale) & \
             (np.maximum(sx / sy, sy / sx) <= cfg.max_anisotropy)
        # Matches often agree on one transform (that is the point): check each distinct one once.
        _, first = np.unique(np.round(ts[ok] / cfg.same_transform), axis=0, return_index=True)
        distinct = ts[ok][np.sort(first)]
        for t, (mean, n) in zip(distinct, check_transforms(a, b, distinct, cfg)):
            if n < cfg.min_checked:
                continue
            score = float(np.clip((mean - cfg.sim_floor) / (1 - cfg.sim_floor), 0, 1))
            if score > best[0]:
                best = (score, t, flipped)
            if best[0] >= cfg.sure:  # no other transform can change the verdict
                return best
    return best


def find_duplicates(images: list[ImagePatches], cfg: DuplicateConfig | None = None) -> list[PairMatch]:
    """Every pair (i < j) with at least one box match, scored; the caller thresholds."""
    import faiss

    cfg = cfg or DuplicateConfig()
    if len(images) < 2:
        return []
    faiss.omp_set_num_threads(1)  # a few hundred vectors: OpenMP threads only add contention
    owner = np.concatenate([np.full(len(im.feats), i) for i, im in enumerate(images)])
    local = np.concatenate([np.arange(len(im.feats)) for im in images])
    feats = np.ascontiguousarray(np.concatenate([im.feats for im in images]), dtype=np.float32)
    index = faiss.IndexFlatIP(feats.shape[1])
    index.add(feats)
    # Enough neighbours to get past the box's own image (its own boxes are usually nearest).
    k = min(len(feats), cfg.k * (len(images) - 1) + max(len(im.feats) for im in images))
    sims, nbrs = index.search(feats, k)  # (P, k)
    # Each box's k best matches in every other image (rows are sorted by similarity).
    nb_owner = np.where(nbrs >= 0, owner[np.maximum(nbrs, 0)], -1)
    valid = (nbrs >= 0) & (sims >= cfg.match_min_sim) & (nb_owner != owner[:, None])
    keep = np.zeros_like(valid)
    for o in range(len(images)):
        m = valid & (nb_owner == o)
        keep |= m & (np.cumsum(m, axis=1) <= cfg.k)
    rows, cols = np.nonzero(keep)
    q = nbrs[rows, cols]
    pairs: dict[tuple[int, int], dict[tuple[int, int], float]] = {}
    for p_, q_, s_ in zip(rows.tolist(), q.tolist(), sims[rows, cols].tolist()):
        i, j = int(owner[p_]), int(owner[q_])
        a, b = int(local[p_]), int(local[q_])
        if i > j:  # keep each match once, seen from the lower image index
            i, j, a, b = j, i, b, a
        pairs.setdefault((i, j), {})[(a, b)] = s_
    out = []
    for (i, j), found in sorted(pairs.items()):
        # Cheap gate before the costly check: a duplicate's whole image resembles some region of
        # the other (>= 0.79 for 99% of the evaluation duplicates; 68% of non-duplicates fall below).
        a_im, b_im = images[i], images[j]
        whole = max(float((b_im.feats @ a_im.feats[0]).max()), float((a_im.feats @ b_im.feats[0]).max()))
        if whole < cfg.pair_gate:
            continue
        candidates = [(a, b, s) for (a, b), s in found.items()]
        score, t, flipped = score_pair(images[i], images[j], candidates, cfg)
        matches = []
        if t is not None:  # report the strongest matches that the winning transform explains
            for a, b, s in sorted(candidates, key=lambda m: -m[2]):
                mapped = _apply(t, images[i].norm_boxes[[a]])[0]
                if _iou(mapped, images[j].norm_boxes[b]) >= 0.5:
                    matches.append((a, b, s))
                if len(matches) == cfg.max_matches_reported:
                    break
        out.append(PairMatch(i, j, score, matches, flipped))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
