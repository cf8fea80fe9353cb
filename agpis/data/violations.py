"""Single-image violations drawn the way sellers add them: promo banners, price tags and
stickers, shop watermarks and logos, frames, collages and insets, small or upscaled images,
blur, bad exposure.

Each renderer is `fn(img, rng, st, others) -> Applied`: a new image (the input is not
modified), the violation's box in the new image's pixels (None when it covers the whole image),
and the kind/detail the feedback sentence uses. `st` is the style pool (train or held-out);
`others` are other clean views of the same product (for collages and insets).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from agpis.data import render, styles
from agpis.data.styles import Styles


@dataclass
class Applied:
    image: Image.Image
    box: tuple[int, int, int, int] | None  # None: the whole image
    kind: str  # sub-kind, picks the feedback template (rules.Rule.kinds)
    detail: str = ""


def _union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _clip(box, w, h):
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(0, min(x0, w - 1)), max(0, min(y0, h - 1))
    return x0, y0, max(x0 + 1, min(x1, w)), max(y0 + 1, min(y1, h))


def _draw_text_centred(d: ImageDraw.ImageDraw, box, text, font_name, fill, stroke=None, stroke_w=0):
    x0, y0, x1, y1 = box
    f = render.fit_font(text, font_name, int(x1 - x0), int(y1 - y0))
    l, t, r, b = f.getbbox(text, stroke_width=stroke_w)
    x, y = (x0 + x1 - (r - l)) / 2 - l, (y0 + y1 - (b - t)) / 2 - t
    d.text((x, y), text, font=f, fill=fill, stroke_width=stroke_w, stroke_fill=stroke)
    return (x + l, y + t, x + r, y + b)


def _corner_xy(corner: str, w: int, h: int, bw: int, bh: int, margin: int):
    x = margin if "left" in corner else w - bw - margin
    y = margin if corner.startswith("top") else h - bh - margin if corner.startswith("bottom") else (h - bh) // 2
    return x, y


def _stamp(img, mark: Image.Image, xy: tuple[int, int], kind: str, detail: str = "") -> Applied:
    """Paste an RGBA mark onto a copy of img; the violation box is the mark's."""
    out = img.copy()
    out.paste(mark, xy, mark)
    x, y = xy
    return Applied(out, _clip((x, y, x + mark.width, y + mark.height), *img.size), kind, detail)


# --- text_overlay ------------------------------------------------------------------------------

def _banner(img, rng, st):
    w, h = img.size
    pos = st.pick(styles.BANNER_POS, rng)
    bg, fg = st.palette(rng)
    text = styles.promo(rng)
    if rng.random() < 0.35:
        text = f"{text}  {styles.price(rng)}"
    font = st.font_for(text, rng)
    out = img.copy()
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    alpha = rng.choice((255, 255, 235, 210))
    if pos == "ribbon":  # a diagonal corner ribbon
        short = rng.choice(styles.STICKER)
        font = st.font_for(short, rng)
        band = int(w * rng.uniform(0.09, 0.13))
        L = int(w * rng.uniform(0.42, 0.55))
        strip = Image.new("RGBA", (int(L * 1.6), band), bg + (alpha,))
        _draw_text_centred(ImageDraw.Draw(strip), (band, band * 0.12, strip.width - band, band * 0.9), short, font, fg)
        strip = strip.rotate(45, expand=True, resample=Image.BICUBIC)
        right = rng.random() < 0.5
        if right:
            strip = strip.transpose(Image.FLIP_LEFT_RIGHT)
        x = w - strip.width + int(strip.width * 0.3) if right else -int(strip.width * 0.3)
        y = -int(strip.height * 0.3)
        layer.paste(strip, (x, y), strip)
        out.paste(layer, (0, 0), layer)
        return Applied(out, _clip((max(0, x), 0, min(w, x + strip.width), y + strip.height), w, h), "banner",
                       short)
    if pos == "side":  # a vertical strip down one side
        bw = int(w * rng.uniform(0.12, 0.18))
        x0 = 0 if rng.random() < 0.5 else w - bw
        box = (x0, 0, x0 + bw, h)
        d.rectangle(box, fill=bg + (alpha,))
        strip = Image.new("RGBA", (h, bw), (0, 0, 0, 0))
        _draw_text_centred(ImageDraw.Draw(strip), (h * 0.06, bw * 0.15, h * 0.94, bw * 0.85), text, font, fg)
        strip = strip.rotate(90, expand=True)
        layer.paste(strip, (x0, 0), strip)
        out.paste(layer, (0, 0), layer)
        return Applied(out, box, "banner", text)
    bh = int(h * rng.uniform(0.1, 0.22))
    y0 = {"top": 0, "bottom": h - bh, "middle": int(h * rng.uniform(0.4, 0.55))}[pos]
    if pos == "top" and rng.random() < 0.3:
        y0 = int(h * rng.uniform(0.02, 0.06))  # a floating strip, not flush with the edge
    box = (0, y0, w, y0 + bh)
    style = rng.random()
    if style < 0.6:
        d.rectangle(box, fill=bg + (alpha,))
    elif style < 0.85:  # slanted band, as in many shop templates
        sl = int(bh * 0.6)
        d.polygon([(0, y0), (w, y0 + (sl if rng.random() < 0.5 else 0)), (w, y0 + bh), (0, y0 + bh - sl // 2)],
                  fill=bg + (alpha,))
    else:  # fading gradient band
        grad = np.linspace(alpha, alpha * 0.2, w).astype(np.uint8)
        band = Image.new("RGBA", (w, bh), bg + (0,))
        band.putalpha(Image.fromarray(np.tile(grad, (bh, 1)), "L"))
        layer.paste(band, (0, y0), band)
    pad = bh * rng.uniform(0.12, 0.25)
    if bh > h * 0.15 and rng.random() < 0.5:  # headline and a smaller second line
        sub = rng.choice((styles.price(rng), styles.promo(rng)))
        mid = y0 + pad + (bh - 2 * pad) * 0.62
        _draw_text_centred(d, (w * 0.05, y0 + pad, w * 0.95, mid), text, font, fg)
        _draw_text_centred(d, (w * 0.2, mid + bh * 0.04, w * 0.8, y0 + bh - pad), sub, st.font_for(sub, rng), fg)
        text = f"{text} / {sub}"
    else:
        _draw_text_centred(d, (w * 0.05, y0 + pad, w * 0.95, y0 + bh - pad), text, font, fg)
    out.paste(layer, (0, 0), layer)
    return Applied(out, box, "banner", text)


def _sticker(img, rng, st):
    w, h = img.size
    corner = st.pick(styles.CORNERS, rng)
    bg, fg = st.palette(rng)
    text = rng.choice(styles.STICKER)
    font = st.font_for(text, rng)
    r = int(w * rng.uniform(0.09, 0.15))
    size = 2 * r
    stk = Image.new("RGBA", (size + 4, size + 4), (0, 0, 0, 0))
    d = ImageDraw.Draw(stk)
    if rng.random() < 0.5:  # starburst
        n = rng.choice((12, 16, 20))
        pts = [(r + 2 + (r if i % 2 == 0 else r * 0.82) * math.cos(math.pi * i / n),
                r + 2 + (r if i % 2 == 0 else r * 0.82) * math.sin(math.pi * i / n)) for i in range(2 * n)]
        d.polygon(pts, fill=bg + (255,))
    else:
        d.ellipse((2, 2, size, size), fill=bg + (255,), outline=fg + (255,), width=max(2, r // 12))
    _draw_text_centred(d, (r * 0.45, r * 0.55, size - r * 0.45, size - r * 0.55), text, font, fg)
    stk = stk.rotate(rng.uniform(-20, 20), resample=Image.BICUBIC)
    xy = _corner_xy(corner, w, h, stk.width, stk.height, int(w * rng.uniform(0.01, 0.05)))
    return _stamp(img, stk, xy, "sticker", text)


def _price_tag(img, rng, st):
    w, h = img.size
    corner = st.pick(styles.CORNERS, rng)
    bg, fg = st.palette(rng)
    text = styles.price(rng)
    font = st.font_for(text, rng)
    tw, th = int(w * rng.uniform(0.26, 0.36)), int(h * rng.uniform(0.1, 0.14))
    tag = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    d = ImageDraw.Draw(tag)
    notch = th // 2
    d.polygon([(notch, 0), (tw, 0), (tw, th), (notch, th), (0, th // 2)], fill=bg + (255,))
    d.ellipse((notch * 0.6, th / 2 - th * 0.09, notch * 0.6 + th * 0.18, th / 2 + th * 0.09), fill=(255, 255, 255, 255))
    _draw_text_centred(d, (notch * 1.15, th * 0.15, tw - th * 0.2, th * 0.85), text, font, fg)
    tag = tag.rotate(rng.uniform(-25, 25), expand=True, resample=Image.BICUBIC)
    xy = _corner_xy(corner, w, h, tag.width, tag.height, int(w * rng.uniform(0.02, 0.06)))
    return _stamp(img, tag, xy, "price_tag", text)


def _caption(img, rng, st):
    """Text typed straight onto the photo with an outline or shadow, no banner behind it."""
    w, h = img.size
    text = styles.promo(rng)
    font = st.font_for(text, rng)
    _, fg = st.palette(rng)
    bh = int(h * rng.uniform(0.07, 0.13))
    y0 = int(h * rng.choice((rng.uniform(0.03, 0.1), rng.uniform(0.78, 0.88))))
    out = img.copy()
    d = ImageDraw.Draw(out)
    stroke = render.contrast_colour(fg)
    box = _draw_text_centred(d, (w * 0.06, y0, w * 0.94, y0 + bh), text, font, fg, stroke=stroke,
                             stroke_w=max(1, bh // 14))
    return Applied(out, _clip(box, w, h), "caption", text)


def text_overlay(img, rng, st, others=()):
    return rng.choices((_banner, _sticker, _price_tag, _caption), (0.45, 0.2, 0.2, 0.15))[0](img, rng, st)


# --- watermark and logo ------------------------------------------------------------------------

def draw_logo(shop: str, shape: str, colour, size: int, rng: random.Random, st: Styles) -> Image.Image:
    """A shop emblem: a filled shape carrying the initials, as RGBA."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size
    fill = colour + (255,)
    if shape == "circle":
        d.ellipse((2, 2, s - 2, s - 2), fill=fill)
    elif shape == "ring":
        d.ellipse((2, 2, s - 2, s - 2), outline=fill, width=max(3, s // 10))
    elif shape == "rounded":
        d.rounded_rectangle((2, 2, s - 2, s - 2), radius=s // 5, fill=fill)
    elif shape == "shield":
        d.polygon([(s * .1, s * .08), (s * .9, s * .08), (s * .9, s * .5), (s * .5, s * .95), (s * .1, s * .5)], fill=fill)
    elif shape == "leaf":
        d.ellipse((s * .05, s * .25, s * .95, s * .75), fill=fill)
        d.line((s * .1, s * .5, s * .9, s * .5), fill=(255, 255, 255, 255), width=max(1, s // 30))
    elif shape == "hexagon":
        d.polygon([(s / 2 + s * .46 * math.cos(a), s / 2 + s * .46 * math.sin(a))
                   for a in np.linspace(0, 2 * math.pi, 7)[:-1]], fill=fill)
    elif shape == "star":
        d.polygon([(s / 2 + (s * .48 if i % 2 == 0 else s * .22) * math.cos(math.pi * i / 5 - math.pi / 2),
                    s / 2 + (s * .48 if i % 2 == 0 else s * .22) * math.sin(math.pi * i / 5 - math.pi / 2))
                   for i in range(10)], fill=fill)
    initials = "".join(p[0] for p in shop.replace("&", " ").split()[:2]).upper() or shop[:2].upper()
    if len(initials) == 1:
        initials = shop[:2].upper() if shape != "leaf" else initials
    ink = colour + (255,) if shape == "ring" else (255, 255, 255, 255)
    inner = (s * .25, s * .3, s * .75, s * .7) if shape != "star" else (s * .36, s * .4, s * .64, s * .62)
    _draw_text_centred(d, inner, initials, st.font_for(initials, rng), ink)
    return img


def _wordmark(text: str, font_name: str, colour, height: int) -> Image.Image:
    f = render.fit_font(text, font_name, height * 12, height)
    l, t, r, b = f.getbbox(text)
    img = Image.new("RGBA", (r - l + 4, b - t + 4), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((2 - l, 2 - t), text, font=f, fill=colour + (255,))
    return img


def watermark(img, rng, st, others=()):
    w, h = img.size
    kind = st.pick(styles.WATERMARK_KIND, rng)
    shop = st.shop(rng)
    text = rng.choice((shop, f"© {shop}", f"www.{shop.lower().replace(' ', '').replace('&', '')}"
                                            f"{rng.choice(styles.DOMAINS)}", "SAMPLE", shop.upper()))
    font = st.font_for(text, rng)
    # A mark must show against the photo: dark or coloured marks on light images, white on dark.
    light = float(np.asarray(img.convert("L").resize((16, 16))).mean()) > 140
    colour = rng.choice(((0, 0, 0), (90, 90, 90), (200, 30, 30), (20, 60, 160)) if light
                        else ((255, 255, 255), (230, 230, 230), (255, 220, 120)))
    opacity = rng.uniform(0.2, 0.4)
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    box = None
    if kind in ("tiled", "tiled-straight"):
        mark = _wordmark(text, font, colour, int(h * rng.uniform(0.04, 0.07)))
        angle = rng.uniform(20, 40) if kind == "tiled" else 0
        big = Image.new("RGBA", (int(w * 1.6), int(h * 1.6)), (0, 0, 0, 0))
        sx, sy = mark.width + int(w * 0.1), mark.height * 3
        for row, y in enumerate(range(0, big.height, sy)):
            for x in range(-(row % 2) * sx // 2, big.width, sx):
                big.paste(mark, (x, y), mark)
        big = big.rotate(angle, resample=Image.BICUBIC)
        layer.paste(big, (-(big.width - w) // 2, -(big.height - h) // 2), big)
        detail = "tiled"
    elif kind in ("centre", "centre-logo"):
        if kind == "centre-logo":
            mark = draw_logo(shop, st.pick(styles.LOGO_SHAPES, rng), colour, int(w * rng.uniform(0.35, 0.5)), rng, st)
        else:
            mark = _wordmark(text, font, colour, int(h * rng.uniform(0.08, 0.13)))
            if mark.width > w * 0.9:
                mark = mark.resize((int(w * 0.9), max(1, int(mark.height * w * 0.9 / mark.width))), Image.LANCZOS)
            mark = mark.rotate(rng.choice((0, 0, 30, -30)), expand=True, resample=Image.BICUBIC)
        x, y = (w - mark.width) // 2, int((h - mark.height) * rng.uniform(0.35, 0.65))
        layer.paste(mark, (x, y), mark)
        box = _clip((x, y, x + mark.width, y + mark.height), w, h)
        detail = "centre"
        opacity = rng.uniform(0.25, 0.45)
    else:  # a corner signature, the most common photographer's mark
        mark = _wordmark(text, font, colour, int(h * rng.uniform(0.045, 0.08)))
        if mark.width > w * 0.6:
            mark = mark.resize((int(w * 0.6), max(1, int(mark.height * w * 0.6 / mark.width))), Image.LANCZOS)
        corner = st.pick(styles.CORNERS, rng)
        x, y = _corner_xy(corner, w, h, mark.width, mark.height, int(w * 0.03))
        layer.paste(mark, (x, y), mark)
        box = _clip((x, y, x + mark.width, y + mark.height), w, h)
        detail = "corner"
        opacity = rng.uniform(0.4, 0.65)
    alpha = layer.getchannel("A").point(lambda a: int(a * opacity))
    layer.putalpha(alpha)
    out = img.copy()
    out.paste(layer, (0, 0), layer)
    return Applied(out, box, "watermark_" + detail, text)


def logo(img, rng, st, others=()):
    w, h = img.size
    shop = st.shop(rng)
    colour = st.palette(rng)[0]
    if colour == (255, 255, 255):
        colour = (30, 30, 30)
    shape = st.pick(styles.LOGO_SHAPES, rng)
    size = int(w * rng.uniform(0.12, 0.22))
    emblem = draw_logo(shop, shape, colour, size, rng, st)
    style = rng.random()
    if style < 0.5:  # emblem + wordmark, side by side
        word = _wordmark(shop, st.font_for(shop, rng), colour, int(size * 0.5))
        mark = Image.new("RGBA", (size + word.width + size // 6, size), (0, 0, 0, 0))
        mark.paste(emblem, (0, 0), emblem)
        mark.paste(word, (size + size // 6, (size - word.height) // 2), word)
        if mark.width > w * 0.6:
            mark = mark.resize((int(w * 0.6), int(mark.height * w * 0.6 / mark.width)), Image.LANCZOS)
    elif style < 0.75:
        mark = emblem
    else:  # a brand wordmark above the product, as in the JD example
        mark = _wordmark(shop.upper(), st.font_for(shop.upper(), rng), colour, int(h * rng.uniform(0.05, 0.08)))
    corner = st.pick(styles.CORNERS, rng) if style < 0.75 else rng.choice(("top-left", "top-right"))
    xy = _corner_xy(corner, w, h, mark.width, mark.height, int(w * rng.uniform(0.02, 0.05)))
    return _stamp(img, mark, xy, "logo", shop)


# --- border, collage, inset --------------------------------------------------------------------

def border(img, rng, st, others=()):
    w, h = img.size
    colour = st.pick(styles.BORDER_COLOURS, rng)
    out = img.copy()
    d = ImageDraw.Draw(out)
    t = int(w * rng.uniform(0.015, 0.05))
    style = rng.random()
    if style < 0.4:  # solid frame drawn over the edges
        d.rectangle((0, 0, w - 1, h - 1), outline=colour, width=t)
        kind = "solid"
    elif style < 0.65:  # double line
        d.rectangle((0, 0, w - 1, h - 1), outline=colour, width=max(2, t // 2))
        g = t + max(3, t // 2)
        d.rectangle((g, g, w - 1 - g, h - 1 - g), outline=colour, width=max(1, t // 3))
        kind = "double"
    elif style < 0.85:  # photo shrunk inside a coloured mat
        inner = img.resize((w - 4 * t, h - 4 * t), Image.LANCZOS)
        out = Image.new("RGB", (w, h), colour)
        out.paste(inner, (2 * t, 2 * t))
        kind = "mat"
    else:  # rounded inner frame with a thin white gap
        d.rectangle((0, 0, w - 1, h - 1), outline=colour, width=t)
        d.rounded_rectangle((t, t, w - 1 - t, h - 1 - t), radius=3 * t, outline=(255, 255, 255), width=max(2, t // 3))
        kind = "rounded"
    return Applied(out, None, "border", kind)


def collage_or_inset(img, rng, st, others=()):
    w, h = img.size
    pool = [o for o in others if o is not None] or [img.transpose(Image.FLIP_LEFT_RIGHT)]
    if rng.random() < 0.5:  # a small inset picture of another view or a detail
        other = rng.choice(pool)
        s = int(w * rng.uniform(0.26, 0.36))
        crop = other.resize((s, s), Image.LANCZOS)
        bw = max(2, s // 30)
        framed = Image.new("RGB", (s + 2 * bw, s + 2 * bw), rng.choice(((255, 255, 255), (220, 220, 220), (40, 40, 40))))
        framed.paste(crop, (bw, bw))
        corner = st.pick(styles.CORNERS, rng)
        x, y = _corner_xy(corner, w, h, framed.width, framed.height, int(w * 0.03))
        out = img.copy()
        if rng.random() < 0.5:
            ImageDraw.Draw(out).rectangle((x + 4, y + 4, x + framed.width + 4, y + framed.height + 4), fill=(150, 150, 150))
        out.paste(framed, (x, y))
        return Applied(out, _clip((x, y, x + framed.width, y + framed.height), w, h), "inset")
    tiles = [img] + [rng.choice(pool) for _ in range(3)]
    gap = rng.choice((0, 4, 8))
    out = Image.new("RGB", (w, h), (255, 255, 255))
    layout = rng.choice(("2x2", "1+2", "1x2"))
    if layout == "2x2":
        cells = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h), (w // 2, h // 2, w, h)]
    elif layout == "1+2":
        cells = [(0, 0, w * 2 // 3, h), (w * 2 // 3, 0, w, h // 2), (w * 2 // 3, h // 2, w, h)]
    else:
        cells = [(0, h // 4, w // 2, h * 3 // 4), (w // 2, h // 4, w, h * 3 // 4)]
    for tile, (x0, y0, x1, y1) in zip(tiles, cells):
        cw, ch = x1 - x0 - gap, y1 - y0 - gap
        t = tile.copy()
        s = max(cw / t.width, ch / t.height)
        t = t.resize((max(cw, int(t.width * s)), max(ch, int(t.height * s))), Image.LANCZOS)
        t = t.crop(((t.width - cw) // 2, (t.height - ch) // 2, (t.width - cw) // 2 + cw, (t.height - ch) // 2 + ch))
        out.paste(t, (x0 + gap // 2, y0 + gap // 2))
    return Applied(out, None, "collage", layout)


# --- image quality -----------------------------------------------------------------------------

def low_resolution(img, rng, st, others=()):
    w, h = img.size
    if rng.random() < 0.4:  # simply too small (the marketplaces' 500/800 px minimum)
        side = rng.randint(150, 340)
        return Applied(img.resize((side, side * h // w), Image.LANCZOS), None, "small", f"{side} px")
    small = rng.randint(40, 100)
    tiny = img.resize((small, small * h // w), Image.BILINEAR)
    if rng.random() < 0.5:
        tiny = render.reencode(tiny, rng.randint(30, 70))
    up = tiny.resize((w, h), rng.choice((Image.NEAREST, Image.BILINEAR, Image.BICUBIC)))
    return Applied(up, None, "upscaled", f"{small} px")


def blurry(img, rng, st, others=()):
    import cv2

    w = img.width
    if rng.random() < 0.5:
        r = rng.uniform(0.006, 0.014) * w
        return Applied(img.filter(ImageFilter.GaussianBlur(r)), None, "defocus")
    n = max(5, int(rng.uniform(0.025, 0.06) * w)) | 1
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1
    rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0)
    k = cv2.warpAffine(k, rot, (n, n))
    k /= k.sum()
    arr = cv2.filter2D(np.asarray(img), -1, k, borderType=cv2.BORDER_REPLICATE)
    return Applied(Image.fromarray(arr), None, "motion")


def bad_exposure(img, rng, st, others=()):
    arr = np.asarray(img).astype(np.float32) / 255
    nrng = np.random.default_rng(rng.getrandbits(32))
    if rng.random() < 0.5:  # underexposed: dark, noisy, slightly colour-cast
        out = arr ** rng.uniform(1.6, 2.6) * rng.uniform(0.35, 0.6)
        out = out * np.array([1.0, rng.uniform(0.9, 1.05), rng.uniform(0.85, 1.1)], np.float32)
        out += nrng.normal(0, 0.02, out.shape[:2])[..., None]
        kind = "dark"
    else:  # overexposed: highlights blown out, washed-out colours
        out = arr * rng.uniform(1.35, 1.9) + rng.uniform(0.05, 0.2)
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * rng.uniform(0.4, 0.8)
        kind = "bright"
    return Applied(Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8)), None, kind)


SINGLE = {"text_overlay": text_overlay, "watermark": watermark, "logo": logo, "border": border,
          "collage_or_inset": collage_or_inset, "low_resolution": low_resolution, "blurry": blurry,
          "bad_exposure": bad_exposure}


# --- image-pair transforms ---------------------------------------------------------------------

def near_duplicate(img: Image.Image, rng: random.Random, crop: tuple[float, float] = (0.78, 0.93),
                   zoom: tuple[float, float] = (1.08, 1.3),
                   ops: tuple[str, ...] = ("crop", "zoom", "flip", "reencode", "rotate")) -> tuple[Image.Image, str]:
    """The same view again: a crop, zoom, mirror, re-encode or slight rotation (often two).
    `crop`: the share of each side a crop keeps; `zoom`: the magnification of a centred zoom."""
    w, h = img.size
    ops = rng.sample(ops, rng.choice((1, 1, 2)))
    out = img
    for op in ops:
        if op == "crop":
            f = rng.uniform(*crop)
            cw, ch = int(w * f), int(h * f)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            out = out.crop((x, y, x + cw, y + ch)).resize((w, h), Image.LANCZOS)
        elif op == "zoom":
            f = rng.uniform(*zoom)
            cw, ch = int(w / f), int(h / f)
            out = out.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((w, h), Image.LANCZOS)
        elif op == "flip":
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        elif op == "reencode":
            out = render.reencode(out, rng.randint(35, 70))
            out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.95, 1.06))
        else:
            out = out.rotate(rng.uniform(2, 7) * rng.choice((-1, 1)), resample=Image.BICUBIC, fillcolor=(255, 255, 255))
    return out, "+".join(ops)
