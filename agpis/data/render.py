"""Image primitives shared by the sources and the violation renderers: cut-outs, backdrops,
compositing on white, text drawing. Pure functions of their inputs and an explicit rng.

Images are PIL images: RGB for candidates, RGBA for cut-outs (alpha = product).
"""
from __future__ import annotations

import colorsys
import io
import random

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from agpis.data import styles

WHITE = (255, 255, 255)


# --- cut-outs ----------------------------------------------------------------------------------

def cutout_from_plain(img: Image.Image, tol: int = 18) -> Image.Image:
    """Cut a product out of a studio shot on a plain (white or light grey) background.

    Background = pixels close to the border colour AND connected to the border (a flood fill),
    so white parts inside the product (a milk carton's white panels) stay opaque. The alpha edge
    is feathered by one pixel so composites do not show a jagged halo.
    """
    import cv2

    rgb = np.asarray(img.convert("RGB"))
    h, w, _ = rgb.shape
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    bg = np.median(border, axis=0)
    near = (np.abs(rgb.astype(np.int16) - bg).max(axis=2) <= tol).astype(np.uint8)
    # Flood fill from a 1-px frame of "near" pixels: connected background becomes 2.
    padded = np.pad(near, 1, constant_values=1)
    mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(padded, mask, (0, 0), 2)
    background = padded[1:-1, 1:-1] == 2
    alpha = np.where(background, 0, 255).astype(np.uint8)
    alpha = cv2.morphologyEx(alpha, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0)
    out = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    bbox = out.getchannel("A").point(lambda a: 255 if a > 40 else 0).getbbox()
    return out.crop(bbox) if bbox else out


def resize_cut(cut: Image.Image, longest: int, window: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Resize a cut-out so its longest side is `longest` px; with `window` (a box in the resized
    cut-out's pixels) only that part is made, which keeps close-ups of a 4x enlarged cut-out cheap.

    Upscaling (198 px iconic shots to a 512 px frame) uses Lanczos plus a light unsharp mask so
    it looks like a sharp studio shot rather than a blurry enlargement (blur is a violation of
    its own)."""
    w, h = cut.size
    s = longest / max(w, h)
    full = (max(1, round(w * s)), max(1, round(h * s)))
    if window is None:
        window = (0, 0, *full)
    x0, y0, x1, y1 = window
    # The same window in the cut-out's own pixels (full is rounded: clamp to the cut-out).
    box = (min(x0 / s, w), min(y0 / s, h), min(x1 / s, w), min(y1 / s, h))
    out = cut.resize((max(1, x1 - x0), max(1, y1 - y0)), Image.LANCZOS, box=box)
    if s > 1.3:
        rgb = out.convert("RGB").filter(ImageFilter.UnsharpMask(radius=1.6, percent=70, threshold=2))
        rgb.putalpha(out.getchannel("A"))
        out = rgb
    return out


def shift_hue(cut: Image.Image, degrees: float, sat: float = 1.0) -> Image.Image:
    """A different colour variant of the same product: rotate the hue of coloured pixels only
    (whites, greys and blacks of a package stay as they are)."""
    arr = np.asarray(cut.convert("RGBA")).astype(np.float32) / 255
    rgb = arr[..., :3]
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    import cv2

    hsv = cv2.cvtColor((rgb * 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + degrees / 2) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
    shifted = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    chroma = np.clip((mx - mn - 0.08) * 4, 0, 1)[..., None]  # only clearly coloured pixels
    out = rgb * (1 - chroma) + shifted * chroma
    return Image.fromarray(np.dstack([out * 255, arr[..., 3:] * 255]).astype(np.uint8), "RGBA")


def colour_name(cut: Image.Image) -> str | None:
    """The colour word a shopper would use for a cut-out's dominant colour (None if unclear)."""
    import cv2

    arr = np.asarray(cut.convert("RGBA"))
    px = arr[arr[..., 3] > 200][:, :3]
    if len(px) < 50:
        return None
    hsv = cv2.cvtColor(px[None].astype(np.uint8), cv2.COLOR_RGB2HSV)[0].astype(np.float32)
    h, s, v = hsv[:, 0] * 2, hsv[:, 1] / 255, hsv[:, 2] / 255
    coloured = s > 0.3
    if coloured.mean() < 0.35:
        if np.median(v) > 0.75:
            return "white"
        return "black" if np.median(v) < 0.3 else None
    buckets = (("red", 12), ("orange", 40), ("yellow", 62), ("green", 165), ("blue", 255), ("purple", 320),
               ("pink", 345), ("red", 361))
    hc, vc = h[coloured], v[coloured]
    names = np.array([next(n for n, hi in buckets if x < hi) for x in hc[:: max(1, len(hc) // 2000)]])
    vals, counts = np.unique(names, return_counts=True)
    best = vals[counts.argmax()]
    if counts.max() / counts.sum() < 0.6:
        return None  # two colours (a watermelon): no single word fits
    if best in ("orange", "red") and np.median(vc) < 0.5:
        return "brown"
    return str(best)


# --- backdrops ---------------------------------------------------------------------------------

def backdrop(size: tuple[int, int], spec, rng: random.Random) -> Image.Image:
    """A non-white studio backdrop or surface: a flat colour with a soft vignette, or a texture."""
    w, h = size
    if isinstance(spec, tuple):
        base = np.array(spec, np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w / 2) / w, (yy - h * 0.4) / h)
        shade = 1.08 - 0.35 * r ** 2  # studio light falls off towards the corners
        arr = base[None, None, :] * shade[..., None]
    elif spec == "wood":
        rs = np.random.default_rng(rng.getrandbits(32))
        # Planks run across the frame: grain lines along x, wavering slowly, plank seams in y.
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        knots = np.linspace(0, 1, 7)
        waver = np.interp(x[0], knots, rs.normal(0, 0.012, 7)).astype(np.float32)[None, :]
        f = rs.uniform(60, 110)
        rings = 0.7 * np.sin((y + waver) * f) + 0.3 * np.sin((y + 1.7 * waver) * f * 2.3 + 1.0)
        seams = (np.abs(((y * rs.uniform(3, 5)) % 1) - 0.5) > 0.485).astype(np.float32)
        tone = np.array(rng.choice([(160, 112, 70), (196, 150, 100), (120, 80, 50)]), np.float32)
        arr = tone[None, None] * (0.9 + 0.07 * rings[..., None] - 0.25 * seams[..., None]
                                  + rs.normal(0, 0.015, (h, w, 1)))
    elif spec == "marble":
        # Smooth turbulence bends a few thin grey veins across a warm white slab.
        rs = np.random.default_rng(rng.getrandbits(32))
        def smooth(cells):
            return np.asarray(Image.fromarray(rs.integers(0, 255, (cells, cells), np.uint8)).resize((w, h), Image.BICUBIC),
                              np.float32) / 255
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        turb = smooth(4) * 2.5 + smooth(9) * 0.8
        field = np.sin((xx * 0.6 + yy) / w * rs.uniform(5, 9) + turb * 3)
        veins = np.exp(-(field / 0.09) ** 2) * 0.35 + np.exp(-(field / 0.35) ** 2) * 0.12
        base = np.array([238, 236, 232], np.float32) * (0.97 + 0.03 * smooth(6))[..., None]
        arr = base * (1 - veins[..., None] * np.array([0.45, 0.45, 0.42], np.float32))
    elif spec == "linen":
        rs = np.random.default_rng(rng.getrandbits(32))
        weave = rs.normal(0, 1, (h, w)).astype(np.float32)
        weave = (np.cumsum(weave, axis=1) % 3) * 0.01 + rs.normal(0, 0.025, (h, w))
        arr = np.array([214, 204, 186], np.float32)[None, None] * (1 + weave[..., None])
    else:
        raise ValueError(f"unknown backdrop {spec!r}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def near_white(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Pure white, as the rules want (a plain RGB 255 canvas)."""
    return Image.new("RGB", size, WHITE)


# --- compositing -------------------------------------------------------------------------------

def paste(canvas: Image.Image, cut: Image.Image, xy: tuple[int, int], shadow: float = 0.0) -> tuple[int, int, int, int]:
    """Paste a cut-out at top-left xy, with an optional soft contact shadow; returns its box
    clipped to the canvas (x0, y0, x1, y1)."""
    x, y = xy
    w, h = cut.size
    if shadow > 0:
        sw, sh = max(4, int(w * 0.9)), max(3, int(h * 0.08))
        ell = Image.new("L", (sw * 2, sh * 4), 0)
        ImageDraw.Draw(ell).ellipse((sw // 2, sh, sw * 3 // 2, sh * 3), fill=int(255 * shadow))
        ell = ell.filter(ImageFilter.GaussianBlur(max(2, sh // 1.5)))
        dark = Image.new("RGB", ell.size, (60, 60, 60))
        canvas.paste(dark, (x + w // 2 - sw, y + h - sh * 2), ell)
    canvas.paste(cut, (x, y), cut)
    return max(0, x), max(0, y), min(canvas.width, x + w), min(canvas.height, y + h)


def compose(cut: Image.Image, size: int, fill: float, rng: random.Random, bg: Image.Image | None = None,
            offset: tuple[float, float] = (0.0, 0.0), shadow: float | None = None
            ) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The product cut-out on a square canvas (white unless `bg`), its longest side `fill` of the
    frame, centred plus `offset` (fractions of the free margin, -1..1; beyond 1 it leaves the frame).
    Returns the canvas and the product's visible box."""
    canvas = bg.copy() if bg is not None else Image.new("RGB", (size, size), WHITE)
    longest = max(8, int(size * fill))
    s = longest / max(cut.size)
    cw, ch = max(1, round(cut.width * s)), max(1, round(cut.height * s))
    free_x, free_y = size - cw, size - ch
    x = int(free_x / 2 * (1 + offset[0])) if free_x > 0 else int(free_x / 2 + offset[0] * cw / 2)
    y = int(free_y / 2 * (1 + offset[1])) if free_y > 0 else int(free_y / 2 + offset[1] * ch / 2)
    # Only the part inside the canvas is resized (a close-up shows a fraction of the product).
    wx0, wy0 = max(0, -x), max(0, -y)
    wx1, wy1 = min(cw, size - x), min(ch, size - y)
    if wx1 <= wx0 or wy1 <= wy0:
        return canvas, (0, 0, 1, 1)
    c = resize_cut(cut, longest, (wx0, wy0, wx1, wy1))
    if shadow is None:
        shadow = rng.uniform(0.0, 0.35)
    visible_bottom = y + ch <= size  # a contact shadow only when the product's base is in view
    box = paste(canvas, c, (x + wx0, y + wy0), shadow if visible_bottom else 0.0)
    return canvas, box


def fit_square(img: Image.Image, size: int, bg=WHITE) -> Image.Image:
    """Resize a photo to a size x size candidate: centre-crop near-square photos, pad others."""
    w, h = img.size
    if 0.8 <= w / h <= 1.25:
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return img.resize((size, size), Image.LANCZOS)
    img = img.copy()
    img.thumbnail((size, size), Image.LANCZOS)
    canvas = Image.new("RGB", (size, size), bg)
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def reencode(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(img, quality))).convert("RGB")


# --- text --------------------------------------------------------------------------------------

def fit_font(text: str, font_name: str, max_w: int, max_h: int):
    """The largest size of a font that fits the text in max_w x max_h (binary search)."""
    lo, hi = 6, max(8, max_h)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        l, t, r, b = styles.font(font_name, mid).getbbox(text)
        if r - l <= max_w and b - t <= max_h:
            lo = mid
        else:
            hi = mid - 1
    return styles.font(font_name, lo)


def text_size(font, text: str) -> tuple[int, int, int, int]:
    return font.getbbox(text)


def contrast_colour(rgb) -> tuple[int, int, int]:
    return (20, 20, 20) if sum(rgb) / 3 > 150 else (255, 255, 255)


def rotate_hue(rgb, degrees: float):
    h, l, s = colorsys.rgb_to_hls(*(c / 255 for c in rgb))
    r, g, b = colorsys.hls_to_rgb((h + degrees / 360) % 1, l, s)
    return int(r * 255), int(g * 255), int(b * 255)


def product_fill(img: Image.Image) -> float:
    """Longest side of the non-white content over the frame's side (what "fill" means in RULES.md)."""
    diff = ImageChops.difference(img.convert("RGB"), Image.new("RGB", img.size, WHITE)).convert("L")
    bbox = diff.point(lambda v: 255 if v > 12 else 0).getbbox()
    if not bbox:
        return 0.0
    return max((bbox[2] - bbox[0]) / img.width, (bbox[3] - bbox[1]) / img.height)
