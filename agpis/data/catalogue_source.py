"""AGPIS-data records from real catalogue listings (a source of `agpis data build`).

A listing is one colour of one style, its real photos as candidates (the main view, back,
close-up, side), titled "Name, Colour" as the shop does. Violations come from the catalogue
itself wherever it can give them: another colour of the same style (`inconsistent_product`), a
title naming another colour the style really comes in (`title_mismatch`), a back view or
close-up first (`improper_order`, `primary_not_whole_product`). The rest are rendered on the
real photos: crops, zooms (65-90%), flips and re-encodes (`duplicated_view`), the main photo
shrunk on white or set on a real shop photo or a drawn backdrop, the overlay styles of
agpis/data/violations.py.

The split unit is the style (catalogue.split_styles): no style's photos are on two sides.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from agpis import rules
from agpis.data import catalogue, render, styles, violations
from agpis.data.listing import Item, Listing, assemble
from agpis.data.styles import Styles

SOURCE = "magento"


@functools.lru_cache(maxsize=64)
def _photo(path: str, size: int) -> Image.Image:
    """A shop photo with its longest side `size`, aspect kept (catalogue photos are portrait)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    im.thumbnail((size, size), Image.LANCZOS)
    return im


def product_box(img: Image.Image, tol: int = 12) -> tuple[int, int, int, int]:
    """The box of everything that is not the white studio background."""
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    ys, xs = np.nonzero((255 - a).max(axis=2) > tol)
    if len(xs) == 0:
        return 0, 0, img.width, img.height
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def close_up(img: Image.Image, rng: random.Random) -> Image.Image:
    """A close-up made from a view: a 2-2.6x zoom on a part of the product, same frame size (a
    new view by docs/data.md's definition, not a duplicate)."""
    x0, y0, x1, y1 = product_box(img)
    zoom = rng.uniform(2.0, 2.6)
    w, h = img.width / zoom, img.height / zoom
    cx = rng.uniform(x0 + min(w, x1 - x0) / 2, x1 - min(w, x1 - x0) / 2)
    cy = rng.uniform(y0 + min(h, y1 - y0) / 2, y1 - min(h, y1 - y0) / 2)
    left = min(max(0.0, cx - w / 2), img.width - w)
    top = min(max(0.0, cy - h / 2), img.height - h)
    return img.crop((int(left), int(top), int(left + w), int(top + h))).resize(img.size, Image.LANCZOS)


def shrunk(img: Image.Image, rng: random.Random) -> Image.Image:
    """The photo scaled down to 30-45% of its frame on white (the product too small)."""
    f = rng.uniform(0.3, 0.45)
    small = img.resize((max(1, int(img.width * f)), max(1, int(img.height * f))), Image.LANCZOS)
    canvas = Image.new("RGB", img.size, render.WHITE)
    canvas.paste(small, (rng.randint(0, img.width - small.width), rng.randint(0, img.height - small.height)))
    return canvas


def on_backdrop(img: Image.Image, bg: Image.Image) -> Image.Image:
    """The product cut out of its white studio background and set, where it stood, on `bg`."""
    cut = render.cutout_from_plain(img)
    x0, y0, _, _ = product_box(img)
    canvas = _cover(bg, img.size)
    canvas.paste(cut, (x0, y0), cut)
    return canvas


def _cover(bg: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`bg` scaled to cover `size` and centre-cropped."""
    s = max(size[0] / bg.width, size[1] / bg.height)
    bg = bg.resize((max(size[0], round(bg.width * s)), max(size[1], round(bg.height * s))), Image.LANCZOS)
    x, y = (bg.width - size[0]) // 2, (bg.height - size[1]) // 2
    return bg.crop((x, y, x + size[0], y + size[1]))


class CatalogueSource:
    """Builder source over a shop catalogue (the Magento tables by default)."""
    name = SOURCE
    # Real catalogue listings dominate the default mix (issue 12): with grocery's 81 products,
    # ABO and JD, a weight of 1.5 makes about two thirds of all listings catalogue listings.
    weight = 1.5

    def __init__(self, root: str | Path | None = None):
        self.styles = {f"{SOURCE}-{s.style}": s for s in catalogue.magento(root)}
        self.split = {f"{SOURCE}-{k}": v for k, v in catalogue.split_styles(list(self.styles.values())).items()}
        # Styles with a colour that has two or more real views: a listing needs a sequence.
        self.usable = {g: s for g, s in self.styles.items()
                       if any(len(ims) >= 2 for ims in s.colours.values())}
        self.shop_photos = _shop_photos(root)

    def groups(self) -> dict[str, str]:
        return {g: s.department for g, s in self.usable.items()}

    def splits(self) -> dict[str, str]:
        return {g: self.split[g] for g in self.usable}

    def product(self, group: str):
        return self.styles[group]

    def listing(self, group: str, product_id: str, labels: list[str], size: int, style_split: str, seed: int,
                extra_problems: bool = True) -> Listing:
        rng = random.Random(seed)
        style = self.usable[group]
        same_split = [s for g, s in self.styles.items() if self.split[g] == self.split[group] and g != group]
        b = _CatalogueBuilder(style, size, rng, Styles(style_split), same_split, self.shop_photos)
        recs = [b.record(label) for label in labels]
        if extra_problems and rng.random() < 0.5:
            b.distractor()
        return assemble(b.items, recs, rng, product_id, group, style.category)


def _shop_photos(root) -> list[str]:
    """Real in-store photos (the grocery dataset) used as real backdrops, when present."""
    from agpis.data.real import data_dir

    try:
        d = data_dir(root) / "grocery" / "dataset" / "train"
    except FileNotFoundError:
        return []
    return sorted(str(p) for p in d.glob("*/*/*.jpg"))[::20] if d.is_dir() else []


class _CatalogueBuilder:
    def __init__(self, style: catalogue.CatalogueStyle, size: int, rng: random.Random, st: Styles,
                 other_styles: list[catalogue.CatalogueStyle], shop_photos: list[str]):
        self.s, self.size, self.rng, self.st = style, size, rng, st
        self.other_styles, self.shop_photos = other_styles, shop_photos
        colours = [c for c, ims in style.colours.items() if len(ims) >= 2]
        self.colour = rng.choice(sorted(colours))
        self._gid = 0
        self.items: list[Item] = []
        for im in style.colours[self.colour]:
            self.items.append(Item(_photo(im.path, size), im.view, im.view == "front", self.gid(),
                                   source=f"{SOURCE}-photo", source_id=im.path))
        self.front = self.items[0]
        # Fewer than three aspects: one close-up cut from the main photo (still real pixels).
        if len({it.aspect for it in self.items}) < 3:
            self.add(Item(close_up(self.front.image, rng), "detail", False, self.gid(), source=f"{SOURCE}-crop"))
        self.title = style.title(self.colour)
        self.used_pairs: set[frozenset] = set()
        self.made: set[int] = set()  # ids of problem images (violations, duplicates): never a clean view

    def gid(self) -> int:
        self._gid += 1
        return self._gid - 1

    def add(self, item: Item, problem: bool = False) -> Item:
        self.items.append(item)
        if problem:
            self.made.add(id(item))
        return item

    def clean(self, exclude=()) -> list[Item]:
        return [it for it in self.items if it is not self.front and id(it) not in self.made and not it.rules
                and it.variant == "same" and it.aspect != "front" and not any(it is x for x in exclude)]

    def _pairs(self, first: Item, strict: bool = True) -> list[tuple[Item, Item]]:
        """Pairs of clean views to follow `first`: strictly, two aspects other than first's;
        otherwise (a back view first and only three real views) any two other images."""
        cands = [it for it in self.clean((first,)) if it.group != first.group
                 and (not strict or it.aspect != first.aspect)]
        return [(a, b) for i, a in enumerate(cands) for b in cands[i + 1:]
                if a.group != b.group and (not strict or a.aspect != b.aspect)]

    def two_views(self, first: Item) -> list[Item]:
        """Two clean views of two aspects other than `first`'s, preferring a pair not used yet;
        a close-up cut from the main photo when the listing has too few views."""
        pairs = self._pairs(first)
        for _ in range(2):
            if pairs:
                break
            src = self.rng.choice([self.front] + self.clean())
            self.add(Item(close_up(src.image, self.rng), "detail", False, self.gid(), source=f"{SOURCE}-crop"))
            pairs = self._pairs(first) or self._pairs(first, strict=False)
        fresh = [p for p in pairs if frozenset(map(id, p)) not in self.used_pairs] or pairs
        a, b = self.rng.choice(fresh)
        self.used_pairs.add(frozenset((id(a), id(b))))
        return [a, b] if self.rng.random() < 0.5 else [b, a]

    def other_colour_photo(self) -> tuple[Item, str, str]:
        """A real photo of another colour of this style, else of another style of its department."""
        rng = self.rng
        others = [c for c in self.s.colours if c != self.colour]
        if others:
            c = rng.choice(sorted(others))
            im = rng.choice(self.s.colours[c])
            return (Item(_photo(im.path, self.size), im.view, False, self.gid(), variant="variant",
                         source=f"{SOURCE}-photo", source_id=im.path), "variant", f"{c} and {self.colour}")
        pool = [s for s in self.other_styles if s.department == self.s.department] or self.other_styles
        o = rng.choice(pool)
        im = o.colours[rng.choice(sorted(o.colours))][0]
        return (Item(_photo(im.path, self.size), im.view, False, self.gid(), variant="other_product",
                     source=f"{SOURCE}-photo", source_id=im.path), "other_product", o.name)

    def duplicate_of(self, src: Item) -> tuple[Item, str]:
        """A near-duplicate of a real view (a crop or centred zoom keeping 65-90%, a mirror, a
        re-encode; one or two), added as a problem image; with the transforms' names."""
        img, detail = violations.near_duplicate(src.image, self.rng, crop=(0.65, 0.9), zoom=(1 / 0.9, 1 / 0.65),
                                                ops=("crop", "zoom", "flip", "reencode"))
        dup = Item(img, src.view, src.primary_ok and set(detail.split("+")) <= {"flip", "reencode"}, src.group,
                   source=src.source)
        return self.add(dup, problem=True), detail

    # one record per label
    def record(self, label: str) -> dict:
        rng = self.rng
        a, b = self.two_views(self.front)
        seq = [self.front, a, b]
        title, region, detail, kind, positions = self.title, "", "", None, []
        if label == rules.QUALIFIED:
            return {"title": title, "seq_items": seq, "label": label, "feedback": "yes"}
        cat = rules.category_of(label)
        if cat == "single":
            slot = 0 if rng.random() < 0.35 else rng.choice((1, 2))
            base = seq[slot]
            others = [it.image for it in self.clean((base,))][:3]
            applied = violations.SINGLE[label](base.image, rng, self.st, others)
            collage = applied.kind == "collage"
            bad = self.add(Item(applied.image, "collage" if collage else base.view, False,
                                self.gid() if collage else base.group, rules=[label], box=applied.box,
                                source=base.source), problem=True)
            seq[slot] = bad
            positions, kind, detail = [slot], applied.kind, applied.detail
            if applied.box:
                region = rules.region_name(applied.box, bad.image.width, bad.image.height)
        elif cat == "primary":
            seq, kind, detail = self._primary(label)
            positions = [0]
        elif label == "duplicated_view":
            src = rng.choice((self.front, a))
            dup, detail = self.duplicate_of(src)
            seq = [self.front, a, dup] if src is a else [self.front, dup, a]
            if rng.random() < 0.5:
                seq[1], seq[2] = seq[2], seq[1]
            positions = sorted(seq.index(x) for x in (src, dup))
        elif label == "inconsistent_product":
            bad, kind, detail = self.other_colour_photo()
            self.add(bad, problem=True)
            slot = rng.choice((1, 2))
            seq[slot] = bad
            positions = [slot, 0]  # the odd one out first: "{image}" names it
        elif label == "title_mismatch":
            real = [c for c in self.s.colours if c != self.colour]
            wrong = rng.choice(sorted(real)) if real else \
                rng.choice([c for c in rules.COLOUR_WORDS if c not in self.colour])
            title, detail = self.s.title(wrong), f"{wrong} {self.s.category}"
        elif label == "improper_order":  # a back view or close-up first, the main view later
            late = [it for it in (a, b) if it.aspect in ("back", "detail")]
            first = rng.choice(late) if late else a
            rest = [it for it in seq if it is not first]
            seq = [first] + (rest if rng.random() < 0.5 else rest[::-1])
            positions = [0]
        elif label == "insufficient_views":
            details = [it for it in self.clean() if it.aspect == "detail"]
            src = rng.choice([self.front] + [it for it in self.clean() if it.aspect != "detail"])
            while len(details) < 2:
                details.append(self.add(Item(close_up(src.image, rng), "detail", False, self.gid(),
                                             source=f"{SOURCE}-crop")))
            seq = [self.front] + rng.sample(details, 2)
            positions, detail = [1, 2], "two close-ups"
        fb = rules.feedback(label, image=positions[0] if positions else None,
                            images=positions if len(positions) > 1 else None, region=region, detail=detail,
                            kind=kind, rng=rng)
        violation = {"images": sorted(q + 1 for q in positions), "region": region, "detail": detail}
        return {"title": title, "seq_items": seq, "label": label, "feedback": fb, "violation": violation}

    def _primary(self, label: str) -> tuple[list[Item], str | None, str]:
        rng, front = self.rng, self.front
        kind, detail = None, ""
        if label == "primary_not_whole_product":
            bad = rng.choice([it for it in self.clean() if it.aspect in ("back", "detail")])
            kind = "back" if bad.view == "back" else "close_up"
        else:
            if label == "primary_product_too_small":
                img = shrunk(front.image, rng)
            elif self.shop_photos and rng.random() < 0.5:
                with Image.open(rng.choice(self.shop_photos)) as photo:
                    bg = photo.convert("RGB").filter(ImageFilter.GaussianBlur(3))
                img, kind, detail = on_backdrop(front.image, bg), "photo", "in a shop"
            else:
                name, spec = self.st.pick(styles.BACKDROPS, rng)
                img, detail = on_backdrop(front.image, render.backdrop(front.image.size, spec, rng)), name
            bad = self.add(Item(img, "front", False, front.group, source=f"{SOURCE}-photo"), problem=True)
        # Sellers whose primary is bad often have no good one at all: half the time the real
        # main photo is not among the candidates (unless another record uses it).
        if rng.random() < 0.5:
            front.keep = False
        return [bad] + self.two_views(bad), kind, detail

    def distractor(self) -> None:
        """An extra problem image among the candidates, used by no record (stage 1 data): an
        overlay on a real view, a zoom of one, or another colour's photo."""
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            label = rng.choice(list(violations.SINGLE))
            base = rng.choice([it for it in self.items if not it.rules])
            applied = violations.SINGLE[label](base.image, rng, self.st, [it.image for it in self.clean((base,))][:3])
            collage = applied.kind == "collage"
            self.add(Item(applied.image, "collage" if collage else base.view, False,
                          self.gid() if collage else base.group, rules=[label], box=applied.box, source=base.source),
                     problem=True)
        elif r < 0.75:
            self.duplicate_of(rng.choice([self.front] + self.clean()))
        else:
            self.add(self.other_colour_photo()[0], problem=True)
