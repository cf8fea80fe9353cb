"""The product's colour, named in a shopper's words, and checked against the title and across images.

Why a rule and not the models: MUIsC sees colour only through a frozen 224 px map and about 70
training styles, too few to ground colour words (on held-out real styles it caught 0 of 11
titles naming another colour). A colour name is cheap to compute and to explain: "the title says
red, but the product in image 1 is mostly blue".

1. The product: the pixels that differ from the frame's background (the median of the border),
   minus skin (a model wears most apparel; skin would read as orange, brown or pink).
2. Each product pixel is named by the 11 basic colour terms (Berlin & Kay) from its hue,
   saturation and value; the image's colour is the share of its product pixels by name.
3. A colour word of the title is accepted by its own name and, in part, by its neighbours (a
   purple garment photographs partly blue; navy is blue). A neighbour's pixel counts by how
   close it is to the title colour's own range: half at the boundary, nothing 30 degrees of hue
   (or 30 units of lightness, for black, gray and white) away. A flat quarter, as before
   2026-11-30, let any neighbour pass: a blue jacket titled purple scored what a purple one
   with blue shading does. Pairs without a range to measure (brown and its warm neighbours)
   keep the flat quarter.
4. Brown (beige, tan, khaki) is the colour that step 1 hides: a brown product is skin-toned.
   For a brown title, skin-toned pixels count as a neighbour. On the Magento train+val styles,
   2 of 5 clean brown listings were rejected as title mismatches without it (one jacket read
   68% skin), none with it.

Thresholds are chosen on the Magento train+val styles (`python -m stage1.colour_eval`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

NAMES = ("black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")

# A title's colour words -> the basic names they mean, main first. Shade words span basic
# names (teal photographs green as often as blue, navy as black, olive as yellow-green, gold as
# orange or brown): each of them accepts all of its names, so a teal product is not rejected for
# reading green; the check is looser for them by as much. Plain shopper words; several languages
# would go here; unknown words are simply not checked.
WORDS = {
    "black": ("black",), "white": ("white",), "gray": ("gray",), "grey": ("gray",), "silver": ("gray", "white"),
    "charcoal": ("gray", "black"), "red": ("red",), "burgundy": ("red", "purple", "brown"),
    "maroon": ("red", "brown", "purple"), "orange": ("orange",), "yellow": ("yellow",),
    "gold": ("yellow", "orange", "brown"), "green": ("green",), "olive": ("green", "yellow", "brown"),
    "khaki": ("brown", "green", "yellow"), "blue": ("blue",), "navy": ("blue", "black"), "teal": ("blue", "green"),
    "turquoise": ("blue", "green"), "purple": ("purple",), "violet": ("purple", "blue"),
    "lavender": ("purple", "blue", "pink"), "pink": ("pink",), "brown": ("brown",), "beige": ("brown", "white", "yellow"),
    "tan": ("brown",),
}
# The names a colour word accepts in a photo: its own and its photographic neighbours.
ACCEPTS = {
    "black": ("black", "gray"), "white": ("white", "gray"), "gray": ("gray", "black", "white"),
    "red": ("red", "pink", "orange"), "orange": ("orange", "red", "yellow", "brown"),
    "yellow": ("yellow", "orange"), "green": ("green", "yellow"), "blue": ("blue", "purple"),
    "purple": ("purple", "blue", "pink"), "pink": ("pink", "red", "purple"),
    "brown": ("brown", "orange", "red", "yellow"),  # tan, beige and khaki photograph yellowish
}
# Title colours whose products look like skin: skin-toned pixels count for them, as a neighbour.
SKIN_LIKE = ("brown",)


@dataclass(frozen=True)
class ColourConfig:
    side: int = 112  # px, longest side the colours are counted at
    border: float = 0.04  # share of each side taken as the background's sample
    min_distance: float = 20.0  # Lab distance (8-bit scale) from the background: the product
    max_border_spread: float = 12.0  # median Lab L1 distance of the border to its median: a plain backdrop
    min_product: float = 0.03  # share of the frame; less: the image's colour is not judged
    skin: bool = True  # leave skin out of the product
    # A neighbour's pixel counts `near_credit` at the title colour's boundary, fading to 0 at
    # `hue_reach` degrees (chromatic pairs) or `lightness_reach` L units (black/gray/white) off
    # it; `flat_near` for pairs without a range (brown's). Chosen on the Magento train+val
    # styles (`python -m stage1.colour_eval`): at the shipped title_colour_min 0.25, clean main
    # photos below 13 of 278 and clean views below 8 of 101 as with the flat quarter, titles
    # naming another colour caught 442 of 512 against 413.
    near_credit: float = 0.5
    hue_reach: float = 30.0
    lightness_reach: float = 30.0
    flat_near: float = 0.25


def title_colours(title: str) -> list[tuple[str, str]]:
    """The colour words of a title with each basic name they mean, in order:
    "Chaz Hoodie, Navy" -> [("navy", "blue"), ("navy", "black")]."""
    out: list[tuple[str, str]] = []
    for w in re.findall(r"[a-z]+", title.lower()):
        for n in WORDS.get(w, ()):
            if n not in [x for _, x in out]:
                out.append((w, n))
    return out


def lch(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) uint8 RGB -> CIE L (0-100), chroma and hue angle (degrees) per pixel."""
    import cv2

    lab = cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    return L, np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360


# Hue angles (CIE LCh, degrees) where each chromatic name ends, going round from pink.
HUES = ((12, "pink"), (45, "red"), (75, "orange"), (120, "yellow"), (200, "green"), (300, "blue"),
        (338, "purple"), (360, "pink"))
SKIN = len(NAMES)  # the index of "skin": product pixels that are named nothing
NEAR = SKIN + 1  # shares[NEAR + k]: the credit NAMES[k] gets from its neighbours' pixels
# Each chromatic name's hue range (from, to), going round; the neutrals' lightness ranges.
HUE_RANGE = {name: (HUES[k - 1][0] if k else HUES[-2][0], end) for k, (end, name) in enumerate(HUES[:-1])}
L_RANGE = {"black": (0.0, 30.0), "gray": (30.0, 88.0), "white": (88.0, 100.0)}


@functools.lru_cache(maxsize=4)
def _credit_tables(cfg: "ColourConfig") -> tuple[np.ndarray, np.ndarray]:
    """(len(NAMES), 360) credit of a pixel at each whole hue degree and (len(NAMES), 101) at each
    whole L, toward each name with a range: `near_credit` at the range, 0 `*_reach` away."""
    hue, light = np.zeros((len(NAMES), 360), np.float32), np.zeros((len(NAMES), 101), np.float32)
    hh, ll = np.arange(360) + 0.5, np.arange(101) + 0.5
    for k, name in enumerate(NAMES):
        if name in HUE_RANGE:
            lo, hi = HUE_RANGE[name]
            d = np.where((hh - lo) % 360 <= (hi - lo) % 360, 0.0, np.minimum((lo - hh) % 360, (hh - hi) % 360))
            hue[k] = cfg.near_credit * np.clip(1 - d / cfg.hue_reach, 0, 1)
        if name in L_RANGE:
            lo, hi = L_RANGE[name]
            light[k] = cfg.near_credit * np.clip(1 - np.maximum(lo - ll, ll - hi).clip(0) / cfg.lightness_reach, 0, 1)
    return hue, light


def _near_credit(L: np.ndarray, h: np.ndarray, names: np.ndarray, cfg: "ColourConfig") -> np.ndarray:
    """(len(NAMES),) each name's credit from its neighbours' pixels, as a share of the product:
    `near_credit` at the name's own range, fading with the distance to it (see ColourConfig).
    Counted from each name's histogram of whole hue degrees and L units (two bincounts, not a
    pass over the pixels per pair)."""
    rows = len(NAMES) + 1
    by_hue = np.bincount(names * 360 + np.minimum(h.astype(np.int64), 359), minlength=rows * 360).reshape(rows, 360)
    by_l = np.bincount(names * 101 + np.clip(L.astype(np.int64), 0, 100), minlength=rows * 101).reshape(rows, 101)
    counts = by_hue.sum(1)
    hue, light = _credit_tables(cfg)
    out = np.zeros(len(NAMES), np.float32)
    for k, name in enumerate(NAMES):
        for near in ACCEPTS[name][1:]:
            j = NAMES.index(near)
            if not counts[j]:
                continue
            if name in HUE_RANGE and near in HUE_RANGE:
                out[k] += float(by_hue[j] @ hue[k])
            elif name in L_RANGE and near in L_RANGE:
                out[k] += float(by_l[j] @ light[k])
            else:
                out[k] += cfg.flat_near * float(counts[j])
        if name in SKIN_LIKE:
            out[k] += cfg.flat_near * float(counts[SKIN])
    return out / max(len(names), 1)


def name_pixels(rgb: np.ndarray, skin: bool = True) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) index into NAMES, or SKIN for a skin tone (when `skin`)."""
    return _name(*lch(rgb), skin)


def _name(L: np.ndarray, C: np.ndarray, h: np.ndarray, skin: bool) -> np.ndarray:
    idx = {n: i for i, n in enumerate(NAMES)}
    out = np.full(len(L), idx["pink"])
    for end, name in reversed(HUES):
        out = np.where(h < end, idx[name], out)
    warm = (out == idx["red"]) | (out == idx["orange"]) | (out == idx["yellow"])
    # light, soft reds are pink; dark warm colours are brown
    out = np.where((out == idx["red"]) & (L > 65) & (C < 45), idx["pink"], out)
    out = np.where(warm & (L < 45) & (C < 45), idx["brown"], out)
    if skin:  # a model's skin: warm, moderately light, moderately saturated
        out = np.where((h > 25) & (h < 75) & (C > 8) & (C < 38) & (L > 25) & (L < 82), SKIN, out)
    grey = C < 7 + 0.05 * L  # a near-neutral (a bit more room for light shades)
    out = np.where(grey, np.where(L > 88, idx["white"], idx["gray"]), out)
    out = np.where(((L < 20) & (C < 14)) | (L < 12) | ((L < 30) & (C < 10)), idx["black"], out)
    return out


def product_mask(rgb: np.ndarray, cfg: ColourConfig = ColourConfig()) -> np.ndarray | None:
    """What differs from a plain backdrop (the median of the frame's border), or None without one."""
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    h, w = lab.shape[:2]
    bh, bw = max(1, int(h * cfg.border)), max(1, int(w * cfg.border))
    ring = np.concatenate([lab[:bh].reshape(-1, 3), lab[-bh:].reshape(-1, 3),
                           lab[:, :bw].reshape(-1, 3), lab[:, -bw:].reshape(-1, 3)])
    bg = np.median(ring, axis=0)
    if np.median(np.abs(ring - bg).sum(1)) > cfg.max_border_spread:
        return None  # no plain backdrop (a scene, a pattern): the product cannot be told apart
    return np.linalg.norm(lab - bg, axis=2) > cfg.min_distance


def colour_shares(rgb: np.ndarray, cfg: ColourConfig = ColourConfig()) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB (224 px is plenty) -> the product's share of each of NAMES, then (index
    SKIN) of skin tones, then (from NEAR) each name's credit from its neighbours' pixels; None
    when too little of the frame is product to judge."""
    if max(rgb.shape[:2]) > cfg.side:  # proportions need few pixels: 4x fewer at 112 than 224
        import cv2

        f = cfg.side / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    mask = product_mask(rgb, cfg)
    if mask is None or mask.mean() < cfg.min_product:
        return None
    L, C, h = lch(rgb[mask])
    names = _name(L, C, h, cfg.skin)
    if (names != SKIN).sum() < cfg.min_product * mask.size:
        return None
    shares = np.bincount(names, minlength=len(NAMES) + 1).astype(np.float32) / len(names)
    return np.concatenate([shares, _near_credit(L, h, names, cfg)])


def named(shares: np.ndarray) -> np.ndarray:
    """The shares of NAMES alone (skin left out), summing to 1."""
    s = shares[: len(NAMES)]
    return s / max(float(s.sum()), 1e-6)


def title_score(shares: np.ndarray, colour: str) -> float:
    """How much of the product shows a title's colour name, relative to its main colour: the
    share of that name plus its neighbours' credit (see ColourConfig), over the largest share
    of a name. 1.0: it is the main colour; 0: not there at all."""
    k = NAMES.index(colour)
    return float(min(1.0, (shares[k] + shares[NEAR + k]) / max(float(shares[: len(NAMES)].max()), 1e-6)))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection of two images' colour shares: 1.0 same colours, 0 none shared."""
    return float(np.minimum(named(a), named(b)).sum())


def describe(shares: np.ndarray) -> str:
    """'mostly blue', 'mostly blue and gray': the names above 25% of the product (skin left out),
    largest first."""
    shares = named(shares)
    top = [NAMES[i] for i in np.argsort(-shares)[:2] if shares[i] >= 0.25] or [NAMES[int(np.argmax(shares))]]
    return "mostly " + " and ".join(top)


@dataclass
class TitleColour:
    """The title's colour against each image: `agree[i]` is True, False, or None (not judged:
    no plain backdrop, or too little product)."""
    words: list[tuple[str, str]]  # (title word, basic name)
    scores: list[float | None]
    agree: list[bool | None]

    @property
    def said(self) -> str:
        """The title's colour words for a sentence: "navy", "red or blue"."""
        return " or ".join(dict.fromkeys(w for w, _ in self.words))

    @property
    def mismatch(self) -> bool:
        """The title names a colour that most judged images do not show: then the title is
        wrong, not the images (one image in another colour is an inconsistent image instead)."""
        judged = [a for a in self.agree if a is not None]
        return bool(self.words) and bool(judged) and sum(judged) < len(judged) / 2


def check_title(title: str, shares: list[np.ndarray | None], min_score: float) -> TitleColour:
    words = title_colours(title)
    scores: list[float | None] = []
    for sh in shares:
        scores.append(None if sh is None or not words else max(title_score(sh, n) for _, n in words))
    return TitleColour(words, scores, [None if s is None else s >= min_score for s in scores])
