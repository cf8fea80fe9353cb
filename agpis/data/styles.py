"""Everything a violation renderer draws from, split into training and held-out styles.

Fonts, colour palettes, watermark/logo marks, positions and backdrops each come in two
disjoint pools: `train` (the only ones training products see) and `heldout` (drawn for a
share of validation/test products), so evaluation can measure generalisation to styles never
seen in training (issue 3, item 4). Phrases and prices are shared: they are the content a
reviewer reads, not a style.

Fonts are matplotlib's bundled DejaVu, STIX and Computer Modern files (present offline on every
machine with matplotlib); a phrase is only drawn with a font whose character map covers it.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

FONT_DIR = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"

FONTS = {
    "train": ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf",
              "STIXGeneralBol.ttf", "STIXGeneral.ttf", "DejaVuSans-Oblique.ttf", "cmss10.ttf", "cmb10.ttf"),
    "heldout": ("DejaVuSans-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSerif.ttf",
                "STIXGeneralBolIta.ttf", "DejaVuSansMono.ttf", "cmr10.ttf", "cmtt10.ttf"),
}

# (language, text). Real shop phrasing in several scripts; the grocery photos are Swedish.
PROMO = (
    ("en", "SALE"), ("en", "50% OFF"), ("en", "FREE SHIPPING"), ("en", "BEST SELLER"), ("en", "NEW"),
    ("en", "HOT DEAL"), ("en", "Limited offer"), ("en", "Buy 1 Get 1 Free"), ("en", "2 FOR 1"),
    ("en", "Today only!"), ("en", "100% ORGANIC"), ("en", "Fresh every day"), ("en", "Top quality"),
    ("en", "Save 30% now"), ("en", "Order now - ships today"), ("en", "Best price guaranteed"),
    ("de", "Angebot"), ("de", "Nur heute!"), ("de", "Gratis Versand"), ("de", "Jetzt -25%"),
    ("fr", "Soldes"), ("fr", "Livraison gratuite"), ("fr", "Promo -40%"), ("fr", "Nouveau !"),
    ("es", "OFERTA"), ("es", "Envío gratis"), ("es", "¡Últimas unidades!"),
    ("it", "Sconto 20%"), ("it", "Spedizione gratuita"),
    ("sv", "REA"), ("sv", "Fri frakt"), ("sv", "Kampanj!"), ("sv", "Nyhet!"), ("sv", "Köp 3 betala för 2"),
    ("pl", "Promocja"), ("pl", "Darmowa dostawa"), ("tr", "İndirim"), ("tr", "Ücretsiz kargo"),
    ("ru", "СКИДКА 40%"), ("ru", "Распродажа"), ("ru", "Только сегодня"), ("ru", "Бесплатная доставка"),
    ("ru", "Хит продаж"), ("uk", "Акція"), ("el", "ΠΡΟΣΦΟΡΑ"), ("el", "Εκπτώσεις -30%"),
    ("el", "Δωρεάν αποστολή"),
)
STICKER = ("NEW", "-20%", "-30%", "-50%", "SALE", "HOT", "TOP", "BIO", "ECO", "2+1", "NEU", "НОВИНКА",
           "ΝΕΟ", "REA", "PROMO", "XXL", "1+1", "%")
PRICE = ("${:.2f}", "€{:.2f}", "{:.2f} €", "£{:.2f}", "{:.2f} kr", "{:.0f} ₽", "¥{:.0f}", "{:.2f} zł",
         "{:.2f} TL")
SHOPS = {
    "train": ("FreshMart", "GreenBasket", "DailyDeals24", "ShopWise", "MegaSave", "NordicPantry",
              "TopChoice Store", "HappyCart", "Marketly", "VitaShop", "Frukt & Grönt", "Lavka", "AgoraFresh",
              "BudgetKing", "Good Buy Co.", "Mercado Sol"),
    "heldout": ("PrimeGrocer", "UrbanHarvest", "BazaarOne", "Kauppa Plus", "EcoDepot", "Magazin 7",
                "QuickPick", "Sunny Aisle"),
}
DOMAINS = (".com", ".shop", ".store", ".de", ".ru", ".se", ".gr", ".net")
# Logo emblems: drawn shapes behind a shop's initials (render.draw_logo).
LOGO_SHAPES = {"train": ("circle", "rounded", "shield", "leaf"), "heldout": ("hexagon", "star", "ring")}
# (background, text) colours of banners, stickers and tags.
PALETTES = {
    "train": (((220, 20, 30), (255, 255, 255)), ((255, 210, 0), (20, 20, 20)), ((0, 120, 60), (255, 255, 255)),
              ((20, 20, 20), (255, 220, 0)), ((240, 90, 0), (255, 255, 255)), ((0, 90, 200), (255, 255, 255)),
              ((255, 255, 255), (200, 0, 0)), ((150, 0, 120), (255, 255, 255))),
    "heldout": (((255, 105, 180), (255, 255, 255)), ((0, 170, 170), (255, 255, 255)), ((120, 60, 20), (255, 230, 160)),
                ((255, 240, 120), (0, 60, 160)), ((60, 60, 60), (120, 255, 120))),
}
# Where overlays go. Banners: full-width strips; stickers/logos/watermark corners.
BANNER_POS = {"train": ("top", "bottom", "ribbon"), "heldout": ("middle", "side")}
CORNERS = {"train": ("top-left", "top-right", "bottom-right"), "heldout": ("bottom-left", "centre-right")}
WATERMARK_KIND = {"train": ("tiled", "corner", "centre"), "heldout": ("tiled-straight", "corner", "centre-logo")}
# Non-white backdrops of a primary image: (name a reviewer would say, colour or texture recipe).
BACKDROPS = {
    "train": (("grey", (170, 170, 175)), ("beige", (226, 211, 186)), ("light blue", (180, 205, 230)),
              ("black", (25, 25, 28)), ("wooden", "wood"), ("pink", (240, 196, 205)), ("green", (150, 190, 140))),
    "heldout": (("dark blue", (30, 45, 90)), ("marble", "marble"), ("yellow", (245, 215, 110)),
                ("linen", "linen"), ("red", (180, 40, 40))),
}
BORDER_COLOURS = {"train": ((200, 0, 0), (0, 0, 0), (255, 200, 0), (0, 110, 200), (0, 140, 70)),
                  "heldout": ((255, 105, 180), (128, 0, 128), (210, 180, 140))}


@functools.lru_cache(maxsize=None)
def _cmap(name: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(FONT_DIR / name, lazy=True).getBestCmap())


@functools.lru_cache(maxsize=256)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def covers(name: str, text: str) -> bool:
    cmap = _cmap(name)
    return all(ord(c) in cmap for c in text if not c.isspace())


@dataclass(frozen=True)
class Styles:
    """The style pool of one split ("train" or "heldout")."""
    split: str

    def __post_init__(self):
        if self.split not in FONTS:
            raise ValueError(f"unknown style split {self.split!r}; expected one of {tuple(FONTS)}")

    def font_for(self, text: str, rng: random.Random) -> str:
        names = [f for f in FONTS[self.split] if covers(f, text)]
        if not names:  # a script none of this pool's fonts has: DejaVu Sans has nearly everything
            names = ["DejaVuSans-Bold.ttf"]
        return rng.choice(names)

    def palette(self, rng: random.Random):
        return rng.choice(PALETTES[self.split])

    def shop(self, rng: random.Random) -> str:
        return rng.choice(SHOPS[self.split])

    def pick(self, table: dict, rng: random.Random):
        return rng.choice(table[self.split])


def promo(rng: random.Random) -> str:
    return rng.choice(PROMO)[1]


def price(rng: random.Random) -> str:
    fmt = rng.choice(PRICE)
    value = rng.choice((0.99, 1.49, 2.49, 3.99, 4.95, 9.9, 12.5, 19.9, 24.0, 29.9, 49, 99, 129, 299))
    return fmt.format(value)
