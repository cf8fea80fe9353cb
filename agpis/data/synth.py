"""Procedural products: drawn bottles, cartons, boxes, cans, jars and fruit, each with front,
side, back and top views, so the whole data builder (and the service demo) runs on a fresh
machine without ../shared.

A product is a pure function of its group id: the same id always draws the same product.
Drawing happens at 2x and is downsampled, so edges are anti-aliased like a real studio cut-out.
"""
from __future__ import annotations

import functools
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from agpis.data import render
from agpis.data.product import Product

KINDS = ("bottle", "carton", "box", "can", "jar", "fruit")
# The category word a title uses, per flavour (a shopper's word: "milk", not "carton").
CATEGORY = {"Spring Water": "water", "Sparkling Water": "water", "Iced Tea": "iced tea", "Lemonade": "lemonade",
            "Sports Drink": "sports drink", "Orange Juice": "juice", "Apple Juice": "juice", "Oat Milk": "milk",
            "Whole Milk": "milk", "Multivitamin Juice": "juice", "Corn Flakes": "cereal", "Muesli": "cereal",
            "Granola": "cereal", "Green Tea": "tea", "Crackers": "crackers", "Cola": "soda", "Lemon Soda": "soda",
            "Energy Drink": "energy drink", "Tonic Water": "tonic water", "Ginger Ale": "soda", "Strawberry Jam": "jam",
            "Honey": "honey", "Peanut Butter": "peanut butter", "Apricot Jam": "jam", "Pickles": "pickles"}
# Name pools per kind, and the colours a product can come in (colour word, RGB).
FLAVOURS = {"bottle": ("Spring Water", "Sparkling Water", "Iced Tea", "Lemonade", "Sports Drink"),
            "carton": ("Orange Juice", "Apple Juice", "Oat Milk", "Whole Milk", "Multivitamin Juice"),
            "box": ("Corn Flakes", "Muesli", "Granola", "Green Tea", "Crackers"),
            "can": ("Cola", "Lemon Soda", "Energy Drink", "Tonic Water", "Ginger Ale"),
            "jar": ("Strawberry Jam", "Honey", "Peanut Butter", "Apricot Jam", "Pickles"),
            "fruit": ("Apple", "Plum", "Orange", "Pear", "Peach")}
COLOURS = (("red", (200, 35, 40)), ("blue", (30, 80, 180)), ("green", (40, 140, 60)), ("yellow", (240, 200, 40)),
           ("orange", (240, 130, 30)), ("purple", (110, 50, 140)), ("black", (35, 35, 38)), ("pink", (230, 120, 160)),
           ("teal", (20, 150, 150)), ("brown", (120, 75, 40)))
SYLLABLES = ("lu", "mo", "ka", "ri", "ve", "na", "to", "sa", "bel", "dor", "fi", "zo", "pra", "nu", "el", "va")
TITLE_EXTRAS = {"bottle": ("500 ml", "1.5 L", "6 x 330 ml"), "carton": ("1 L", "1.75 L", "2 x 1 L"),
                "box": ("375 g", "500 g", "750 g"), "can": ("330 ml", "6-pack", "12 x 330 ml"),
                "jar": ("340 g", "450 g", "2 x 340 g"), "fruit": ("1 kg", "6 pcs", "per piece")}
SS = 2  # supersampling factor


FRUIT_COLOURS = {"Apple": ("red", "green", "yellow"), "Plum": ("purple", "red"), "Orange": ("orange",),
                 "Pear": ("green", "yellow"), "Peach": ("orange", "yellow", "red")}


def colour_choices(kind: str, flavour: str) -> list[int]:
    """Colours a product can come in (no blue apples)."""
    if kind == "fruit":
        return [i for i, (name, _) in enumerate(COLOURS) if name in FRUIT_COLOURS[flavour]]
    return list(range(len(COLOURS)))


def design(group: str) -> tuple[str, int, str, str, random.Random]:
    """What a group id draws: (kind, colour index, brand, flavour, rng for the details)."""
    rng = random.Random(group)
    kind = rng.choice(KINDS)
    brand = brand_name(rng)
    flavour = rng.choice(FLAVOURS[kind])
    cidx = rng.choice(colour_choices(kind, flavour))
    return kind, cidx, brand, flavour, rng


def brand_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _shade(size: tuple[int, int], strength: float = 0.35) -> Image.Image:
    """A cylindrical light falloff (bright centre-left, dark edges) as an L mask multiplier."""
    w, h = size
    x = np.linspace(-1, 1, w, dtype=np.float32)
    profile = 1 - strength * (np.abs(x + 0.25) ** 1.8) + 0.12 * np.exp(-((x + 0.35) / 0.12) ** 2)
    return Image.fromarray(np.clip(np.tile(profile, (h, 1)) * 200, 0, 255).astype(np.uint8), "L")


def _apply_shade(img: Image.Image, strength: float) -> Image.Image:
    """Darken/brighten an RGBA drawing with the cylinder profile, keeping its alpha."""
    arr = np.asarray(img).astype(np.float32)
    prof = np.asarray(_shade(img.size, strength), np.float32)[..., None] / 200
    arr[..., :3] = np.clip(arr[..., :3] * prof, 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


def _text(d: ImageDraw.ImageDraw, box, text: str, fill, font_name: str = "DejaVuSans-Bold.ttf"):
    x0, y0, x1, y1 = box
    f = render.fit_font(text, font_name, int(x1 - x0), int(y1 - y0))
    l, t, r, b = f.getbbox(text)
    d.text(((x0 + x1 - (r - l)) / 2 - l, (y0 + y1 - (b - t)) / 2 - t), text, font=f, fill=fill)


def _lines(d: ImageDraw.ImageDraw, box, rng: random.Random, fill=(60, 60, 60), barcode: bool = False):
    """Small-print lines (ingredients, nutrition) and an optional barcode: what backs look like."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    step = max(6, h // 14)
    y = y0
    while y + step < y1 - (h * 0.3 if barcode else 0):
        d.rectangle((x0, y, x0 + (x1 - x0) * rng.uniform(0.5, 1.0), y + max(2, step // 3)), fill=fill)
        y += step
    if barcode:
        bx, by = x0 + (x1 - x0) * 0.15, y1 - h * 0.26
        x = bx
        while x < x1 - (x1 - x0) * 0.15:
            wbar = rng.choice((1, 1, 2, 3)) * SS
            d.rectangle((x, by, x + wbar, y1 - h * 0.04), fill=(10, 10, 10))
            x += wbar + rng.choice((1, 2, 3)) * SS


@functools.lru_cache(maxsize=512)
def draw_product(group: str, view: str, colour_idx: int | None = None) -> Image.Image:
    """One view of a drawn product as an RGBA cut-out (about 400 px tall)."""
    kind, cidx, brand, flavour, rng = design(group)
    cidx = cidx if colour_idx is None else colour_idx
    _, body = COLOURS[cidx]
    accent = render.rotate_hue(body, rng.choice((150, 180, 210)))
    paper = rng.choice(((250, 248, 240), (255, 255, 255), (245, 235, 210)))
    rng_v = random.Random(f"{group}/{view}")
    return _DRAW[kind](view, body, accent, paper, brand, flavour, rng_v)


def _canvas(w: int, h: int):
    img = Image.new("RGBA", (w * SS, h * SS), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img)


def _finish(img: Image.Image, shade: float = 0.35) -> Image.Image:
    img = _apply_shade(img, shade) if shade else img
    img = img.resize((img.width // SS, img.height // SS), Image.LANCZOS)
    bbox = img.getchannel("A").getbbox()
    return img.crop(bbox) if bbox else img


def _bottle(view, body, accent, paper, brand, flavour, rng):
    W, H = 170, 420
    img, d = _canvas(W, H)
    s = SS
    if view == "top":
        img, d = _canvas(200, 200)
        d.ellipse((10 * s, 10 * s, 190 * s, 190 * s), fill=body + (255,))
        d.ellipse((60 * s, 60 * s, 140 * s, 140 * s), fill=accent + (255,))
        d.ellipse((75 * s, 75 * s, 125 * s, 125 * s), fill=render.rotate_hue(accent, 20) + (255,))
        return _finish(img, 0.15)
    glass = tuple(min(255, int(c * 0.55 + 110)) for c in body)
    d.rounded_rectangle((10 * s, 120 * s, 160 * s, 415 * s), radius=30 * s, fill=glass + (255,))
    d.polygon([(10 * s, 150 * s), (60 * s, 55 * s), (110 * s, 55 * s), (160 * s, 150 * s)], fill=glass + (255,))
    d.rectangle((60 * s, 30 * s, 110 * s, 60 * s), fill=glass + (255,))
    d.rounded_rectangle((55 * s, 5 * s, 115 * s, 40 * s), radius=6 * s, fill=accent + (255,))
    for y in range(10, 40, 6):
        d.line((57 * s, y * s, 113 * s, y * s), fill=render.rotate_hue(accent, 10) + (255,), width=s)
    if view in ("front", "side"):
        off = 0 if view == "front" else 45
        d.rectangle((10 * s, 200 * s, 160 * s, 330 * s), fill=body + (255,))
        x0 = 20 + off
        d.rectangle((x0 * s, 210 * s, min(150, x0 + 130) * s, 320 * s), fill=paper + (255,))
        if view == "front":
            _text(d, (25 * s, 215 * s, 145 * s, 255 * s), brand.upper(), body)
            _text(d, (25 * s, 262 * s, 145 * s, 290 * s), flavour, (50, 50, 50), "DejaVuSans.ttf")
            d.ellipse((70 * s, 295 * s, 100 * s, 315 * s), fill=accent + (255,))
        else:
            _lines(d, (x0 * s + 8 * s, 220 * s, 150 * s, 310 * s), rng)
    elif view == "back":
        d.rectangle((10 * s, 200 * s, 160 * s, 330 * s), fill=paper + (255,))
        _lines(d, (25 * s, 210 * s, 145 * s, 325 * s), rng, barcode=True)
    return _finish(img, 0.4)


def _carton(view, body, accent, paper, brand, flavour, rng):
    s = SS
    width = 200 if view in ("front", "back") else 120
    if view == "top":
        img, d = _canvas(200, 130)
        d.rectangle((5 * s, 5 * s, 195 * s, 125 * s), fill=paper + (255,))
        d.rectangle((5 * s, 55 * s, 195 * s, 75 * s), fill=body + (255,))
        d.ellipse((140 * s, 20 * s, 175 * s, 50 * s), fill=accent + (255,))
        return _finish(img, 0.1)
    img, d = _canvas(width, 430)
    w = width * s
    d.polygon([(0, 90 * s), (w // 2, 20 * s), (w, 90 * s)], fill=tuple(int(c * 0.9) for c in paper) + (255,))
    d.rectangle((w // 2 - 50 * s, 5 * s, w // 2 + 50 * s, 25 * s), fill=paper + (255,))
    d.rectangle((0, 90 * s, w, 428 * s), fill=paper + (255,))
    if view == "front":
        d.rectangle((0, 300 * s, w, 428 * s), fill=body + (255,))
        d.ellipse((40 * s, 190 * s, 160 * s, 310 * s), fill=accent + (255,))
        d.ellipse((70 * s, 215 * s, 120 * s, 260 * s), fill=tuple(min(255, c + 60) for c in accent) + (255,))
        _text(d, (15 * s, 105 * s, 185 * s, 150 * s), brand.upper(), body)
        _text(d, (15 * s, 150 * s, 185 * s, 180 * s), flavour, (40, 40, 40), "DejaVuSerif-Bold.ttf")
        _text(d, (40 * s, 330 * s, 160 * s, 370 * s), rng.choice(("1 L", "1.75 L", "1 LITRE")), paper)
    elif view == "side":
        d.rectangle((0, 300 * s, w, 428 * s), fill=body + (255,))
        _lines(d, (12 * s, 110 * s, w - 12 * s, 290 * s), rng)
    else:
        d.rectangle((0, 380 * s, w, 428 * s), fill=body + (255,))
        _lines(d, (15 * s, 110 * s, w - 15 * s, 370 * s), rng, barcode=True)
    return _finish(img, 0.18)


def _box(view, body, accent, paper, brand, flavour, rng):
    s = SS
    if view == "top":
        img, d = _canvas(260, 90)
        d.rectangle((3 * s, 3 * s, 257 * s, 87 * s), fill=body + (255,))
        d.line((3 * s, 45 * s, 257 * s, 45 * s), fill=tuple(int(c * 0.7) for c in body) + (255,), width=2 * s)
        return _finish(img, 0.05)
    width = 260 if view in ("front", "back") else 90
    img, d = _canvas(width, 360)
    w = width * s
    d.rectangle((0, 0, w, 358 * s), fill=body + (255,))
    if view == "front":
        d.rectangle((15 * s, 15 * s, w - 15 * s, 90 * s), fill=paper + (255,))
        _text(d, (25 * s, 20 * s, w - 25 * s, 85 * s), brand.upper(), body)
        d.ellipse((60 * s, 120 * s, 200 * s, 260 * s), fill=paper + (255,))
        for _ in range(9):
            cx, cy = rng.uniform(85, 175) * s, rng.uniform(145, 235) * s
            r = rng.uniform(10, 18) * s
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=accent + (255,))
        _text(d, (20 * s, 280 * s, w - 20 * s, 330 * s), flavour, paper, "DejaVuSerif-Bold.ttf")
    elif view == "side":
        _text(d, (10 * s, 20 * s, w - 10 * s, 60 * s), brand.upper(), paper)
        d.rectangle((8 * s, 80 * s, w - 8 * s, 340 * s), fill=paper + (255,))
        _lines(d, (14 * s, 90 * s, w - 14 * s, 330 * s), rng)
    else:
        d.rectangle((15 * s, 15 * s, w - 15 * s, 340 * s), fill=paper + (255,))
        _lines(d, (30 * s, 30 * s, w - 30 * s, 330 * s), rng, barcode=True)
    return _finish(img, 0.1)


def _can(view, body, accent, paper, brand, flavour, rng, tall: bool = True):
    s = SS
    if view == "top":
        img, d = _canvas(200, 200)
        d.ellipse((5 * s, 5 * s, 195 * s, 195 * s), fill=(200, 200, 205, 255))
        d.ellipse((20 * s, 20 * s, 180 * s, 180 * s), fill=(175, 175, 180, 255))
        d.rounded_rectangle((80 * s, 40 * s, 120 * s, 90 * s), radius=10 * s, fill=(150, 150, 155, 255))
        return _finish(img, 0.1)
    W, H = (170, 320) if tall else (220, 230)
    img, d = _canvas(W, H)
    w, h = W * s, H * s
    d.rectangle((0, 12 * s, w, h - 12 * s), fill=body + (255,))
    d.ellipse((0, 0, w, 24 * s), fill=(205, 205, 210, 255))
    d.ellipse((0, h - 24 * s, w, h), fill=body + (255,))
    if view == "front":
        d.rectangle((0, h * 0.35, w, h * 0.6), fill=paper + (255,))
        _text(d, (12 * s, h * 0.37, w - 12 * s, h * 0.5), brand.upper(), body)
        _text(d, (12 * s, h * 0.5, w - 12 * s, h * 0.58), flavour, (40, 40, 40), "DejaVuSans.ttf")
        d.ellipse((w * 0.35, h * 0.66, w * 0.65, h * 0.82), fill=accent + (255,))
    elif view == "side":
        d.rectangle((w * 0.55, h * 0.35, w, h * 0.6), fill=paper + (255,))
        _lines(d, (w * 0.08, h * 0.66, w * 0.9, h * 0.88), rng, fill=paper)
    else:
        d.rectangle((w * 0.1, h * 0.3, w * 0.9, h * 0.85), fill=paper + (255,))
        _lines(d, (w * 0.15, h * 0.33, w * 0.85, h * 0.82), rng, barcode=True)
    return _finish(img, 0.45)


def _jar(view, body, accent, paper, brand, flavour, rng):
    img = _can(view, tuple(int(c * 0.75) for c in body), accent, paper, brand, flavour, rng, tall=False)
    if view == "top":
        return img
    lid = Image.new("RGBA", (img.width, int(img.height * 0.16)), (0, 0, 0, 0))
    ImageDraw.Draw(lid).rounded_rectangle((0, 0, lid.width - 1, lid.height - 1), radius=6, fill=accent + (255,))
    out = Image.new("RGBA", (img.width, img.height + lid.height - 6), (0, 0, 0, 0))
    out.paste(img, (0, lid.height - 6), img)
    out.paste(_apply_shade(lid, 0.4), (0, 0), lid)
    return out


def _fruit(view, body, accent, paper, brand, flavour, rng):
    s = SS
    img, d = _canvas(300, 320)
    squash = {"front": 1.0, "side": 0.9, "back": 0.97, "top": 0.95}.get(view, 1.0)
    d.ellipse((10 * s, 30 * s, 290 * s, (30 + 280 * squash) * s), fill=body + (255,))
    if view == "front":
        d.line((150 * s, 45 * s, 160 * s, 5 * s), fill=(90, 60, 30, 255), width=7 * s)
        d.ellipse((160 * s, 10 * s, 230 * s, 40 * s), fill=(60, 140, 50, 255))
    elif view == "side":  # stem leaning away, the cheek towards the camera
        d.line((185 * s, 50 * s, 215 * s, 12 * s), fill=(90, 60, 30, 255), width=6 * s)
        blush = render.rotate_hue(body, -25)
        d.ellipse((40 * s, 120 * s, 170 * s, 250 * s), fill=blush + (255,))
    elif view == "back":  # the blossom end: a small dark star, no stem
        d.ellipse((140 * s, 260 * s, 160 * s, 280 * s), fill=(70, 50, 30, 255))
    else:
        d.ellipse((135 * s, 150 * s, 165 * s, 180 * s), fill=(90, 60, 30, 255))
    img = img.filter(ImageFilter.GaussianBlur(6)) if view == "side" else img
    img = img.resize((300, 320), Image.LANCZOS)
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.mgrid[0:320, 0:300].astype(np.float32)
    light = 1.15 - 0.6 * np.hypot((xx - 110) / 220, (yy - 120) / 230) ** 1.5
    speck = np.random.default_rng(rng.getrandbits(32)).normal(0, 0.03, light.shape)
    arr[..., :3] = np.clip(arr[..., :3] * (light + speck)[..., None], 0, 255)
    arr[..., 3] = np.where(arr[..., 3] > 128, 255, arr[..., 3] * 2)  # blur must not soften the outline
    img = Image.fromarray(arr.astype(np.uint8), "RGBA").filter(ImageFilter.SMOOTH)
    bbox = img.getchannel("A").getbbox()
    return img.crop(bbox)


_DRAW = {"bottle": _bottle, "carton": _carton, "box": _box, "can": _can, "jar": _jar, "fruit": _fruit}
DRAWN_VIEWS = ("front", "side", "back", "top")


def _description(brand: str, flavour: str, colour: str, kind: str) -> str:
    pack = {"bottle": "bottle", "carton": "carton", "box": "box", "can": "can", "jar": "glass jar", "fruit": ""}[kind]
    if not pack:
        return f"Fresh {colour} {flavour.lower()}s from {brand} farms, picked ripe and sold by weight."
    return f"{brand} {flavour.lower()} in a {colour} {pack}. Store in a cool, dry place."


class ProceduralSource:
    """`n` drawn products; group ids "proc-0000"... (a group is one product design)."""
    name = "procedural"

    def __init__(self, n: int = 240, seed: int = 0):
        self.n, self.seed = n, seed

    def _id(self, i: int) -> str:
        return f"proc{self.seed}-{i:04d}"

    def groups(self) -> dict[str, str]:
        return {self._id(i): "procedural-" + random.Random(self._id(i)).choice(KINDS) for i in range(self.n)}

    def product(self, group: str) -> Product:
        kind, cidx, brand, flavour, _ = design(group)
        colour = COLOURS[cidx][0]
        category = CATEGORY[flavour] if kind != "fruit" else flavour.lower()
        cutouts = {v: draw_product(group, v) for v in DRAWN_VIEWS}

        def variant(view: str, vrng: random.Random):
            choices = [i for i in colour_choices(kind, flavour) if i != cidx] or \
                [i for i in colour_choices("box", flavour) if i != cidx]  # an orange only comes orange
            other = vrng.choice(choices)
            return draw_product(group, view, other), COLOURS[other][0]

        return Product(group=group, stratum="procedural-" + kind, name=f"{brand} {flavour}", category=category,
                       colour=colour, description=_description(brand, flavour, colour, kind),
                       source="procedural", cutouts=cutouts, title_extras=TITLE_EXTRAS[kind], brand=brand,
                       variant=variant, packable=kind in ("can", "fruit", "jar", "bottle"))


def demo_products(n: int, seed: int = 0, size: int = 800) -> list[dict]:
    """Products for the service demo and tests: ~7 candidate JPEGs of about size x size each.

    A deterministic mix: products whose candidates hold a good primary and clean views, and
    products with typical problems (a banner or watermark image, a duplicated view, no white
    primary, ...). Returns dicts {"product_id", "title", "category", "label", "images":
    [(candidate_id, jpeg_bytes), ...], "truth": {candidate_id: {"rules", "primary_ok",
    "dup_group", "variant"}}}; "label" is the rule the candidate set was built to break
    ("qualified" when none); "truth" is each candidate's own labels (candidate_meta).
    """
    from agpis.data import listing as listing_mod

    src = ProceduralSource(n=max(n, 1) * 3, seed=1000 + seed)
    groups = list(src.groups())
    plans = listing_mod.DEMO_PLANS
    out = []
    for i in range(n):
        label = plans[i % len(plans)]
        listing = listing_mod.make_listing(src.product(groups[i]), f"demo{seed}-{i:03d}", [label], size=size,
                                           styles_split="train", seed=seed * 100003 + i, extra_problems=False,
                                           drop_replaced=1.0, others=[src.product(groups[(i + 1) % len(groups)])])
        out.append({"product_id": listing.product_id, "title": listing.records[0]["title"],
                    "category": listing.category, "label": label,
                    "images": [(f"c{j}", render.jpeg(img, 90)) for j, img in enumerate(listing.images)],
                    # per-candidate truth, for tests that play a reviewer who knows the answer
                    "truth": {f"c{j}": {"rules": list(m["rules"]), "primary_ok": m["primary_ok"],
                                        "dup_group": m["dup_group"], "variant": m["variant"]}
                              for j, m in enumerate(listing.metas)}})
    return out


