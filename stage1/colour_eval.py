"""How the colour check (stage1/colour.py) separates a listing's own colour from the other
colours its style comes in, on the real Magento photos (../shared/data/magento); the
thresholds of Stage1Config (title_colour_min, colour_overlap_min) were chosen from its output
on the train and val styles.

    python -m stage1.colour_eval [--splits 'train,val;test'] [--shared ../shared/data] [--docs docs/evaluation.md]

For each colour of a style:
- title: its main photo scored for its own colour (a clean title; below the threshold it would
  be a false rejection) and for each other colour of the style (a title naming another real
  colour; below the threshold it is caught);
- views: its other photos scored for the title's colour (a clean image; below: removed in
  error), and the other colours' main photos (another colour's photo added; below: removed);
- overlap: the same pairs judged by the colour overlap with the main photo (titles without a
  colour word).
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from stage1 import colour

TITLE_T = (0.1, 0.15, 0.2, 0.25, 0.3)
INTRO = """Command: `{command}`. Real photos (Magento Luma, OSL-3.0, read in place from ../shared); the
shipped thresholds are `stage1.title_colour_min` = {title_min} (title and views) and
`stage1.colour_overlap_min` = {overlap_min} (overlap, titles without a colour word), chosen on train+val.
*title*: each colour's main photo scored for its own colour (clean: below the threshold is a
false title_mismatch) and for each other colour of its style (below: caught). *views*: the
colour's other photos scored for its colour (below: removed in error) and the other colours'
main photos (below: removed as inconsistent_product). *overlap*: the same pairs judged by their
colours' overlap with the main photo. A photo without a plain backdrop, or with too little
product, is not judged and is not counted."""
OVERLAP_T = (0.2, 0.3, 0.4)


def shares_by_listing(splits: set[str], root=None) -> tuple[dict, dict]:
    """{(style, colour): [shares of each judged photo, main first]}, {style: its colours}."""
    import cv2

    from agpis.data import catalogue

    styles = catalogue.magento(root)
    split_of = catalogue.split_styles(styles)
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in styles:
        if split_of[s.style] not in splits:
            continue
        for name, ims in s.colours.items():
            if name not in colour.ACCEPTS:  # "default", multi-coloured gear
                continue
            judged = []
            for i, im in enumerate(ims):
                bgr = cv2.imread(im.path)
                if bgr is None:
                    raise FileNotFoundError(im.path)
                sh = colour.colour_shares(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_AREA)[:, :, ::-1])
                if sh is None and i == 0:
                    break  # the main photo is not judged: neither is the listing
                if sh is not None:
                    judged.append(sh)
            if judged:
                out[(s.style, name)] = judged
    colours = defaultdict(set)
    for style, name in out:
        colours[style].add(name)
    return out, colours


def table(listings: dict, colours: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scores of clean (should pass) and wrong (should fall below) cases, per measure."""
    title_ok, title_bad, view_ok, view_bad, ov_ok, ov_bad = [], [], [], [], [], []
    for (style, name), shares in listings.items():
        main = shares[0]
        title_ok.append(colour.title_score(main, name))
        for other in colours[style] - {name}:
            title_bad.append(colour.title_score(main, other))
            other_main = listings[(style, other)][0]
            view_bad.append(colour.title_score(other_main, name))
            ov_bad.append(colour.overlap(main, other_main))
        for sh in shares[1:]:
            view_ok.append(colour.title_score(sh, name))
            ov_ok.append(colour.overlap(main, sh))
    a = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return {"title": (a(title_ok), a(title_bad)), "views": (a(view_ok), a(view_bad)),
            "overlap": (a(ov_ok), a(ov_bad))}


def report(measures: dict, header: str) -> str:
    lines = [f"### {header}", "", "| measure | threshold | clean below (wrongly flagged) | wrong below (caught) |",
             "|---|---|---|---|"]
    for m, (ok, bad) in measures.items():
        for t in (OVERLAP_T if m == "overlap" else TITLE_T):
            lines.append(f"| {m} | {t} | {int((ok < t).sum())} of {len(ok)} | {int((bad < t).sum())} of {len(bad)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stage1.colour_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", default="train,val;test",
                    help="Magento style splits: comma-separated within a table, ';' between tables")
    ap.add_argument("--shared", default=None, help="../shared/data directory (default: beside the checkout)")
    ap.add_argument("--docs", default="", help="also write the section into this Markdown file (docs/evaluation.md)")
    args = ap.parse_args(argv)
    parts = []
    for splits in args.splits.split(";"):
        listings, colours = shares_by_listing(set(splits.split(",")), args.shared)
        parts.append(report(table(listings, colours), f"Magento {splits} styles ({len(listings)} colours)"))
    text = "\n\n".join(parts)
    print(text)
    if args.docs:
        from agpis.docsections import write_section
        from stage1.config import Stage1Config

        cfg = Stage1Config()
        write_section(args.docs, "stage1-colour", "## Stage 1: the colour check on real photos\n\n" + INTRO.format(
            command=f"python -m stage1.colour_eval --splits '{args.splits}'", title_min=cfg.title_colour_min,
            overlap_min=cfg.colour_overlap_min) + "\n\n" + text)


if __name__ == "__main__":
    main()
