"""`agpis eval listings`: the real-listing benchmark (issue 12).

Whole listings go through the full pipeline as a seller would send them: every photo of one
colour of a held-out style of the real catalogue (../shared/data/magento, val and test styles of
`catalogue.split_styles`), in the shop's order, titled "Name, Colour". Each clean listing also
goes in as five variants, each one violation:

    other_colour  + the main photo of another colour of the same style (another style of the
                    same department when the style has one colour): inconsistent_product
    zoom_crop     + a 65-90% crop of the main view, resized back: duplicated_view
    overlay       + the main or another view with a held-out-style text_overlay, watermark or logo
    title_colour  the clean photos, titled with another colour the style comes in: title_mismatch
    infographic   every photo made an infographic (held-out-style text banner, sticker, price tag
                    or caption, or a collage/inset of the listing's views): no image may lead,
                    nothing may be QUEUED. Made by our own generator (agpis.data.violations) on
                    the real photos: real infographic-only listings are not in ../shared.

The three ABO listings and the JD listing (clean: without 004; and with 004, its real logo and
near-duplicate of 002) are run too and reported as their own rows, never mixed into the
catalogue percentages.

Variant inputs are a pure function of the listing (a seed from its id); distractor images are
made in memory and never written (the photos are OSL-3.0: never commit them or crops of them).
A per-listing JSON goes to var/eval/listings-<split>.json; the report into docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

VARIANTS = ("clean", "other_colour", "zoom_crop", "overlay", "title_colour", "infographic")
DISTRACTORS = ("other_colour", "zoom_crop", "overlay")
VIOLATION_RULE = {"other_colour": "inconsistent_product", "zoom_crop": "duplicated_view",
                  "overlay": "text_overlay / watermark / logo", "title_colour": "title_mismatch",
                  "infographic": "text_overlay / collage_or_inset on every image"}
INFOGRAPHIC_RULES = ("text_overlay", "collage_or_inset")
OVERLAY_RULES = ("text_overlay", "watermark", "logo")
ZOOM = (0.65, 0.90)  # share of each side the zoom crop keeps
MIN_VIEWS = 3
SEED_SALT = "agpis-eval-listings-v1"
DEFAULT_OUT = Path("docs/evaluation.md")
DEFAULT_JSON_DIR = Path("var/eval")
COMMAND = "agpis eval listings"


# --- cases -----------------------------------------------------------------------------------

@dataclass
class Case:
    """One request to the pipeline, with the truth the report needs."""
    id: str  # product id sent: "<listing>~<variant>"
    listing: str  # the clean listing's id
    variant: str  # one of VARIANTS, or "abo" / "jd-clean" / "jd-with-004"
    group: str  # catalogue | abo | jd
    title: str
    images: list[tuple[str, str | bytes]]  # (id, path or JPEG bytes), in the order sent
    main_id: str  # the shop's main photo
    clean_ids: list[str]  # the real, clean photos among the candidates
    distractor_id: str = ""  # the added image, if any
    style: str = ""  # the catalogue style (the split unit)
    info: dict = field(default_factory=dict)  # how the variant was made


def seed_for(listing_id: str, variant: str) -> int:
    return int(hashlib.sha256(f"{SEED_SALT}/{listing_id}/{variant}".encode()).hexdigest()[:12], 16)


def _photo_ids(paths: list[str]) -> list[str]:
    ids, seen = [], Counter()
    for p in paths:
        stem = Path(p).stem
        seen[stem] += 1
        ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return ids


def _load_rgb(path: str):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def _jpeg(img, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def zoom_crop(img, rng: random.Random, keep: tuple[float, float] = ZOOM):
    """A crop keeping `keep` of each side, near the centre, resized back to the image's size.
    Returns (image, box, fraction)."""
    from PIL import Image

    w, h = img.size
    f = rng.uniform(*keep)
    cw, ch = int(round(w * f)), int(round(h * f))
    # centre-ish: the window's centre moves at most a quarter of the slack off the image centre
    x0 = int(round((w - cw) / 2 + rng.uniform(-0.25, 0.25) * (w - cw)))
    y0 = int(round((h - ch) / 2 + rng.uniform(-0.25, 0.25) * (h - ch)))
    box = (x0, y0, x0 + cw, y0 + ch)
    return img.crop(box).resize((w, h), Image.LANCZOS), box, f


def _insert(images: list, item, rng: random.Random) -> list:
    """The added image goes anywhere after the main photo (sellers upload the main one first)."""
    pos = rng.randint(1, len(images))
    return images[:pos] + [item] + images[pos:]


def catalogue_cases(listing, styles, split_of: dict[str, str]) -> list[Case]:
    """The clean listing and its five variants (title_colour only when the style has another
    colour). Deterministic: every choice comes from a seed of the listing's id."""
    from agpis.data import styles as style_pools
    from agpis.data import violations

    style, colour = listing.style, listing.colour
    paths = list(dict.fromkeys(im.path for im in listing.images))
    ids = _photo_ids(paths)
    if listing.images[0].view != "front":
        raise ValueError(f"{listing.product_id}: the first photo is a {listing.images[0].view} view, not the main")
    real = list(zip(ids, paths))
    photos = [_load_rgb(p) for p in paths]  # decoded once: the variants below remake them
    lid, title = listing.product_id, listing.title
    base = dict(listing=lid, group="catalogue", main_id=ids[0], clean_ids=list(ids), style=style.style)
    cases = [Case(id=f"{lid}~clean", variant="clean", title=title, images=list(real), **base)]

    # (a) another colour's main photo of the same style; else another style's, same department
    rng = random.Random(seed_for(lid, "other_colour"))
    others = sorted(c for c, ims in style.colours.items() if c != colour and ims)
    if others:
        oc = rng.choice(others)
        src, info = style.colours[oc][0], {"source": "same style", "style": style.style, "colour": oc}
    else:
        pool = sorted((s for s in styles if s.style != style.style and s.department == style.department
                       and split_of.get(s.style) == split_of.get(style.style)), key=lambda s: s.style) or \
            sorted((s for s in styles if s.style != style.style and s.department == style.department),
                   key=lambda s: s.style)
        s2 = rng.choice(pool)
        oc = sorted(s2.colours)[rng.randrange(len(s2.colours))]
        src, info = s2.colours[oc][0], {"source": "other style", "style": s2.style, "colour": oc}
    info["path"] = src.path
    did = "added-other_colour"
    cases.append(Case(id=f"{lid}~other_colour", variant="other_colour", title=title,
                      images=_insert(list(real), (did, src.path), rng), distractor_id=did, info=info, **base))

    # (b) a zoom crop of the main view (a near-duplicate of it)
    rng = random.Random(seed_for(lid, "zoom_crop"))
    crop, box, f = zoom_crop(photos[0], rng)
    did = "added-zoom_crop"
    cases.append(Case(id=f"{lid}~zoom_crop", variant="zoom_crop", title=title,
                      images=_insert(list(real), (did, _jpeg(crop)), rng), distractor_id=did,
                      info={"of": ids[0], "box": list(box), "keep": round(f, 4)}, **base))

    # (c) the main or another view again, with an overlay in a held-out style
    rng = random.Random(seed_for(lid, "overlay"))
    rule = rng.choice(OVERLAY_RULES)
    k = rng.randrange(len(real))
    applied = violations.SINGLE[rule](photos[k], rng, style_pools.Styles("heldout"), ())
    did = "added-overlay"
    cases.append(Case(id=f"{lid}~overlay", variant="overlay", title=title,
                      images=_insert(list(real), (did, _jpeg(applied.image)), rng), distractor_id=did,
                      info={"of": ids[k], "rule": rule, "kind": applied.kind,
                            "box": list(applied.box) if applied.box else None}, **base))

    # (d) the clean photos titled with another colour the style really comes in
    if others:
        rng = random.Random(seed_for(lid, "title_colour"))
        tc = rng.choice(others)
        cases.append(Case(id=f"{lid}~title_colour", variant="title_colour", title=style.title(tc),
                          images=list(real), info={"colour": tc, "true_colour": colour}, **base))

    # (e) an infographic-only listing: every photo with text on it, or a collage of the views
    rng = random.Random(seed_for(lid, "infographic"))
    made, kinds = [], []
    for k, img in enumerate(photos):
        rule = rng.choice(INFOGRAPHIC_RULES)
        applied = violations.SINGLE[rule](img, rng, style_pools.Styles("heldout"), photos[:k] + photos[k + 1:])
        made.append((f"infographic-{k + 1}", _jpeg(applied.image)))
        kinds.append(f"{rule}:{applied.kind}")
    cases.append(Case(id=f"{lid}~infographic", variant="infographic", title=title, images=made,
                      info={"kinds": kinds}, **{**base, "clean_ids": []}))
    return cases


def catalogue_listings(split: str, root=None):
    """(styles, style -> split, clean listings of `split`, in catalogue order)."""
    from agpis.data import catalogue

    styles = catalogue.magento(root)
    split_of = catalogue.split_styles(styles)
    chosen = [s for s in styles if split_of[s.style] == split]
    return styles, split_of, catalogue.listings(chosen, MIN_VIEWS)


def other_cases(root=None) -> list[Case]:
    """The ABO listings (all their photos, the annotated main first) and the JD listing
    (clean: without 004; and as it came, with 004)."""
    from agpis.data.real import ABO, data_dir

    d = data_dir(root)
    cases = []
    for key, a in ABO.items():
        folder = d / "abo_samples" / key
        if not folder.is_dir():
            continue
        photos = sorted(folder.glob("*.jpg"), key=lambda p: (p.stem != a["front"], p.stem))
        ids = [p.stem for p in photos]
        title = ", ".join([a["name"], *a["extras"]])
        cases.append(Case(id=f"abo-{key}", listing=f"abo-{key}", variant="abo", group="abo", title=title,
                          images=[(i, str(p)) for i, p in zip(ids, photos)], main_id=a["front"], clean_ids=ids))
    jd = d / "jd_muisc_examples"
    if jd.is_dir():
        from stage2.report import JD_TITLE

        photos = sorted(jd.glob("*.jpg"))
        clean = [(p.stem, str(p)) for p in photos if p.stem != "004"]
        base = dict(listing="jd-sandals", group="jd", title=JD_TITLE, main_id="001", clean_ids=[i for i, _ in clean])
        cases.append(Case(id="jd-sandals~clean", variant="jd-clean", images=clean, **base))
        cases.append(Case(id="jd-sandals~with-004", variant="jd-with-004", distractor_id="004",
                          images=[(p.stem, str(p)) for p in photos],
                          info={"004": "002 with an added logo (a real logo violation and a near-duplicate of 002)"},
                          **base))
    return cases


# --- running -----------------------------------------------------------------------------------

def run_case(pipe, case: Case) -> dict:
    t0 = time.perf_counter()
    d = pipe.generate(case.title, case.images, product_id=case.id)
    ms = (time.perf_counter() - t0) * 1000
    removed = [[r.id, r.rule, r.reason] for r in d.removed]
    removed_ids = {r.id for r in d.removed}
    rec = dict(id=case.id, listing=case.listing, style=case.style, variant=case.variant, group=case.group,
               title=case.title,
               candidates=[i for i, _ in case.images], main=case.main_id, status=d.status,
               p_qualified=round(float(d.p_qualified), 6), sequence=list(d.sequence), removed=removed,
               terminated_reason=d.terminated_reason, predicted_rule=d.predicted_rule,
               primary_is_main=bool(d.status != "TERMINATED" and d.sequence and d.sequence[0] == case.main_id),
               clean_removed=[[i, rule] for i, rule, _ in removed if i in case.clean_ids],
               n_clean=len(case.clean_ids), distractor=case.distractor_id, info=case.info,
               ms=round(ms, 1), model=pipe.version, uncertain=bool(d.uncertain), novelty=round(float(d.novelty), 4),
               p_primary={c.id: round(float(c.p_primary), 4) for c in d.reports},
               p_noncompliant={c.id: round(float(c.p_noncompliant), 4) for c in d.reports})
    if case.distractor_id:
        did = case.distractor_id
        rec["distractor_removed"] = next((rule for i, rule, _ in removed if i == did), "")
        rec["distractor_in_sequence"] = did in d.sequence
        rec["distractor_queued"] = d.status == "QUEUED" and did in d.sequence
        # duplicate pairs with the distractor, and which image stage 1 dropped for each ("" none)
        rec["distractor_duplicates"] = [[p.id_b if p.id_a == did else p.id_a, p.removed_id]
                                        for p in d.duplicates if did in (p.id_a, p.id_b)]
    return rec


def run_cases(pipe, cases: list[Case], desc: str, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    return [run_case(pipe, c) for c in tqdm(cases, desc=desc, unit="listing", disable=not progress)]


# --- the report --------------------------------------------------------------------------------

def pct(k: int, n: int) -> str:
    return f"{k} of {n} ({100 * k / n:.0f}%)" if n else "0 of 0 (–)"


def _counts(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "–"


def _quantiles(xs: list[float]) -> tuple[float, float, float, float, float]:
    xs = sorted(xs)
    if len(xs) == 1:
        return (xs[0],) * 5
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return xs[0], q1, q2, q3, xs[-1]


def _p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=10, method="inclusive")[-1]


def summarise(records: list[dict], threshold: float = 0.3) -> dict:
    """The numbers of one split's catalogue records (every count beside its denominator)."""
    by = {v: [r for r in records if r["variant"] == v] for v in VARIANTS}
    clean = by["clean"]
    s = {"listings": len(clean), "styles": len({r["style"] for r in clean}),
         "runs": len(records)}
    s["queued"] = (sum(r["status"] == "QUEUED" for r in clean), len(clean))
    s["primary_main"] = (sum(r["primary_is_main"] for r in clean), len(clean))
    given = [r for r in clean if r["status"] != "TERMINATED"]
    s["primary_main_given"] = (sum(r["primary_is_main"] for r in given), len(given))
    s["clean_removed"] = (sum(len(r["clean_removed"]) for r in clean), sum(r["n_clean"] for r in clean))
    s["clean_removed_rules"] = dict(Counter(rule for r in clean for _, rule in r["clean_removed"]))
    # real photos that stay in the clean listing but go once a distractor is added (a real view
    # dropped as a duplicate of the distractor instead of the distractor)
    kept = {(r["listing"], i) for r in clean for i, _ in r["clean_removed"]}
    added = [r for v in DISTRACTORS for r in by[v]]
    lost = [rule for r in added for i, rule in r["clean_removed"] if (r["listing"], i) not in kept]
    s["clean_removed_distractor"] = (len(lost), sum(r["n_clean"] for r in added))
    s["clean_removed_distractor_rules"] = dict(Counter(lost))
    s["caught"], s["reaching"], s["removed_by_stage1"], s["in_sequence"], s["removed_rules"] = {}, {}, {}, {}, {}
    s["dup_found"], s["dup_kept_wrong"] = {}, {}
    for v in DISTRACTORS:
        rs = by[v]
        s["caught"][v] = (sum(not r["distractor_queued"] for r in rs), len(rs))
        s["reaching"][v] = (sum(r["distractor_queued"] for r in rs), len(rs))
        s["removed_by_stage1"][v] = (sum(bool(r["distractor_removed"]) for r in rs), len(rs))
        s["in_sequence"][v] = (sum(r["distractor_in_sequence"] for r in rs), len(rs))
        s["removed_rules"][v] = dict(Counter(r["distractor_removed"] for r in rs if r["distractor_removed"]))
        pairs = [r for r in rs if r["distractor_duplicates"]]
        s["dup_found"][v] = (len(pairs), len(rs))
        s["dup_kept_wrong"][v] = (sum(any(rid and rid != r["distractor"] for _, rid in r["distractor_duplicates"])
                                      for r in pairs), len(pairs))
    for v in ("title_colour", "infographic"):
        rs = by[v]
        s["caught"][v] = (sum(r["status"] != "QUEUED" for r in rs), len(rs))
    s["status"] = {}
    for v, rs in by.items():
        s["status"][v] = {"n": len(rs), **{st: sum(r["status"] == st for r in rs) for st in ("QUEUED", "REJECTED", "TERMINATED")},
                          "terminated": dict(Counter(r["terminated_reason"] for r in rs if r["terminated_reason"])),
                          "predicted": dict(Counter(r["predicted_rule"] for r in rs if r["status"] != "TERMINATED"))}
    violating = [r for r in records if r["variant"] != "clean"]
    s["p_qualified"] = {}
    for name, rs in (("clean", clean), ("violating", violating)):
        ps = [r["p_qualified"] for r in rs]
        s["p_qualified"][name] = {"n": len(ps), "quartiles": _quantiles(ps) if ps else None,
                                  "above": (sum(p > threshold for p in ps), len(ps)),
                                  "terminated": sum(r["status"] == "TERMINATED" for r in rs)}
    # the uncertain band: QUEUED although stage 2 would reject (the images unlike its training data)
    s["uncertain"] = {v: (sum(r.get("uncertain", False) for r in rs), len(rs)) for v, rs in by.items()}
    s["uncertain_all"] = (sum(r.get("uncertain", False) for r in records), len(records))
    ms = [r["ms"] for r in records]
    s["ms"] = {"n": len(ms), "median": statistics.median(ms) if ms else 0.0, "p90": _p90(ms) if ms else 0.0}
    return s


def _q(x: float) -> str:
    return f"{x:.3f}" if x >= 0.001 or x == 0 else f"{x:.1e}"


def split_section(split: str, s: dict, header: str, threshold: float) -> str:
    lines = [f"## Real listings, {split} split (`{COMMAND}`)", "", header, "",
             f"{s['listings']} clean listings of {s['styles']} held-out {split} styles of the Magento Luma catalogue "
             f"(every colour with at least {MIN_VIEWS} distinct photos, all of them in the shop's order, main view "
             f"first; title \"Name, Colour\"), each also sent as up to five variants with one violation: "
             f"{s['runs']} pipeline runs.", "",
             "| measure | value |", "|---|---|",
             f"| clean listings QUEUED | {pct(*s['queued'])} |",
             f"| primary = the shop's main view (TERMINATED counts as a miss) | {pct(*s['primary_main'])} "
             f"(of the listings given a sequence: {pct(*s['primary_main_given'])}) |",
             f"| clean real photos removed by stage 1 | {pct(*s['clean_removed'])}"
             f"{': ' + _counts(Counter(s['clean_removed_rules'])) if s['clean_removed_rules'] else ''} |",
             f"| real photos kept in the clean listing but removed once a distractor is added | {pct(*s['clean_removed_distractor'])}"
             f"{': ' + _counts(Counter(s['clean_removed_distractor_rules'])) if s['clean_removed_distractor_rules'] else ''} |"]
    lines += ["", "Violations caught (distractor variants: the added image removed by stage 1 or not in a QUEUED "
              "sequence; `title_colour`, `infographic`: the listing not QUEUED). While almost nothing is QUEUED, \"caught\" is "
              "high by default: the stage 1 columns say what was found. Stage 1 looks for duplicates only once it has a "
              "primary (paper §3.3), so a TERMINATED listing has no duplicate pairs.", "",
              "| variant (rule it breaks) | caught | removed by stage 1 (rules) | paired as a duplicate "
              "| of those, the real photo dropped instead | in the chosen sequence (any status) "
              "| reaching a QUEUED sequence |", "|---|---|---|---|---|---|---|"]
    for v in DISTRACTORS:
        rules = s["removed_rules"][v]
        lines.append(f"| `{v}` ({VIOLATION_RULE[v]}) | {pct(*s['caught'][v])} | {pct(*s['removed_by_stage1'][v])}"
                     f"{' (' + _counts(Counter(rules)) + ')' if rules else ''} | {pct(*s['dup_found'][v])} "
                     f"| {pct(*s['dup_kept_wrong'][v])} | {pct(*s['in_sequence'][v])} "
                     f"| {pct(*s['reaching'][v])} |")
    for v in ("title_colour", "infographic"):
        lines.append(f"| `{v}` ({VIOLATION_RULE[v]}) | {pct(*s['caught'][v])} | – | – | – | – | – |")
    lines += ["", "Status per variant (TERMINATED with its reasons; predicted rule of the chosen sequence for "
              "the others):", "", "| variant | n | QUEUED | REJECTED | TERMINATED | terminated reasons | predicted rules |",
              "|---|---|---|---|---|---|---|"]
    for v, st in s["status"].items():
        lines.append(f"| `{v}` | {st['n']} | {st['QUEUED']} | {st['REJECTED']} | {st['TERMINATED']} "
                     f"| {_counts(Counter(st['terminated']))} | {_counts(Counter(st['predicted']))} |")
    lines += ["", f"The uncertain band (QUEUED marked uncertain although stage 2 would reject: the images are "
              f"far from its training data): {pct(*s['uncertain_all'])} of all runs; by variant: "
              + ", ".join(f"`{v}` {pct(*n)}" for v, n in s["uncertain"].items()) + "."]
    lines += ["", f"p_qualified of the chosen sequence (TERMINATED listings count as 0); threshold {threshold}:", "",
              "| listings | n | min | 25% | median | 75% | max | above the threshold | of them TERMINATED |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, p in s["p_qualified"].items():
        q = p["quartiles"]
        qs = " | ".join(_q(x) for x in q) if q else "– | – | – | – | –"
        lines.append(f"| {name} | {p['n']} | {qs} | {pct(*p['above'])} | {p['terminated']} |")
    lines += ["", f"Time per listing (decode + stage 1 + stage 2, one at a time on the shared CPU): median "
              f"{s['ms']['median']:.0f} ms, p90 {s['ms']['p90']:.0f} ms over {s['ms']['n']} runs. Per-listing "
              f"decisions: `var/eval/listings-{split}.json` (not committed)."]
    return "\n".join(lines)


def other_section(records: list[dict], header: str) -> str:
    lines = ["## Real listings: ABO and JD (`agpis eval listings`)", "", header, "",
             "The three ABO listings (all their photos, the annotated main photo first; titled from the annotated "
             "name) and the JD listing (title as in the MUIsC section), each its own row.", "",
             "| listing | candidates | status | p_qualified | sequence | primary = main | removed by stage 1 "
             "| predicted rule / reason |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        name = r["listing"] if r["group"] == "abo" else r["variant"]
        removed = ", ".join(f"{i} ({rule})" for i, rule, _ in r["removed"]) or "–"
        why = r["terminated_reason"] or r["predicted_rule"] or "–"
        lines.append(f"| {name} | {len(r['candidates'])} | {r['status']} | {_q(r['p_qualified'])} "
                     f"| {' > '.join(r['sequence']) or '–'} | {'yes' if r['primary_is_main'] else 'no'} "
                     f"(main {r['main']}) | {removed} | {why} |")
    return "\n".join(lines)


def summary_table(summaries: dict[str, dict]) -> str:
    """The compact stdout table: one column per split."""
    splits = list(summaries)
    rows = [("clean listings QUEUED", lambda s: pct(*s["queued"])),
            ("primary = main view", lambda s: pct(*s["primary_main"])),
            ("clean photos removed", lambda s: pct(*s["clean_removed"])),
            ("  more once a distractor is added", lambda s: pct(*s["clean_removed_distractor"]))]
    for v in (*DISTRACTORS, "title_colour", "infographic"):
        rows.append((f"caught: {v}", lambda s, v=v: pct(*s["caught"][v])))
    for v in DISTRACTORS:
        rows.append((f"stage 1 removed: {v}", lambda s, v=v: pct(*s["removed_by_stage1"][v])))
    for v in DISTRACTORS:
        rows.append((f"reaching QUEUED: {v}", lambda s, v=v: pct(*s["reaching"][v])))
    rows.append(("uncertain (all runs)", lambda s: pct(*s["uncertain_all"])))
    rows.append(("median p_qualified, clean", lambda s: _q(s["p_qualified"]["clean"]["quartiles"][2])
                 if s["p_qualified"]["clean"]["quartiles"] else "–"))
    rows.append(("ms per listing (median / p90)", lambda s: f"{s['ms']['median']:.0f} / {s['ms']['p90']:.0f}"))
    w = max(len(r[0]) for r in rows)
    out = [f"{'':{w}}  " + "  ".join(f"{sp:>18}" for sp in splits)]
    for name, f in rows:
        out.append(f"{name:{w}}  " + "  ".join(f"{f(summaries[sp]):>18}" for sp in splits))
    return "\n".join(out)


def evaluate(args: argparse.Namespace) -> dict:
    """Run the benchmark; write the JSON files and (unless --no-docs) the docs sections."""
    from agpis.data import catalogue
    from agpis.docsections import write_section
    from agpis.pipeline import Pipeline

    try:
        catalogue.magento_dir(args.shared)
    except FileNotFoundError as e:
        raise SystemExit(f"agpis eval listings: {e}. The benchmark needs the real catalogue: put ../shared "
                         f"(with data/magento) beside the checkout or set AGPIS_SHARED.")
    splits = ("val", "test") if args.split == "both" else (args.split,)
    cfg = _config(args)
    pipe = Pipeline.load(args.model, cfg) if cfg is not None else Pipeline.load(args.model)
    threshold = pipe.config.pipeline.threshold
    cmd = f"{COMMAND} --split {args.split} --model {args.model}" + (f" --limit {args.limit}" if args.limit else "")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    header = (f"Command: `{cmd}` · model version `{pipe.version}` (stage 1 `{pipe.stage1.version}`, stage 2 "
              f"`{pipe.stage2.version}`) · {date}."
              + (f" **Only the first {args.limit} listings (--limit).**" if args.limit else "") +
              "\n\n**These numbers are on real photos**, whole listings through the full pipeline; the AUCs and "
              "per-rule numbers of the generated-data sections are on AGPIS-data made by the project's own generator.")
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    summaries, written = {}, []
    for split in splits:
        styles, split_of, lists = catalogue_listings(split, args.shared)
        if args.limit:
            lists = lists[:args.limit]
        cases = [c for lst in lists for c in catalogue_cases(lst, styles, split_of)]
        records = run_cases(pipe, cases, f"listings {split}", progress=not args.quiet)
        s = summarise(records, threshold)
        s["threshold"] = threshold
        summaries[split] = s
        (json_dir / f"listings-{split}.json").write_text(json.dumps(
            {"command": cmd, "model": pipe.version, "model_versions": pipe.model_versions, "date": date,
             "split": split, "summary": s, "listings": records}, indent=1, default=float) + "\n")
        written.append(json_dir / f"listings-{split}.json")
        if not args.no_docs:
            write_section(args.out, f"listings-{split}", split_section(split, s, header, threshold))
    rates = {}
    for split in splits:
        styles, split_of, lists = catalogue_listings(split, args.shared)
        chosen = {lst.style.style for lst in lists[:args.limit]} if args.limit else None
        rates[split] = check_rates(pipe, [st for st in styles if split_of[st.style] == split
                                          and (chosen is None or st.style in chosen)])
        summaries[split]["check_rates"] = rates[split]
    if not args.no_docs:
        write_section(args.out, "listings-checks", checks_section(rates, pipe.config.stage1.decisive_checks, header))
    other = run_cases(pipe, other_cases(args.shared), "ABO + JD", progress=not args.quiet)
    (json_dir / "listings-abo-jd.json").write_text(json.dumps(
        {"command": cmd, "model": pipe.version, "date": date, "listings": other}, indent=1) + "\n")
    written.append(json_dir / "listings-abo-jd.json")
    if not args.no_docs and other:
        write_section(args.out, "listings-abo-jd", other_section(other, header))
    print(f"\nReal listings, model {pipe.version}:\n" + summary_table(summaries))
    for r in other:
        name = r["listing"] if r["group"] == "abo" else r["variant"]
        print(f"  {name:24} {r['status']:10} p={_q(r['p_qualified'])} seq={' > '.join(r['sequence']) or '-'} "
              f"{r['terminated_reason'] or r['predicted_rule']}")
    print("wrote " + ", ".join(str(p) for p in written) + ("" if args.no_docs else f", sections in {args.out}"))
    return {"summaries": summaries, "other": other}


def check_rates(pipe, styles: list) -> dict:
    """How often each explainable check fires (score >= 0.5) on real clean photos: every photo
    of the styles for the single-image checks, the main photos for the primary checks (they
    judge only a primary). Photos are decoded and resized exactly as the pipeline does."""
    from agpis import images as images_mod
    from stage1.checks import run_checks
    from stage1.model import PRIMARY_CHECKS
    from stage1.train import resize_224

    s1, cfg = pipe.stage1, pipe.config
    fired: dict[str, list[int]] = {}
    for st in styles:
        for ims in st.colours.values():
            for im in ims:
                c = images_mod.decode(im.path, Path(im.path).read_bytes(), cfg.images)
                small = resize_224([c.pixels], s1.backbone.preprocessing.size)[0]
                checks = run_checks(small, c.orig_size, s1.check_cfg)
                for name, r in checks.items():
                    if name in PRIMARY_CHECKS and im.view != "front":
                        continue
                    hit = r.score >= 0.5
                    if name == "background_marks":  # decisive only with text found on a mark
                        hit = any(s1.text_detector().detect_in(c.pixels, reg) for reg in r.candidates)
                    n = fired.setdefault(name, [0, 0])
                    n[0] += hit
                    n[1] += 1
    return {k: tuple(v) for k, v in sorted(fired.items())}


def checks_section(rates: dict[str, dict], decisive: list[str], header: str) -> str:
    splits = list(rates)
    lines = ["## Stage 1 checks on real clean photos (`agpis eval listings`)", "", header, "",
             "Each explainable check's firing rate (score >= 0.5) on the real, clean catalogue photos of the held-out "
             "styles: all photos for the single-image checks, the main photos for the primary checks. A decisive "
             "check that fires removes the photo (single-image) or keeps it from being the primary; the others only "
             "explain. `background_marks` counts a mark apart from the product with text found on it.", "",
             "| check | decisive | " + " | ".join(f"{sp}: fired on clean photos" for sp in splits) + " |",
             "|---|---|" + "---|" * len(splits)]
    for name in sorted({k for r in rates.values() for k in r}):
        cells = [pct(*rates[sp][name]) if name in rates[sp] else "–" for sp in splits]
        lines.append(f"| `{name}` | {'yes' if name in decisive else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _config(args):
    if not (getattr(args, "config", None) or getattr(args, "overrides", None)):
        return None
    from agpis.cli import load_config

    return load_config(args)


# --- the command -------------------------------------------------------------------------------

def register_eval(sub) -> None:
    from agpis.cli import add_config_flags

    p = sub.add_parser("listings", help="the real-listing benchmark (the gate for a new default)",
                       description="Whole real listings (held-out styles of ../shared/data/magento, the ABO and JD "
                                   "listings) and variants with one violation each through the full pipeline; "
                                   "writes its sections of docs/evaluation.md and var/eval/listings-<split>.json.")
    p.add_argument("--split", default="val", choices=("val", "test", "both"),
                   help="catalogue styles to run (val: the gate; test: reported beside the synthetic AUCs)")
    p.add_argument("--model", default="default", help="model version under weights/ or a version directory")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write the sections into")
    p.add_argument("--json-dir", type=Path, default=DEFAULT_JSON_DIR, help="where listings-<split>.json go")
    p.add_argument("--limit", type=int, default=0, help="only the first N clean listings of each split")
    p.add_argument("--shared", type=Path, help="../shared/data directory (default: beside the checkout)")
    p.add_argument("--no-docs", action="store_true", help="print and write the JSON only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared 2-core machines: idle threads sleep
    evaluate(args)
    return 0
