"""Regenerate golden_stage1.json after committing new stage 1 weights:
    .venv/bin/python tests/stage1/make_golden.py
"""
from __future__ import annotations

import json
from pathlib import Path

import stage1
from agpis.config import ImagesConfig
from agpis.data.synth import demo_products
from agpis.images import decode
from stage1.config import Stage1Config
from stage1.paths import DEFAULT_STAGE1_DIR


def main() -> None:
    model = stage1.load(DEFAULT_STAGE1_DIR, Stage1Config())
    out = {"version": model.version, "products": []}
    for p in demo_products(4, seed=0, size=600):
        ims = [decode(cid, data, ImagesConfig()) for cid, data in p["images"]]
        res = model.run(ims, 3)
        out["products"].append({"product_id": p["product_id"], "label": p["label"], "primary": res.primary_id,
                                "probs": {r.id: [round(r.p_primary, 4), round(r.p_noncompliant, 4)] for r in res.reports}})
    path = Path(__file__).with_name("golden_stage1.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
