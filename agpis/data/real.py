"""Real product photos from ../shared/data (never copied into the project):

- GroceryStoreDataset (MIT): 81 products, each one 198 px catalogue shot on white (cut out and
  recomposed) with a description, and ~35 in-store smartphone photos (lifestyle views).
- ABO samples (CC BY 4.0, credit Amazon.com and the ABO authors): 3 listings, 3-5 images each.
- JD MUIsC examples (MIT): 6 candidate images of one product, one with a real added logo and
  a real near-duplicate pair.

A group is one real product; the builder makes many listings from it and keeps each group in
one split.
"""
from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image

from agpis.data import render
from agpis.data.product import Photo, Product

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """../shared beside the checkout, or $AGPIS_SHARED."""
    return Path(os.environ.get("AGPIS_SHARED", REPO.parent / "shared")).resolve()


def data_dir(root: str | Path | None) -> Path:
    d = Path(root) if root else shared_dir() / "data"
    if not d.is_dir():
        raise FileNotFoundError(f"{d} does not exist: real photos need ../shared/data beside the checkout "
                                f"(or AGPIS_SHARED); `agpis data synth` needs nothing")
    return d


@functools.lru_cache(maxsize=256)
def _load(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def loader(path: Path):
    return lambda: _load(str(path))


@functools.lru_cache(maxsize=512)
def cutout(path: str) -> Image.Image:
    return render.cutout_from_plain(_load(path))


COLOUR_IN_NAME = ("red", "green", "yellow", "orange", "white", "black", "brown")
# Where the pixel estimate disagrees with what a shopper would call it (looked at one by one);
# None: no single colour word fits.
COLOUR_OVERRIDES = {"Golden-Delicious": "yellow", "Royal-Gala": "red", "Avocado": "green", "Kiwi": "brown",
                    "Mango": None, "Cantaloupe": None, "Nectarine": None, "Peach": None, "Conference": None,
                    "Kaiser": "brown", "Plum": "purple", "Satsumas": "orange", "Asparagus": "green",
                    "Aubergine": "purple", "Cucumber": "green", "Ginger": None, "Solid-Potato": None,
                    "Floury-Potato": None, "Sweet-Potato": None, "Beef-Tomato": "red", "Regular-Tomato": "red",
                    "Vine-Tomato": "red", "Passion-Fruit": "purple"}


class GrocerySource:
    name = "grocery"
    weight = 1.0

    def __init__(self, root: str | Path | None = None):
        self.root = data_dir(root) / "grocery" / "dataset"
        self.rows = {}
        with open(self.root / "classes.csv", newline="") as f:
            for row in csv.DictReader(f):
                self.rows[f"grocery-{row['Class Name (str)']}"] = row
        self.photos: dict[int, list[str]] = {}
        for listing in ("train.txt", "val.txt"):
            p = self.root / listing
            if p.exists():
                for line in p.read_text().splitlines():
                    parts = [x.strip() for x in line.split(",")]
                    if len(parts) >= 2:
                        self.photos.setdefault(int(parts[1]), []).append(parts[0])

    def groups(self) -> dict[str, str]:
        return {g: "grocery-" + r["Iconic Image Path (str)"].strip("/").split("/")[1].lower() for g, r in self.rows.items()}

    def product(self, group: str) -> Product:
        row = self.rows[group]
        fine = row["Class Name (str)"]
        coarse = row["Coarse Class Name (str)"]
        top = row["Iconic Image Path (str)"].strip("/").split("/")[1]  # Fruit, Packages, Vegetables
        iconic = self.root / row["Iconic Image Path (str)"].lstrip("/")
        desc_path = self.root / row["Product Description Path (str)"].lstrip("/")
        desc = desc_path.read_text(errors="replace").strip() if desc_path.exists() else ""
        cut = cutout(str(iconic))
        name = fine.replace("-", " ")
        words = name.lower().split()
        colour = next((c for c in COLOUR_IN_NAME if c in words), None)
        if colour is None and top != "Packages":
            colour = COLOUR_OVERRIDES[fine] if fine in COLOUR_OVERRIDES else render.colour_name(cut)
        packages = top == "Packages"
        extras = ("1 L", "1.5 L", "2 x 1 L") if packages and "yoghurt" not in name.lower() and "ghurt" not in name.lower() \
            else ("1 kg", "500 g") if packages else ("1 kg", "500 g", "per piece", "2 kg bag", "6 pcs")
        photos = [Photo(f"{group}/{i}", loader(self.root / rel), "lifestyle")
                  for i, rel in enumerate(self.photos.get(int(row["Class ID (int)"]), []))]
        return Product(group=group, stratum=self.groups()[group], name=name, category=coarse.replace("-", " ").lower(),
                       colour=colour, description=desc, source="grocery", cutouts={"front": cut}, photos=photos,
                       title_extras=extras, brand=name.split()[0] if packages else "",
                       packable=not packages or "yoghurt" in name.lower())


# Hand-annotated truth of the few catalogue listings (looked at one by one).
ABO = {
    "B074M5HPBD": dict(name="AmazonBasics LED Light Bulb GU10", category="light bulb", colour="white",
                       extras=("6 W", "400 lumens", "pack of 16"), brand="AmazonBasics",
                       front="dcace9b5", cutouts={}, photos={"9ea6992d": ("pack", False), "f5047137": ("label", False)}),
    "B0799CK52K": dict(name="Starter Yoga Bag", category="gym bag", colour="grey",
                       extras=("Iron Grey", "duffel", "with shoulder strap"), brand="Starter",
                       front="528c608a", cutouts={"angle": "d80a51d3"},
                       photos={"25ffa37c": ("lifestyle", False), "95f7ee92": ("detail", False),
                               "a8a14cd2": ("detail", False)}),
    "B07GTFSCHB": dict(name="Solimo High Strength Vitamin E 268 mg", category="vitamin supplement", colour=None,
                       extras=("365 capsules",), brand="Solimo", front="844a1cce", cutouts={},
                       photos={"7e487bec": ("label", False), "31afd5f5": ("label", False)}),
}


class AboSource:
    name = "abo"
    weight = 0.5

    def __init__(self, root: str | Path | None = None):
        self.root = data_dir(root) / "abo_samples"

    def groups(self) -> dict[str, str]:
        return {f"abo-{k}": "catalogue" for k in ABO if (self.root / k).is_dir()}

    def product(self, group: str) -> Product:
        key = group.removeprefix("abo-")
        a = ABO[key]
        d = self.root / key
        cutouts = {"front": cutout(str(d / f"{a['front']}.jpg"))}
        for view, fid in a["cutouts"].items():
            cutouts[view] = cutout(str(d / f"{fid}.jpg"))
        photos = [Photo(f"{group}/{fid}", loader(d / f"{fid}.jpg"), view, ok) for fid, (view, ok) in a["photos"].items()]
        meta = (d / "metadata.txt").read_text(errors="replace") if (d / "metadata.txt").exists() else ""
        return Product(group=group, stratum="catalogue", name=a["name"], category=a["category"], colour=a["colour"],
                       description=_first_bullet(meta) or a["name"], source="abo", cutouts=cutouts, photos=photos,
                       title_extras=a["extras"], brand=a["brand"], packable=False)


def _first_bullet(meta: str) -> str:
    i = meta.find("value=", meta.find("'bullet_point'"))
    if i < 0:
        return ""
    return meta[i + 6:].split("}")[0].strip()


class JdSource:
    """The six JD candidates: 001 three-quarter, 002 side, 003 top, 004 = 002 with an added brand
    logo above the product (a real `logo` violation and a near-duplicate of 002), 005 sole,
    006 three-quarter from the other side."""
    name = "jd"
    weight = 0.5

    def __init__(self, root: str | Path | None = None):
        self.root = data_dir(root) / "jd_muisc_examples"

    def groups(self) -> dict[str, str]:
        return {"jd-sandals": "catalogue"} if self.root.is_dir() else {}

    def product(self, group: str) -> Product:
        d = self.root
        cutouts = {"front": cutout(str(d / "001.jpg")), "side": cutout(str(d / "002.jpg")),
                   "top": cutout(str(d / "003.jpg")), "bottom": cutout(str(d / "005.jpg")),
                   "angle": cutout(str(d / "006.jpg"))}
        photos = [Photo(f"{group}/004", loader(d / "004.jpg"), "side", False, rules=("logo",), dup_of=f"{group}/002",
                        box=(40, 38, 185, 135))]
        return Product(group=group, stratum="catalogue", name="Slide Sandals", category="sandals", colour="black",
                       description="Slide sandals with a printed strap and a moulded footbed.", source="jd",
                       cutouts=cutouts, photos=photos, title_extras=("unisex", "EU 42", "rubber sole"),
                       brand="", packable=False)


def real_spec(root: str | Path | None = None) -> list[tuple[str, dict]]:
    """The picklable source list of `agpis data build`."""
    kw = {"root": str(root)} if root else {}
    return [("magento", kw), ("grocery", kw), ("abo", kw), ("jd", kw)]
