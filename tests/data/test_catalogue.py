"""Real shop catalogues: the table adapter (no ../shared needed) and the Magento source."""
from __future__ import annotations

import random

import pytest
from PIL import Image

from agpis import rules
from agpis.data import catalogue


def _photo(path, colour=(200, 40, 40), size=(120, 150)):
    im = Image.new("RGB", size, (255, 255, 255))
    im.paste(colour, (30, 20, 90, 150))  # a "product" touching the bottom edge, as models do
    im.save(path)
    return path.name


def test_read_table_csv_and_errors(tmp_path):
    names = [_photo(tmp_path / f"{k}.jpg") for k in ("main", "back", "close")]
    (tmp_path / "shop.csv").write_text(
        "style,name,category,colour,images,views\n"
        f"S1,Trail Jacket,jacket,Red,{';'.join(names)},front;back;detail\n"
        f"S1,Trail Jacket,jacket,Blue,{names[0]},\n")
    styles = catalogue.read_table(tmp_path / "shop.csv", source="shop")
    assert [s.style for s in styles] == ["S1"]
    s = styles[0]
    assert list(s.colours) == ["red", "blue"]
    assert [im.view for im in s.colours["red"]] == ["front", "back", "detail"]
    assert s.title("red") == "Trail Jacket, Red"
    lst = catalogue.listings(styles, min_views=3)
    assert len(lst) == 1 and lst[0].product_id == "shop-s1-red"
    (tmp_path / "bad.csv").write_text("style,name,category,colour,images,views\nS1,X,jacket,Red,a.jpg;b.jpg,front\n")
    with pytest.raises(ValueError, match="bad.csv:1: 1 views for 2 images"):
        catalogue.read_table(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("style,name,category,colour,images\nS1,X,,Red,a.jpg\n")
    with pytest.raises(ValueError, match="missing category"):
        catalogue.read_table(tmp_path / "bad2.csv")


def test_split_styles_is_stable_and_disjoint():
    styles = [catalogue.CatalogueStyle(f"S{i}", "n", "tee", "tops" if i % 2 else "bottoms") for i in range(40)]
    a, b = catalogue.split_styles(styles), catalogue.split_styles(list(reversed(styles)))
    assert a == b and set(a.values()) == {"train", "val", "test"}


def test_close_up_shrunk_and_backdrop_keep_the_frame():
    from agpis.data import catalogue_source as cs

    im = Image.new("RGB", (120, 150), (255, 255, 255))
    im.paste((200, 40, 40), (30, 20, 90, 150))
    rng = random.Random(0)
    for out in (cs.close_up(im, rng), cs.shrunk(im, rng), cs.on_backdrop(im, Image.new("RGB", (50, 50), (0, 90, 0)))):
        assert out.size == im.size
    small = cs.shrunk(im, random.Random(1))
    x0, y0, x1, y1 = cs.product_box(small)
    assert (y1 - y0) < 0.5 * im.height  # the product fills less than half the frame
    bg = cs.on_backdrop(im, Image.new("RGB", (50, 50), (0, 90, 0)))
    assert bg.getpixel((2, 2)) == (0, 90, 0) and bg.getpixel((60, 100)) == (200, 40, 40)


@pytest.mark.shared
def test_magento_catalogue_reads_the_store_tables(shared_dir):
    styles = catalogue.magento(shared_dir / "data")
    by = {s.style: s for s in styles}
    hoodie = by["MH01"]
    assert hoodie.name == "Chaz Kangeroo Hoodie" and hoodie.category == "hoodie"
    assert set(hoodie.colours) == {"black", "gray", "orange"}
    assert [im.view for im in hoodie.colours["gray"]][0] == "front"
    assert sorted(im.view for im in hoodie.colours["gray"]) == ["back", "detail", "front"]
    assert all("&" not in s.name for s in styles)  # HTML entities decoded ("HeatTec®")
    # the bag that shares the bra top's code is not one of the bra top's photos
    assert all("-0" not in im.path.rsplit("/", 1)[1] for im in by["WB01"].colours["black"])
    # colours whose extra photos show another colour are kept to their main photo
    assert len(by["MP08"].colours["green"]) == 1
    split = catalogue.split_styles(styles)
    clean = catalogue.listings(styles, min_views=3)
    assert {split[lst.style.style] for lst in clean} == {"train", "val", "test"}


@pytest.mark.shared
def test_catalogue_records_follow_the_label_definitions(shared_dir):
    """Each label of a real catalogue listing is made as docs/data.md defines it."""
    from agpis.data import catalogue_source as cs

    src = cs.CatalogueSource(shared_dir / "data")
    assert set(src.groups()) == set(src.splits())
    group = "magento-MH01"  # gray: main, close-up, back; black and orange: main only
    labels = ["qualified", "inconsistent_product", "title_mismatch", "improper_order", "insufficient_views",
              "primary_not_whole_product", "primary_product_too_small", "duplicated_view", "text_overlay"]
    for seed in range(3):
        lst = src.listing(group, "p", labels, 256, "train", seed=seed, extra_problems=False)
        recs = {r["label"]: r for r in lst.records}
        meta = lst.metas
        views = lambda r: [meta[i]["view"] for i in r["sequence"]]  # noqa: E731
        q = recs["qualified"]
        assert views(q)[0] == "front" and len(set(views(q))) == 3 and q["title"] == "Chaz Kangeroo Hoodie, Gray"
        assert all(meta[i]["variant"] == "same" and not meta[i]["rules"] for i in q["sequence"])
        assert any(meta[i]["variant"] == "variant" for i in recs["inconsistent_product"]["sequence"])
        t = recs["title_mismatch"]["title"]
        assert t in ("Chaz Kangeroo Hoodie, Black", "Chaz Kangeroo Hoodie, Orange")
        io = recs["improper_order"]
        assert views(io)[0] in ("back", "detail") and "front" in views(io)
        assert views(recs["insufficient_views"]).count("detail") == 2
        pn = recs["primary_not_whole_product"]
        assert views(pn)[0] in ("back", "detail") and "front" not in views(pn)
        assert not meta[recs["primary_product_too_small"]["sequence"][0]]["primary_ok"]
        d = recs["duplicated_view"]
        groups = [meta[i]["dup_group"] for i in d["sequence"]]
        assert len(set(groups)) == 2
        bad = [meta[i]["rules"] for i in recs["text_overlay"]["sequence"]]
        assert ["text_overlay"] in bad
        for r in lst.records:
            assert r["label"] in rules.CLASSES and r["feedback"]
        # every candidate is a real photo's size (portrait, longest side 256), not a square canvas
        assert all(max(im.size) == 256 for im in lst.images) and any(im.width != im.height for im in lst.images)
