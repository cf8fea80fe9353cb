"""How the inset check (stage1.checks.find_inset) separates pictures pasted into a photo from
real photos, on real clean photos and on insets our generator pastes into real photos;
`Stage1Config.inset_min_closed` was chosen from its output.

    python -m stage1.inset_eval [--shared ../shared/data] [--per-kind 150] [--docs docs/evaluation.md]

Real clean photos (should not fire): every Magento photo (train+val and test styles apart), the
grocery dataset's web-shop pack shots and its in-store shelf photos (train list), the ABO and JD
catalogue images. Generated (should fire): `agpis.data.violations.collage_or_inset` in the
held-out styles on Magento photos, insets and collages counted apart. Every image goes through
the pipeline's own resize (the backbone's 224x224 copy) before the check.
"""
from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import numpy as np

THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9)


def _value(data: bytes, cfg) -> float:
    """The check's value on encoded image bytes, decoded and resized exactly as the pipeline does."""
    from agpis.config import ImagesConfig
    from agpis.images import decode
    from stage1.checks import find_inset, prepare
    from stage1.train import resize_224

    im = decode("eval", data, ImagesConfig())
    return float(find_inset(prepare(resize_224([im.pixels], 224)[0], cfg), cfg).value)


def real_sources(root=None) -> dict[str, list[str]]:
    """Real clean photos by source: {name: [paths]} (a source that is not there is left out)."""
    from agpis.data import catalogue
    from agpis.data.real import data_dir

    out: dict[str, list[str]] = {}
    styles = catalogue.magento(root)
    split_of = catalogue.split_styles(styles)
    for name, splits in (("Magento train+val styles", {"train", "val"}), ("Magento test styles", {"test"})):
        out[name] = sorted({im.path for s in styles if split_of[s.style] in splits
                            for ims in s.colours.values() for im in ims})
    d = data_dir(root)
    grocery = d / "grocery" / "dataset"
    if grocery.is_dir():
        out["grocery pack shots (web shop)"] = sorted(str(p) for p in (grocery / "iconic-images-and-descriptions").rglob("*.jpg"))
        lines = (grocery / "train.txt").read_text().split("\n")
        out["grocery in-store photos (train list)"] = [str(grocery / ln.split(",")[0].strip().lstrip("/"))
                                                      for ln in lines if ln.strip()]
    out["ABO and JD catalogue images"] = sorted(str(p) for p in [*(d / "abo_samples").rglob("*.jpg"),
                                                                  *(d / "jd_muisc_examples").glob("*.jpg")])
    return {k: v for k, v in out.items() if v}


def generated(paths: list[str], kind: str, n: int, seed: int = 1):
    """`n` real photos with a generated inset or collage (held-out styles), as decoded JPEGs."""
    from PIL import Image

    from agpis.data import styles as style_pools
    from agpis.data import violations

    rng, st = random.Random(seed), style_pools.Styles("heldout")
    made = 0
    while made < n:
        img = Image.open(rng.choice(paths)).convert("RGB")
        others = [Image.open(rng.choice(paths)).convert("RGB") for _ in range(3)]
        applied = violations.collage_or_inset(img, rng, st, others)
        if applied.kind != kind:
            continue
        buf = io.BytesIO()
        applied.image.save(buf, "JPEG", quality=90)
        made += 1
        yield buf.getvalue()


def report(root=None, per_kind: int = 150, overrides: dict | None = None) -> str:
    from tqdm import tqdm

    from stage1.config import Stage1Config
    from stage1.model import check_config

    import dataclasses

    cfg = dataclasses.replace(check_config(Stage1Config()), **(overrides or {}))
    rows = []
    sources = real_sources(root)
    for name, paths in sources.items():
        v = np.array([_value(Path(p).read_bytes(), cfg) for p in tqdm(paths, desc=name, unit="img", mininterval=5)])
        rows.append(("real, clean", name, v))
    for split_name, src in (("train+val", "Magento train+val styles"), ("test", "Magento test styles")):
        for kind in ("inset", "collage"):
            v = np.array([_value(data, cfg) for data in tqdm(generated(sources[src], kind, per_kind), total=per_kind,
                                                           desc=f"{kind} on {split_name}", mininterval=5)])
            rows.append(("generated", f"{kind}s on Magento {split_name} photos", v))
    lines = ["| photos | source | n | " + " | ".join(f"fires at {t}" for t in THRESHOLDS) + " |",
             "|---|---|---|" + "---|" * len(THRESHOLDS)]
    for group, name, v in rows:
        cells = [f"{int((v >= t).sum())} ({(v >= t).mean():.1%})" for t in THRESHOLDS]
        lines.append(f"| {group} | {name} | {len(v)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


INTRO = """Command: `python -m stage1.inset_eval`. The inset check looks for a picture pasted into the photo:
a rectangle of straight, axis-aligned edges (a frame, or a frame's drop shadow), 20-55% of the
side, off the image's centre and near its border, with no lines inside it and sides that stop at
its corners. Its value is the mean covered share of the rectangle's four sides (0.75 = three
whole sides); the shipped threshold is `stage1.inset_min_closed` = {t}, and the check is
decisive (`stage1.decisive_checks`): an image it fires on is removed as `collage_or_inset`.
Real photos are read in place from ../shared (Magento OSL-3.0, grocery MIT, ABO CC BY 4.0, JD
MIT); the generated ones are our generator's held-out styles pasted into real Magento photos. A
white frame on a white background with no shadow leaves no edge to see: those insets are missed
by design, and collages are left to the learned model (their seams mostly run through white)."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stage1.inset_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=None, help="../shared/data directory (default: beside the checkout)")
    ap.add_argument("--per-kind", type=int, default=150, help="generated insets (and collages) per split")
    ap.add_argument("--docs", default="", help="also write the section into this Markdown file (docs/evaluation.md)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a CheckConfig field for this run, e.g. inset_ring_white=0 (repeatable; never with --docs)")
    args = ap.parse_args(argv)
    overrides = {k: float(v) if "." in v else int(v) for k, v in (o.split("=", 1) for o in args.set)}
    if overrides and args.docs:
        ap.error("--set measures a variant: it does not write the docs")
    text = report(args.shared, args.per_kind, overrides)
    print(text)
    if args.docs:
        from agpis.docsections import write_section
        from stage1.config import Stage1Config

        write_section(Path(args.docs), "stage1-inset", "## Stage 1: the inset check on real photos\n\n"
                      + INTRO.format(t=Stage1Config().inset_min_closed) + "\n\n" + text)


if __name__ == "__main__":
    main()
