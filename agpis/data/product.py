"""What a source hands the builder: one real (or drawn) product, its studio cut-outs by view and
its photos as they are, with whatever is known about them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from PIL import Image


@dataclass
class Photo:
    """A photo used as it is (an in-store shot, a catalogue image), with its known truth."""
    id: str
    load: Callable[[], Image.Image]  # RGB, loaded lazily (workers read only what they use)
    view: str  # one of format.VIEWS
    primary_ok: bool = False
    rules: tuple[str, ...] = ()  # single-image rules it breaks as it is (a real logo, a text panel)
    dup_of: str | None = None  # id of a photo it nearly duplicates (the JD pair)
    box: tuple[int, int, int, int] | None = None  # where its violation is, in its own pixels
    white: bool = False  # on a white/plain background (it can then be cut out)


@dataclass
class Product:
    group: str  # the split unit: the real product the listings are made from
    stratum: str  # for stratified splits: coarse category or source
    name: str  # "Granny Smith", "Starter Yoga Bag"
    category: str  # the category word a title uses: "apple", "juice", "gym bag"
    colour: str | None  # the colour word a title uses, when the product has one
    description: str
    source: str  # "grocery", "abo", "jd", "procedural"
    cutouts: dict[str, Image.Image]  # view -> RGBA studio cut-out (alpha = product)
    photos: list[Photo] = field(default_factory=list)
    title_extras: tuple[str, ...] = ()  # "1 kg", "1 L", "500 ml"
    brand: str = ""
    # Optional recolouring that knows the product (drawn products redraw in another colour):
    # (view, rng) -> (RGBA cut-out, colour word). None: the builder rotates the hue.
    variant: Callable | None = None
    # Which views a pack shot (several units) suits: produce and small packages, not a bag.
    packable: bool = True


class Source(Protocol):
    name: str

    def groups(self) -> dict[str, str]:
        """group -> stratum, for every product this source can make listings from."""
        ...

    def product(self, group: str) -> Product:
        ...
