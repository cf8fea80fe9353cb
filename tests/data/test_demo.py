"""The demo/test product API the service uses (procedural, no ../shared)."""
import io

from PIL import Image

from agpis.data.synth import demo_products


def test_demo_products_shape_and_determinism():
    a = demo_products(4, seed=0, size=256)
    assert [p["label"] for p in a] == ["qualified", "text_overlay", "duplicated_view", "primary_background_not_white"]
    for p in a:
        assert set(p) == {"product_id", "title", "category", "label", "images", "truth"}
        assert set(p["truth"]) == {cid for cid, _ in p["images"]}
        assert 4 <= len(p["images"]) <= 10
        ids = [cid for cid, _ in p["images"]]
        assert len(set(ids)) == len(ids)
        with Image.open(io.BytesIO(p["images"][0][1])) as im:
            assert im.format == "JPEG" and max(im.size) <= 256
    b = demo_products(4, seed=0, size=256)
    assert [x["images"] for x in a] == [x["images"] for x in b]
    assert demo_products(1, seed=1, size=256)[0]["title"] != a[0]["title"]
