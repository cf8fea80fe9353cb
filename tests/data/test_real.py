"""The real-photo sources (skipped without ../shared)."""
from __future__ import annotations

import pytest

from agpis.data import builder, format as fmt


@pytest.mark.shared
@pytest.mark.slow
def test_real_build_small(shared_dir, tmp_path):
    from agpis.data import real

    spec = real.real_spec(shared_dir / "data")
    out = tmp_path / "real"
    summary = builder.build(spec, builder.BuildConfig(out=str(out), records=24, size=192, seed=0, workers=1),
                            progress=False)
    assert summary["records"] == 24
    for p in out.glob("*.jsonl"):
        assert fmt.validate_file(p, check_images=True)[1] == []
    groups = {s.name: s.groups() for s in builder.make_sources(spec)}
    assert len(groups["grocery"]) == 81 and len(groups["abo"]) == 3 and len(groups["jd"]) == 1
    assert len(groups["magento"]) > 90  # real catalogue styles with a listing of two or more views (99)


@pytest.mark.shared
def test_grocery_cutout_keeps_white_parts(shared_dir):
    """A milk carton's white panels must stay opaque: only border-connected white is background."""
    from agpis.data import real

    src = real.GrocerySource(shared_dir / "data")
    p = src.product("grocery-Arla-Standard-Milk")
    alpha = p.cutouts["front"].getchannel("A")
    w, h = alpha.size
    inside = [alpha.getpixel((w // 2 + dx, h // 2 + dy)) for dx in (-10, 0, 10) for dy in (-10, 0, 10)]
    assert min(inside) == 255
    assert p.category == "milk" and "Arla" in p.name
