"""Duplicate-detection evaluation: patch kNN vs whole-image pHash vs whole-image CNN cosine,
side by side on the same pairs, in one run (`agpis eval stage1 --duplicates`).

Positives (must be found): an image and a copy made by crop, zoom, horizontal flip, re-encode
(downscale + strong JPEG) or small rotation. Negatives (must not be flagged): different photos
of one product (grocery: the catalogue shot and in-store photos of one class, two in-store
photos of one class; ABO listings' views; the data set's candidates of one product in different
dup groups). Real photos come from ../shared and are used in place, never copied.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

TRANSFORMS = ("crop", "zoom", "flip", "reencode", "rotate")
# Two in-store photos of one product class: often the same shelf shot twice from nearly the
# same place, i.e. duplicated content by the paper's rule, yet "different photos" by origin.
# Neither label is right, so they are left out of precision/recall and reported on their own.
AMBIGUOUS = ("grocery_photos", "dataset_photo_pair")


@dataclass
class Pair:
    a: np.ndarray  # RGB uint8, as the service would decode it (<= 512 px longest side)
    b: np.ndarray
    duplicate: bool
    kind: str  # a transform name, or the negative's source


def fit(im: np.ndarray, side: int = 512) -> np.ndarray:
    s = side / max(im.shape[:2])
    if s >= 1:
        return im
    return cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)


def transform(im: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    h, w = im.shape[:2]
    if kind in ("crop", "zoom"):
        f = rng.uniform(0.6, 0.85)  # side fraction kept
        cw, ch = int(w * f), int(h * f)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = im[y0:y0 + ch, x0:x0 + cw]
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR) if kind == "zoom" else out.copy()
    if kind == "flip":
        return im[:, ::-1].copy()
    if kind == "reencode":
        s = rng.uniform(0.45, 0.8)
        small = cv2.resize(im, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
        buf = io.BytesIO()
        Image.fromarray(small).save(buf, "JPEG", quality=int(rng.integers(20, 45)))
        return np.asarray(Image.open(buf).convert("RGB"))
    if kind == "rotate":
        angle = float(rng.choice([-1, 1]) * rng.uniform(3, 10))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        return cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    raise ValueError(f"unknown transform {kind!r}; expected one of {TRANSFORMS}")


def _rgb(path: Path) -> np.ndarray:
    return fit(np.asarray(Image.open(path).convert("RGB")))


def real_pairs(shared: Path, seed: int = 0, n_sources: int = 80, n_negatives: int = 400) -> list[Pair]:
    """Pairs from ../shared photos (used in place)."""
    rng = np.random.default_rng(seed)
    g = shared / "data" / "grocery" / "dataset"
    iconic = sorted((g / "iconic-images-and-descriptions").rglob("*.jpg"))
    val = [line.split(",")[0].strip() for line in (g / "val.txt").read_text().splitlines() if line.strip()]
    by_class: dict[str, list[Path]] = {}
    for rel in val:
        by_class.setdefault(str(Path(rel).parent), []).append(g / rel)
    abo = [sorted(d.glob("*.jpg")) for d in sorted((shared / "data" / "abo_samples").iterdir()) if d.is_dir()]

    sources = [iconic[i] for i in rng.permutation(len(iconic))[: n_sources // 2]]
    flat_val = [p for ps in by_class.values() for p in ps]
    sources += [flat_val[i] for i in rng.permutation(len(flat_val))[: n_sources - len(sources)]]
    sources += [p for ps in abo for p in ps]
    pairs = []
    for i, path in enumerate(sources):
        im = _rgb(path)
        kind = TRANSFORMS[i % len(TRANSFORMS)]
        pairs.append(Pair(im, transform(im, kind, rng), True, kind))
        kind2 = TRANSFORMS[(i + 2) % len(TRANSFORMS)]
        pairs.append(Pair(im, transform(im, kind2, rng), True, kind2))

    negatives: list[Pair] = []
    for views in abo:  # a listing's different views
        for x in range(len(views)):
            for y in range(x + 1, len(views)):
                negatives.append(Pair(_rgb(views[x]), _rgb(views[y]), False, "abo_views"))
    # Grocery: the catalogue shot vs an in-store photo of the same class, and two in-store photos.
    iconic_by_name = {p.parent.name: p for p in iconic}
    classes = sorted(by_class)
    while len(negatives) < n_negatives:
        c = classes[int(rng.integers(len(classes)))]
        photos = by_class[c]
        if len(photos) >= 2 and rng.random() < 0.5:
            x, y = rng.choice(len(photos), 2, replace=False)
            negatives.append(Pair(_rgb(photos[x]), _rgb(photos[y]), False, "grocery_photos"))
        elif Path(c).name in iconic_by_name:
            negatives.append(Pair(_rgb(iconic_by_name[Path(c).name]), _rgb(photos[int(rng.integers(len(photos)))]),
                                  False, "grocery_catalogue_vs_photo"))
    return pairs + negatives


def dataset_pairs(directory: Path, split: str = "test", seed: int = 0, n_max: int = 600) -> list[Pair]:
    """Pairs of one listing's candidates (same product, same variant) from an AGPIS-data set:
    same `dup_group` = a made duplicate (positive, "dataset_dup"); different groups = different
    views (negative, "dataset_views"; two in-store photos: "dataset_photo_pair", reported apart)."""
    from stage1.data import listings

    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for cands in listings(directory, split).values():
        for x in range(len(cands)):
            for y in range(x + 1, len(cands)):
                a, b = cands[x], cands[y]
                if a.variant != "same" or b.variant != "same":
                    continue
                if a.dup_group == b.dup_group:
                    pos.append((a.path, b.path, True, "dataset_dup"))
                else:
                    both_photos = a.view == b.view == "lifestyle"
                    neg.append((a.path, b.path, False, "dataset_photo_pair" if both_photos else "dataset_views"))
    chosen = [pos[i] for i in rng.permutation(len(pos))[: n_max // 3]]
    chosen += [neg[i] for i in rng.permutation(len(neg))[: n_max - len(chosen)]]
    return [Pair(_rgb(a), _rgb(b), d, k) for a, b, d, k in chosen]


# --- the three detectors ------------------------------------------------------------------

def phash(im: np.ndarray) -> np.ndarray:
    """64-bit perceptual hash (DCT of a 32x32 grey image, 8x8 low frequencies vs their median)."""
    g = cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    d = cv2.dct(g)[:8, :8].ravel()
    return d[1:] > np.median(d[1:])  # skip the DC term


def phash_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float((a != b).mean())


def recall_at_precision(scores: np.ndarray, labels: np.ndarray, precision: float = 0.95) -> tuple[float, float]:
    """(best recall with precision >= `precision`, its threshold) over every threshold."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    # Only cut between different scores: ties go together.
    last = np.r_[s[1:] != s[:-1], True]
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / max(int(y.sum()), 1)
    ok = last & (prec >= precision)
    if not ok.any():
        return 0.0, float("inf")
    k = np.flatnonzero(ok)[np.argmax(rec[ok])]
    return float(rec[k]), float(s[k])


def evaluate(pairs: list[Pair], backbone, det_cfg=None, prop_cfg=None) -> dict:
    """Scores every pair with the three methods; times each (ms per pair, excluding the shared
    backbone forward, timed separately per image)."""
    from stage1.duplicates import DuplicateConfig, find_duplicates, image_patches
    from stage1.proposals import ProposalConfig, propose

    det_cfg = det_cfg or DuplicateConfig()
    prop_cfg = prop_cfg or ProposalConfig()
    results = {m: [] for m in ("patch_knn", "phash", "cnn_cosine")}
    times = {m: 0.0 for m in results}
    t_backbone = 0.0
    for p in pairs:
        t0 = time.perf_counter()
        f = backbone.features([p.a, p.b])
        t_backbone += time.perf_counter() - t0

        t0 = time.perf_counter()
        ims = []
        for k, im in enumerate((p.a, p.b)):
            boxes, _ = propose(im, prop_cfg)
            size = (im.shape[1], im.shape[0])
            ims.append(image_patches(f["patch"][k], f["final"][k], boxes, size))
        found = find_duplicates(ims, det_cfg)
        results["patch_knn"].append(found[0].score if found else 0.0)
        times["patch_knn"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        results["phash"].append(phash_similarity(phash(p.a), phash(p.b)))
        times["phash"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        g = f["final"].mean(1)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        results["cnn_cosine"].append(float(g[0] @ g[1]))
        times["cnn_cosine"] += time.perf_counter() - t0

    labels = np.array([p.duplicate for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    main = ~np.isin(kinds, AMBIGUOUS)
    report = {"n_pairs": int(main.sum()), "n_positive": int((labels & main).sum()),
              "n_negative": int((~labels & main).sum()), "n_ambiguous": int((~main).sum()),
              "backbone_ms_per_image": t_backbone / (2 * len(pairs)) * 1000, "methods": {},
              "kinds": {k: int((kinds == k).sum()) for k in sorted(set(kinds))}}
    for m, sc in results.items():
        sc = np.array(sc, np.float32)
        r, thr = recall_at_precision(sc[main], labels[main])
        per_kind = {}
        for kind in sorted(set(kinds[labels])):
            sel = main & ((kinds == kind) | ~labels)  # this kind's positives against every negative
            per_kind[kind] = recall_at_precision(sc[sel], labels[sel])[0]
        crop_zoom = main & (np.isin(kinds, ("crop", "zoom")) | ~labels)
        flagged = {k: float((sc[kinds == k] >= thr).mean()) for k in sorted(set(kinds[~labels]))}
        report["methods"][m] = {
            "recall_at_p95": r, "threshold": thr,
            "recall_at_p95_crop_zoom": recall_at_precision(sc[crop_zoom], labels[crop_zoom])[0],
            "recall_at_p95_by_kind": per_kind,
            "negatives_flagged_at_threshold": flagged,
            "ms_per_pair": times[m] / len(pairs) * 1000,
        }
    report["scores"] = {m: np.array(v, np.float32) for m, v in results.items()}
    report["labels"], report["kind_per_pair"] = labels, kinds
    return report


def markdown(report: dict) -> str:
    names = {"patch_knn": "EdgeBoxes + patch kNN (ours)", "phash": "whole-image pHash",
             "cnn_cosine": "whole-image CNN cosine"}
    kinds = list(next(iter(report["methods"].values()))["recall_at_p95_by_kind"])
    negs = list(next(iter(report["methods"].values()))["negatives_flagged_at_threshold"])
    rows = ["| method | recall @ P=0.95 | crop+zoom | " + " | ".join(kinds) + " | ms per pair |",
            "|---" * (4 + len(kinds)) + "|"]
    for m, r in report["methods"].items():
        per = " | ".join(f"{r['recall_at_p95_by_kind'][k]:.3f}" for k in kinds)
        rows.append(f"| {names[m]} | {r['recall_at_p95']:.3f} | {r['recall_at_p95_crop_zoom']:.3f} | {per} | "
                    f"{r['ms_per_pair']:.2f} |")
    rows += ["", "Share of each kind of negative flagged at that method's P=0.95 threshold "
             "(ambiguous kinds are not in the precision above):", "",
             "| method | threshold | " + " | ".join(negs) + " |", "|---" * (2 + len(negs)) + "|"]
    for m, r in report["methods"].items():
        rows.append(f"| {names[m]} | {r['threshold']:.3f} | " +
                    " | ".join(f"{r['negatives_flagged_at_threshold'][k]:.2f}" for k in negs) + " |")
    return "\n".join(rows)


# --- real catalogue photos (`python -m stage1.dupeval --real`) ---------------------------------
# Positives: a real Magento photo and a copy made from it; negatives: every pair of distinct real
# photos of one style (all colours, all views), which holds the hard ones: front vs back, the
# main view vs its real close-up (`_alt1`, view "detail"), two colours' main photos.
REAL_KINDS = ("zoom", "crop", "flip", "reencode", "zoom_flip_reencode")
# The demo shop sometimes files ONE photo under two colours (mean pixel difference < 1 of 255 at
# 64 x 80: 5 train and 3 test pairs, looked at: black trousers as "black" and "blue", shorts whose
# trims differ by a few pixels). By content they are duplicates, so they are neither positives
# nor negatives: reported apart, out of precision and recall.
SAME_PHOTO = "same_photo"
SAME_PHOTO_MAX_DIFF = 1.0


def real_transform(im: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The copies a seller makes: a zoom crop (65-90% of each side kept, the crop anywhere in the
    frame, resized back to the image's size), a crop (65-90%, not resized), a mirror, a re-encode
    (JPEG q 35-70 after a 0.6-1.0 downscale), and a zoom crop mirrored and re-encoded."""
    h, w = im.shape[:2]
    out = im
    for step in {"zoom_flip_reencode": ("zoom", "flip", "reencode")}.get(kind, (kind,)):
        if step in ("zoom", "crop"):
            f = rng.uniform(0.65, 0.9)
            cw, ch = int(round(w * f)), int(round(h * f))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            out = out[y0:y0 + ch, x0:x0 + cw]
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR) if step == "zoom" else out.copy()
        elif step == "flip":
            out = out[:, ::-1].copy()
        elif step == "reencode":
            s = rng.uniform(0.6, 1.0)
            oh, ow = out.shape[:2]
            small = cv2.resize(out, (max(8, int(ow * s)), max(8, int(oh * s))), interpolation=cv2.INTER_AREA)
            buf = io.BytesIO()
            Image.fromarray(small).save(buf, "JPEG", quality=int(rng.integers(35, 71)))
            out = np.asarray(Image.open(buf).convert("RGB"))
        else:
            raise ValueError(f"unknown transform {kind!r}; expected one of {REAL_KINDS}")
    return out


def negative_kind(a, b) -> str:
    """Name of a pair of different real photos of one style (catalogue.CatalogueImage)."""
    if a.colour != b.colour:
        return "colours_mains" if a.view == b.view == "front" else "colours_other"
    views = {a.view, b.view}
    if views == {"front", "back"}:
        return "front_back"
    if views == {"front", "detail"}:
        return "main_closeup"
    return "views_other"


def _load(path: str, side: int = 800) -> np.ndarray:
    im = Image.open(path)
    im.draft("RGB", (side, side))  # JPEG DCT scaling: a fast decode of a smaller copy
    return fit(np.asarray(im.convert("RGB")), side)


def magento_real_pairs(split: str, seed: int = 0, root: Path | None = None):
    """(images, pairs) of one catalogue split: images are RGB arrays (real photos and made
    copies), pairs are (index a, index b, duplicate, kind). Photos are read in place."""
    from agpis.data import catalogue

    styles = catalogue.magento(root)
    splits_ = catalogue.split_styles(styles)
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    pairs: list[tuple[int, int, bool, str]] = []
    for s in sorted(styles, key=lambda s: s.style):
        if splits_[s.style] != split:
            continue
        photos = list({im.path: im for ims in s.colours.values() for im in ims}.values())
        idx = []
        for p in photos:
            idx.append(len(images))
            images.append(_load(p.path))
        for x in range(len(photos)):
            for y in range(x + 1, len(photos)):
                a, b = (cv2.resize(images[i], (64, 80), interpolation=cv2.INTER_AREA).astype(np.float32)
                        for i in (idx[x], idx[y]))
                same = float(np.abs(a - b).mean()) < SAME_PHOTO_MAX_DIFF
                pairs.append((idx[x], idx[y], False, SAME_PHOTO if same else negative_kind(photos[x], photos[y])))
        for i in idx:
            for kind in REAL_KINDS:
                pairs.append((i, len(images), True, kind))
                images.append(real_transform(images[i], kind, rng))
    return images, pairs


def real_scores(images: list[np.ndarray], pairs, backbone, det_cfg=None, prop_cfg=None) -> tuple[np.ndarray, float]:
    """Patch-match score of every pair (each image's maps and proposals computed once) and the
    matching time in ms per pair (find_duplicates on the two images, as the service calls it)."""
    from stage1.duplicates import DuplicateConfig, find_duplicates, image_patches
    from stage1.proposals import ProposalConfig, propose

    det_cfg = det_cfg or DuplicateConfig()
    prop_cfg = prop_cfg or ProposalConfig()
    patches = []
    for start in range(0, len(images), 16):
        batch = images[start:start + 16]
        f = backbone.features(batch)
        patches += [image_patches(f["patch"][k], f["final"][k], propose(im, prop_cfg)[0], (im.shape[1], im.shape[0]))
                    for k, im in enumerate(batch)]
    scores = np.zeros(len(pairs), np.float32)
    t0 = time.perf_counter()
    for n, (a, b, _, _) in enumerate(pairs):
        found = find_duplicates([patches[a], patches[b]], det_cfg)
        scores[n] = found[0].score if found else 0.0
    return scores, (time.perf_counter() - t0) / max(len(pairs), 1) * 1000


def real_report(scores: np.ndarray, pairs, threshold: float) -> dict:
    """Recall at precision 0.95 (all copies against all negatives, and each kind of copy against
    all negatives), and at `threshold`: recall by kind and false positives by kind of negative."""
    kinds = np.array([p[3] for p in pairs])
    same = kinds == SAME_PHOTO
    out_same = {"n": int(same.sum()), "flagged": int((scores[same] >= threshold).sum())}
    scores, kinds, pairs = scores[~same], kinds[~same], [p for p, x in zip(pairs, same) if not x]
    labels = np.array([p[2] for p in pairs])
    r, thr = recall_at_precision(scores, labels)
    out = {"n_positive": int(labels.sum()), "n_negative": int((~labels).sum()), "recall_at_p95": r,
           "threshold_at_p95": thr, "threshold": threshold, "by_kind": {}, "negatives": {}, SAME_PHOTO: out_same}
    flagged = scores >= threshold
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    out["at_threshold"] = {"recall": tp / max(int(labels.sum()), 1), "precision": tp / max(tp + fp, 1),
                           "tp": tp, "fp": fp}
    for k in REAL_KINDS:
        sel = (kinds == k) | ~labels
        pos = kinds == k
        out["by_kind"][k] = {"n": int(pos.sum()), "recall_at_p95": recall_at_precision(scores[sel], labels[sel])[0],
                             "found_at_threshold": int((flagged & pos).sum())}
    for k in sorted(set(kinds[~labels])):
        sel = kinds == k
        out["negatives"][k] = {"n": int(sel.sum()), "flagged": int(flagged[sel].sum()),
                               "max_score": float(scores[sel].max())}
    return out


def real_markdown(reports: dict[str, dict], ms_per_pair: dict[str, float], seed: int, threshold: float) -> str:
    """The `--real` section: per split, recall by kind of copy and false positives by kind of
    different photo, with counts."""
    rows = [f"**Real photos** (Magento Luma, OSL-3.0, read in place from ../shared). Command: "
            f"`python -m stage1.dupeval --real --splits {','.join(reports)} --seed {seed}`. Positives: each real "
            f"photo of a held-out style and a copy made from it ({', '.join(REAL_KINDS)}: zoom crop keeps 65-90% of "
            f"each side anywhere in the frame and is resized back; crop keeps 65-90% unresized; re-encode is JPEG "
            f"q 35-70 after a 0.6-1.0 downscale); negatives: every pair of distinct real photos of one style, all "
            f"colours and views. Pairs of one photo filed under two colours (`{SAME_PHOTO}`, mean pixel difference "
            f"< {SAME_PHOTO_MAX_DIFF:g}/255) are duplicates by content and are left out of both. Recall at "
            f"precision 0.95: all copies against all negatives, and each kind of copy against all negatives "
            f"(stricter: fewer positives per negative). Shipped threshold `stage1.duplicate_threshold` = "
            f"{threshold:g}.", ""]
    for split, r in reports.items():
        a = r["at_threshold"]
        rows += [f"*{split}* ({r['n_positive']} copies, {r['n_negative']} pairs of different photos; matching "
                 f"{ms_per_pair[split]:.1f} ms per pair): recall at P=0.95 **{r['recall_at_p95']:.3f}** (threshold "
                 f"{r['threshold_at_p95']:.3f}); at the shipped threshold recall {a['recall']:.3f} ({a['tp']} of "
                 f"{r['n_positive']}), precision {a['precision']:.3f} ({a['fp']} false positives).", "",
                 "| copy | n | recall @ P=0.95 (vs all negatives) | found at threshold |", "|---|---|---|---|"]
        for k, v in r["by_kind"].items():
            rows.append(f"| {k} | {v['n']} | {v['recall_at_p95']:.3f} | {v['found_at_threshold']} of {v['n']} |")
        rows += ["", "| different photos | n | flagged at threshold | highest score |", "|---|---|---|---|"]
        for k, v in r["negatives"].items():
            rows.append(f"| {k} | {v['n']} | {v['flagged']} | {v['max_score']:.3f} |")
        rows.append(f"| ({SAME_PHOTO}, left out) | {r[SAME_PHOTO]['n']} | {r[SAME_PHOTO]['flagged']} | |")
        rows.append("")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    from stage1.backbone import Backbone
    from stage1.config import Stage1Config
    from stage1.duplicates import DuplicateConfig
    from stage1.paths import BASE_DIR
    from stage1.proposals import ProposalConfig

    ap = argparse.ArgumentParser(prog="python -m stage1.dupeval", description=__doc__)
    ap.add_argument("--real", action="store_true", required=True,
                    help="real Magento photos of held-out styles (../shared/data/magento)")
    ap.add_argument("--splits", default="val,test", help="catalogue style splits, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", default="docs/evaluation.md", help="write the section here ('' to skip)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = Stage1Config()
    backbone = Backbone(BASE_DIR, threads=1)
    prop_cfg = ProposalConfig(side=cfg.proposal_side, max_boxes=cfg.max_proposals)
    reports, ms = {}, {}
    for split in args.splits.split(","):
        images, pairs = magento_real_pairs(split, seed=args.seed)
        scores, ms[split] = real_scores(images, pairs, backbone, DuplicateConfig(), prop_cfg)
        reports[split] = real_report(scores, pairs, cfg.duplicate_threshold)
        print(split, {k: reports[split][k] for k in ("recall_at_p95", "threshold_at_p95", "at_threshold")}, flush=True)
    text = real_markdown(reports, ms, args.seed, cfg.duplicate_threshold)
    print(text)
    if args.docs:
        from agpis.docsections import write_section

        write_section(args.docs, "stage1-duplicates-real", "### Stage 1: duplicates on real photos\n\n" + text)


if __name__ == "__main__":
    main()
