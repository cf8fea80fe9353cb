"""One listing: a product's ~7 candidate images as a seller uploads them, and target sequences
of 3 over them, each qualified or breaking exactly one rule, with the feedback a reviewer
would write.

The candidate set is built from a clean pool (the product cut out on white, other views, a
close-up, a pack shot, a staged scene, real photos) plus the problem images the planned records
need (a banner version of a view, a duplicate, a recoloured variant, a primary on a coloured
backdrop, ...). Every candidate carries its own truth (`candidate_meta`).

Definitions the labels follow (docs/data.md says the same):
- `primary_ok`: a front or pack view of the whole listed product on pure white, filling the
  frame well, with no single-image violation.
- `dup_group`: candidates made from the same base image by crop, zoom, flip, re-encoding,
  rotation, rescaling, a background swap or added overlays share a group. A close-up (a >= 2x
  zoom on a part), a pack shot and a staged scene are new views with groups of their own.
- aspects: scene and lifestyle photos are one aspect ("context"); every other view is its own.
  A qualified sequence shows three different aspects, the main view first.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from PIL import Image, ImageFilter

from agpis import rules
from agpis.data import render, styles, violations
from agpis.data.product import Product
from agpis.data.styles import Styles

PRIMARY_RULES = tuple(r.id for r in rules.rules_in("primary"))


@dataclass
class Item:
    image: Image.Image
    view: str
    primary_ok: bool
    group: int  # dup group
    rules: list[str] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None
    variant: str = "same"
    source: str = ""
    keep: bool = True  # part of the uploaded candidate set
    source_id: str = ""  # the Photo.id a real photo came from

    @property
    def aspect(self) -> str:
        return "context" if self.view in ("scene", "lifestyle") else self.view

    def meta(self) -> dict:
        return {"view": self.view, "rules": list(self.rules), "primary_ok": self.primary_ok, "dup_group": self.group,
                "box": list(self.box) if self.box else None, "size": [self.image.width, self.image.height],
                "variant": self.variant, "source": self.source}


@dataclass
class Listing:
    product_id: str
    group: str
    category: str
    images: list[Image.Image]
    metas: list[dict]
    records: list[dict]  # title, sequence, label, feedback, violation (no URIs yet)


# --- titles ------------------------------------------------------------------------------------

def make_title(p: Product, rng: random.Random, colour: str | None = None) -> str:
    """A listing title from the product's name, category word, colour and size, in one of a few
    shop styles. The colour word appears whenever the product has one (title_mismatch swaps it)."""
    colour = colour or p.colour
    name = p.name
    if colour and colour.lower() in name.lower().split():
        if colour == p.colour:
            colour = None  # "Red Bell Pepper" already says it
        else:
            name = " ".join(colour.title() if w.lower() == p.colour else w for w in name.split())
            colour = None
    cat = p.category
    has_cat = cat.lower() in name.lower()
    extra = rng.choice(p.title_extras) if p.title_extras else ""
    noun = name if has_cat else f"{name} {cat.title()}"
    desc = re.split(r"[.!;]", p.description)[0].strip()
    if len(desc.split()) > 9:
        desc = " ".join(desc.split()[:9])
    style = rng.randrange(4)
    if colour:
        if style == 0:
            t = f"{noun}, {colour.title()}" + (f", {extra}" if extra else "")
        elif style == 1:
            t = f"{colour.title()} {noun}" + (f" - {extra}" if extra else "")
        elif style == 2:
            t = f"{p.brand + ' ' if p.brand and p.brand not in name else ''}{noun} ({colour}) {extra}"
        else:
            t = f"{noun} {extra}, {colour}: {desc}"
    else:
        if style in (0, 1):
            t = f"{noun}" + (f", {extra}" if extra else "")
        elif style == 2:
            t = f"{p.brand + ' ' if p.brand and p.brand not in name else ''}{noun} {extra}"
        else:
            t = f"{noun} {extra}: {desc}"
    return " ".join(t.split()).strip(" ,:-")


# --- clean views -------------------------------------------------------------------------------

class Pool:
    """Builds candidate images for one listing and hands out dup-group ids."""

    def __init__(self, product: Product, size: int, rng: random.Random, st: Styles):
        self.p, self.size, self.rng, self.st = product, size, rng, st
        self._next = 0

    def gid(self) -> int:
        self._next += 1
        return self._next - 1

    def front_cut(self) -> Image.Image:
        return self.p.cutouts["front"]

    def on_white(self, cut, fill, offset=None, shadow=None):
        rng = self.rng
        offset = offset if offset is not None else (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
        return render.compose(cut, self.size, fill, rng, offset=offset, shadow=shadow)

    def front(self) -> Item:
        img, _ = self.on_white(self.front_cut(), self.rng.uniform(0.76, 0.92))
        return Item(img, "front", True, self.gid(), source=f"{self.p.source}-cutout")

    def view(self, view: str) -> Item:
        img, _ = self.on_white(self.p.cutouts[view], self.rng.uniform(0.62, 0.86))
        return Item(img, view, False, self.gid(), source=f"{self.p.source}-cutout")

    def detail(self) -> Item:
        """A close-up: the cut-out enlarged 2-3x so only part of it shows."""
        rng = self.rng
        cut = self.front_cut()
        # Small catalogue shots (198 px) blur when enlarged: zoom less on them.
        hi = 2.2 if max(cut.size) < 300 else 3.0
        img, _ = self.on_white(cut, rng.uniform(1.8, hi), offset=(rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8)),
                               shadow=0)
        return Item(img, "detail", False, self.gid(), source=f"{self.p.source}-cutout")

    def pack(self) -> Item:
        """Several units side by side on white (a multipack or a bunch)."""
        rng = self.rng
        n = rng.choice((2, 3, 3, 4))
        canvas = Image.new("RGB", (self.size, self.size), render.WHITE)
        cut = self.front_cut()
        unit = int(self.size * min(0.85, 1.7 / (n + 0.6)))
        cut = render.resize_cut(cut, unit)
        total_w = cut.width * (1 + 0.62 * (n - 1))
        x = (self.size - total_w) / 2
        y_base = (self.size - cut.height) / 2 + cut.height * 0.08
        order = list(range(n))
        for k in order:
            c = cut if rng.random() < 0.6 else cut.transpose(Image.FLIP_LEFT_RIGHT)
            yy = y_base - (cut.height * 0.1 if k % 2 else 0)
            render.paste(canvas, c, (int(x + k * cut.width * 0.62), int(yy)), shadow=0.25)
        return Item(canvas, "pack", True, self.gid(), source=f"{self.p.source}-cutout")

    def scene(self, backdrop=None, photo_bg: Image.Image | None = None) -> tuple[Item, str]:
        """The product staged on a table in front of a wall, or in front of a blurred shop photo."""
        rng, s = self.rng, self.size
        if photo_bg is not None:
            bg = render.fit_square(photo_bg, s).filter(ImageFilter.GaussianBlur(s * 0.012))
            name = "shop"
        else:
            name, spec = backdrop or rng.choice(styles.BACKDROPS["train"] + styles.BACKDROPS["heldout"])
            wall_spec = rng.choice(((236, 232, 226), (214, 222, 228), (225, 228, 214), (240, 236, 240)))
            bg = render.backdrop((s, s), wall_spec, rng)
            horizon = int(s * rng.uniform(0.52, 0.7))
            table = render.backdrop((s, s - horizon), spec, rng)
            bg.paste(table, (0, horizon))
            bg = bg.filter(ImageFilter.GaussianBlur(1.2))
        view = "front" if rng.random() < 0.7 or len(self.p.cutouts) == 1 else \
            rng.choice([v for v in self.p.cutouts if v != "top"])
        cut = render.resize_cut(self.p.cutouts[view], int(s * rng.uniform(0.42, 0.62)))
        x = int((s - cut.width) * rng.uniform(0.15, 0.85))
        y = int(s * rng.uniform(0.82, 0.9)) - cut.height
        render.paste(bg, cut, (x, y), shadow=0.45)
        return Item(bg, "scene", False, self.gid(), source=f"{self.p.source}-scene"), name

    def photo(self, ph) -> Item:
        src = ph.load()
        img = render.fit_square(src, self.size)
        box = None
        if ph.box is not None:  # fit_square centre-crops near-square photos, then scales
            w, h = src.size
            side = min(w, h)
            ox, oy, k = (w - side) / 2, (h - side) / 2, self.size / side
            x0, y0, x1, y1 = ph.box
            box = (max(0, int((x0 - ox) * k)), max(0, int((y0 - oy) * k)),
                   min(self.size, int((x1 - ox) * k) + 1), min(self.size, int((y1 - oy) * k) + 1))
        return Item(img, ph.view, ph.primary_ok, self.gid(), rules=list(ph.rules), box=box,
                    source=f"{self.p.source}-photo", source_id=ph.id)


def clean_pool(pool: Pool, rng: random.Random, n_photos: int) -> list[Item]:
    """The compliant images a careful seller would upload: the main view first."""
    p = pool.p
    items = [pool.front()]
    for v in p.cutouts:
        if v != "front" and (v != "top" or rng.random() < 0.4):
            items.append(pool.view(v))
    items.append(pool.detail())
    if p.packable and rng.random() < 0.6:
        items.append(pool.pack())
    if not p.photos or rng.random() < 0.6:
        items.append(pool.scene()[0])
    photos = [ph for ph in p.photos if not ph.rules]
    for ph in rng.sample(photos, min(n_photos, len(photos))):
        items.append(pool.photo(ph))
    return items


# --- records -----------------------------------------------------------------------------------

DEFAULT_MIX = {"qualified": 0.71, "single": 0.085, "primary": 0.035, "pair": 0.07, "multi": 0.10}


def sample_label(rng: random.Random, mix: dict[str, float]) -> str:
    cats = list(mix)
    cat = rng.choices(cats, [mix[c] for c in cats])[0]
    if cat == rules.QUALIFIED:
        return cat
    return rng.choice(rules.rules_in(cat)).id


class _Builder:
    def __init__(self, product: Product, size: int, rng: random.Random, st: Styles, others: list[Product]):
        self.p, self.rng, self.st, self.size = product, rng, st, size
        self.pool = Pool(product, size, rng, st)
        self.others = others
        self.items = clean_pool(self.pool, rng, n_photos=rng.choice((1, 2, 2, 3)))
        self.front = self.items[0]
        self.title = make_title(product, rng)
        self.drop_p = 0.5
        self.used_pairs: set[frozenset] = set()
        self.used_photos = {it.source_id for it in self.items if it.source_id}

    # helpers
    def add(self, item: Item) -> Item:
        self.items.append(item)
        return item

    def secondary(self, exclude_aspects=(), clean=True) -> list[Item]:
        return [it for it in self.items if it is not self.front and it.aspect not in exclude_aspects
                and (not clean or (not it.rules and it.variant == "same" and it.view != "collage"))
                and it.aspect != "front" and it.keep]

    def two_distinct(self, first: Item) -> list[Item] | None:
        """Two clean secondary views of different aspects, none of them first's aspect or group."""
        cands = [it for it in self.secondary(exclude_aspects=(first.aspect,)) if it.group != first.group]
        self.rng.shuffle(cands)
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                if a.aspect != b.aspect and a.group != b.group:
                    return [a, b]
        return None

    def rest_after(self, first: Item) -> list[Item]:
        """Two clean secondary views to follow `first` (adding a staged scene or pack if needed)."""
        for _ in range(4):
            rest = self.two_distinct(first)
            if rest:
                return rest
            have = {it.aspect for it in self.secondary()}
            self.add(self.pool.scene()[0] if "context" not in have else self.pool.pack())
        raise RuntimeError(f"{self.p.group}: cannot find two distinct views to follow a {first.view}")

    def ensure_secondaries(self):
        """Make sure two distinct clean secondary aspects exist (tiny products: add a scene)."""
        while self.two_distinct(self.front) is None:
            have = {it.aspect for it in self.secondary()}
            if "detail" not in have:
                self.add(self.pool.detail())
            elif "context" not in have:
                self.add(self.pool.scene()[0])
            else:
                self.add(self.pool.pack())

    # one record per label
    def fresh_pair(self) -> tuple[Item, Item]:
        """Two secondary views for the next record, preferring a pair no earlier record of this
        listing used (records of one listing should not repeat each other); after a few tries
        the seller gets one more clean image (an unused photo, a scene or a close-up)."""
        for attempt in range(8):
            a, b = self.two_distinct(self.front)
            key = frozenset((id(a), id(b)))
            if key not in self.used_pairs:
                break
            if attempt % 2 == 1:
                unused = [ph for ph in self.p.photos if not ph.rules and ph.id not in self.used_photos]
                if unused:
                    ph = self.rng.choice(unused)
                    self.used_photos.add(ph.id)
                    self.add(self.pool.photo(ph))
                else:
                    self.add(self.pool.scene()[0] if self.rng.random() < 0.5 else self.pool.detail())
        self.used_pairs.add(key)
        return a, b

    def record(self, label: str) -> dict:
        rng = self.rng
        self.ensure_secondaries()
        a, b = self.fresh_pair()
        seq = [self.front, a, b]
        title, region, detail, kind, positions = self.title, "", "", None, []
        if label == rules.QUALIFIED:
            return self._rec(seq, label, title, "yes")
        cat = rules.category_of(label)
        if cat == "single":
            slot = 0 if rng.random() < 0.35 else rng.choice((1, 2))
            base = seq[slot]
            others = [it.image for it in self.secondary() if it is not base][:3]
            applied = violations.SINGLE[label](base.image, rng, self.st, others)
            bad = self.add(Item(applied.image, "collage" if applied.kind == "collage" else base.view, False,
                                base.group if applied.kind != "collage" else self.pool.gid(), rules=[label],
                                box=applied.box, source=base.source))
            seq[slot] = bad
            positions = [slot]
            kind, detail = applied.kind, applied.detail
            if applied.box:
                region = rules.region_name(applied.box, bad.image.width, bad.image.height)
        elif cat == "primary":
            seq, kind, region, detail = self._primary(label, a, b)
            positions = [0]
        elif label == "duplicated_view":
            src = rng.choice((self.front, a))
            dup_img, detail = violations.near_duplicate(src.image, rng)
            dup = self.add(Item(dup_img, src.view, src.primary_ok and set(detail.split("+")) <= {"flip", "reencode"},
                                src.group, source=src.source))
            seq = [self.front, a, dup] if src is a else [self.front, dup, a]
            if rng.random() < 0.5:
                seq[1], seq[2] = seq[2], seq[1]
            positions = sorted(seq.index(x) for x in (src, dup))
        elif label == "inconsistent_product":
            bad, kind, detail = self._inconsistent()
            slot = rng.choice((1, 2))
            seq[slot] = bad
            positions = [slot, 0]  # the odd one out first: "{image}" names it
        elif label == "title_mismatch":
            title, detail = self._mismatched_title()
        elif label == "improper_order":
            first = next((it for it in rng.sample([a, b], 2) if not it.primary_ok), None)
            if first is None:  # both good primaries (two pack shots): lead with a close-up
                first = self.add(self.pool.detail())
                seq = [self.front, a, first]
            rest = [it for it in seq if it is not first]
            seq = [first] + (rest if rng.random() < 0.5 else rest[::-1])
            positions = [0]
        elif label == "insufficient_views":
            seq, detail = self._same_aspect()
            positions = [1, 2]
        fb = rules.feedback(label, image=positions[0] if positions else None,
                            images=positions if len(positions) > 1 else None, region=region, detail=detail,
                            kind=kind, rng=rng)
        violation = {"images": sorted(q + 1 for q in positions), "region": region, "detail": detail}
        return self._rec(seq, label, title, fb, violation)

    def _rec(self, seq, label, title, fb, violation=None):
        r = {"title": title, "seq_items": seq, "label": label, "feedback": fb}
        if violation is not None:
            r["violation"] = violation
        return r

    def _primary(self, label, a, b):
        rng, st, size = self.rng, self.st, self.size
        cut = self.pool.front_cut()
        kind, region, detail = None, "", ""
        if label == "primary_background_not_white":
            r = rng.random()
            photos = [it for it in self.items if it.view == "lifestyle" and it.keep]
            if r < 0.45:
                name, spec = st.pick(styles.BACKDROPS, rng)
                bg = render.backdrop((size, size), spec, rng)
                img, _ = render.compose(cut, size, rng.uniform(0.72, 0.9), rng, bg=bg,
                                        offset=(rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4)))
                bad = self.add(Item(img, "front", False, self.front.group, source=self.front.source))
                detail = name
            elif r < 0.75 or not photos:
                bad, where = self.pool.scene(photo_bg=rng.choice(self.p.photos).load() if self.p.photos and rng.random() < 0.5 else None)
                bad = self.add(bad)
                kind, detail = "photo", "in a shop" if where == "shop" else "on a table"
            else:
                bad = rng.choice(photos)
                kind, detail = "photo", "in a shop" if self.p.source == "grocery" else "in use"
            self._maybe_drop(self.front)
            return [bad] + self.rest_after(bad), kind, region, detail
        if label == "primary_product_too_small":
            img, _ = self.pool.on_white(cut, rng.uniform(0.24, 0.44), offset=(rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9)))
            bad = self.add(Item(img, "front", False, self.front.group, source=self.front.source))
        else:
            if rng.random() < 0.6:
                side = rng.choice(("left", "right", "top", "bottom"))
                push = rng.uniform(0.45, 0.8)
                off = {"left": (-1 - push, 0), "right": (1 + push, 0), "top": (0, -1 - push), "bottom": (0, 1 + push)}[side]
                img, _ = render.compose(cut, size, rng.uniform(0.88, 1.15), rng, offset=off)
                bad = self.add(Item(img, "front", False, self.front.group, source=self.front.source))
                kind, region = "cut_off", f"at the {side}"
            else:
                details = [it for it in self.items if it.view == "detail" and it.keep and not it.rules]
                bad = details[0] if details else self.add(self.pool.detail())
                kind = "close_up"
        self._maybe_drop(self.front)
        return [bad] + self.rest_after(bad), kind, region, detail

    def _maybe_drop(self, item: Item):
        """Sellers whose primary is bad often have no good one at all: drop the clean original
        from the candidate set (unless another record of this listing uses it)."""
        if self.rng.random() < self.drop_p:
            item.keep = False

    def _inconsistent(self):
        rng = self.rng
        same_stratum = [o for o in self.others if o.stratum == self.p.stratum and o.group != self.p.group]
        if self.p.variant is not None and (rng.random() < 0.6 or not same_stratum):
            view = rng.choice([v for v in self.p.cutouts if v != "top"])
            cut, colour = self.p.variant(view, rng)
            kind, detail = "variant", f"{colour} and {self.p.colour}" if self.p.colour else colour
        elif not same_stratum or rng.random() < 0.5:
            view = "front"
            cut = render.shift_hue(self.p.cutouts["front"], rng.choice((60, 90, 120, 180, 240, 300)))
            new, old = render.colour_name(cut), self.p.colour
            kind = "variant"
            detail = f"{new} and {old}" if new and old and new != old else "different colours"
        else:
            other = rng.choice(same_stratum)
            view, cut = "front", other.cutouts["front"]
            kind, detail = "other_product", other.name
        img, _ = self.pool.on_white(cut, rng.uniform(0.66, 0.88))
        return self.add(Item(img, view if view != "front" else "front", False, self.pool.gid(),
                             variant="variant" if kind == "variant" else "other_product",
                             source=f"{self.p.source}-cutout")), kind, detail

    def _mismatched_title(self):
        rng, p = self.rng, self.p
        others = [o for o in self.others if o.category != p.category]
        if p.colour and (rng.random() < 0.6 or not others):
            wrong = rng.choice([c for c in rules.COLOUR_WORDS if c != p.colour and c not in p.colour])
            return make_title(p, rng, colour=wrong), f"{wrong} {p.category}"
        other = rng.choice(others) if others else None
        if other is None:
            return make_title(p, rng) + " with gift box", "the gift box"
        return make_title(other, rng), other.category

    def _same_aspect(self):
        """Main view, then two different images of one aspect."""
        rng = self.rng
        options = []
        for asp in ("context", "detail", "pack") if self.p.packable else ("context", "detail"):
            same = [it for it in self.secondary() if it.aspect == asp]
            options.append((asp, same))
        asp, same = rng.choice(options)
        need = 2 - len(same)
        for _ in range(max(0, need)):
            if asp == "context":
                same.append(self.add(self.pool.scene()[0]))
            elif asp == "detail":
                same.append(self.add(self.pool.detail()))
            else:
                same.append(self.add(self.pool.pack()))
        a, b = rng.sample(same, 2)
        words = {"context": "two shop or scene photos", "detail": "two close-ups", "pack": "two pack shots"}
        return [self.front, a, b], words[asp]

    def distractor(self):
        """An extra problem image among the candidates, not used by any record (stage 1 data)."""
        rng = self.rng
        real_bad = [ph for ph in self.p.photos if ph.rules]
        if real_bad and rng.random() < 0.5:  # a seller's own problem photo (the JD logo image)
            ph = rng.choice(real_bad)
            item = self.pool.photo(ph)
            dup = next((it for it in self.items if ph.dup_of and it.source.endswith("cutout")
                        and it.view == ph.view), None)
            if dup is not None:
                item.group = dup.group
            self.add(item)
            return
        label = rng.choice(list(violations.SINGLE))
        base = rng.choice(self.items)
        others = [it.image for it in self.secondary() if it is not base][:3]
        applied = violations.SINGLE[label](base.image, rng, self.st, others)
        self.add(Item(applied.image, "collage" if applied.kind == "collage" else base.view, False,
                      base.group if applied.kind != "collage" else self.pool.gid(), rules=[label], box=applied.box,
                      source=base.source))


def make_listing(product: Product, product_id: str, labels: list[str], size: int, styles_split: str,
                 seed: int, others: list[Product] = (), extra_problems: bool = True,
                 max_candidates: int = 10, drop_replaced: float = 0.5) -> Listing:
    """A candidate set for one listing and one record per label, deterministic in `seed`.

    `drop_replaced`: the chance that a listing whose record has a bad primary lacks the good
    white-background original altogether (stage 1 then has no primary to find).
    """
    rng = random.Random(seed)
    b = _Builder(product, size, rng, Styles(styles_split), list(others))
    b.drop_p = drop_replaced
    recs = [b.record(label) for label in labels]
    if extra_problems and rng.random() < 0.5:
        b.distractor()
    return assemble(b.items, recs, rng, product_id, product.group, product.category, max_candidates)


def assemble(items: list[Item], recs: list[dict], rng: random.Random, product_id: str, group: str, category: str,
             max_candidates: int = 10) -> Listing:
    """The uploaded candidate set from the items a listing made: what a record uses stays, unused
    clean ones go past `max_candidates`, the rest is shuffled (sellers upload in any order), dup
    groups renumbered and each record's items turned into candidate indices."""
    used = {id(it) for r in recs for it in r["seq_items"]}
    for it in items:  # anything a record uses must stay
        if id(it) in used:
            it.keep = True
    kept = [it for it in items if it.keep]
    # Too many candidates: drop unused clean ones (the service takes at most 10).
    unused = [it for it in kept if id(it) not in used]
    rng.shuffle(unused)
    while len(kept) > max_candidates and unused:
        kept.remove(unused.pop())
    rng.shuffle(kept)  # sellers upload in any order
    index = {id(it): i for i, it in enumerate(kept)}
    # Renumber dup groups 0..n-1 in candidate order (stable and compact).
    remap: dict[int, int] = {}
    for it in kept:
        remap.setdefault(it.group, len(remap))
    metas = []
    for it in kept:
        m = it.meta()
        m["dup_group"] = remap[it.group]
        metas.append(m)
    records = []
    for r in recs:
        seq = [index[id(it)] for it in r.pop("seq_items")]
        r["sequence"] = seq
        if "violation" in r:
            r["violation"]["candidates"] = [seq[q - 1] for q in r["violation"]["images"]]
        records.append(r)
    return Listing(product_id, group, category, [it.image for it in kept], metas, records)


DEMO_PLANS = ("qualified", "text_overlay", "duplicated_view", "primary_background_not_white", "qualified",
              "watermark", "inconsistent_product", "logo", "primary_product_too_small", "border")
