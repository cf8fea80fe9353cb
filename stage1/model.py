"""The learned stage 1 (paper §3.3): primary image, non-compliant removal, duplicate removal,
candidate sequences; every removal with a rule id, a sentence and, where there is one, a box.

One request, 7 images: one resize to 224 per image, the backbone (float32 ONNX, in calls of
config.backbone_batch images) whose maps feed the heads, the duplicate detector and stage 2;
EdgeBoxes, the checks and the colours (stage1/colour.py) run on a second thread meanwhile
(config.side_thread; without it, after the backbone on the calling thread). Then the heads
(numpy), the text detector on at most a couple of suspected images, the decisions, and the
duplicate matching among the survivors.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from agpis import rules
from stage1.config import Stage1Config
from stage1.types import (MIN_SIDE, BoxMatch, CandidateImage, CandidateReport, DuplicatePair, Finding, Removal,
                          Stage1Result)

FORMAT = "agpis-stage1-1"
MANIFEST = "stage1.json"
HEADS_FILE = "heads.safetensors"
TEXT_RULES = ("text_overlay", "watermark", "logo")
PRIMARY_CHECKS = ("white_background", "product_fill", "aspect_ratio")
SINGLE_CHECKS = ("resolution", "exposure", "blur", "background_marks", "inset")
COLOUR_CHECKS = ("title_colour", "product_colour")


def check_config(cfg: Stage1Config):
    from stage1.checks import CheckConfig

    return CheckConfig(min_long_side=cfg.min_long_side, max_aspect=cfg.max_aspect,
                       min_white_border=cfg.min_white_border, min_fill=cfg.min_fill,
                       min_highlight=cfg.min_highlight, max_shadow=cfg.max_shadow,
                       min_log_sharpness=cfg.min_log_sharpness, inset_min_closed=cfg.inset_min_closed)


class LearnedStage1:
    def __init__(self, directory: str | Path, config: Stage1Config | None = None):
        from safetensors.numpy import load_file

        from stage1.backbone import Backbone
        from stage1.duplicates import DuplicateConfig
        from stage1.heads import HeadsConfig, NumpyHeads
        from stage1.proposals import ProposalConfig
        from stage1.tflite_import import sha256_file

        self.directory = Path(directory)
        self.config = config or Stage1Config()
        known = PRIMARY_CHECKS + SINGLE_CHECKS + COLOUR_CHECKS
        unknown = set(self.config.decisive_checks) - set(known)
        if unknown:
            raise ValueError(f"stage1.decisive_checks: unknown {sorted(unknown)}; known: {', '.join(known)}")
        path = self.directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: not a stage 1 directory (train one with `agpis train stage1`)")
        self.manifest = m = json.loads(path.read_text())
        if m.get("format") != FORMAT:
            raise ValueError(f"{path}: format {m.get('format')!r}, expected {FORMAT!r}")
        heads_path = self.directory / m["heads"]["file"]
        if sha256_file(heads_path) != m["heads"]["sha256"]:
            raise ValueError(f"{heads_path}: sha256 does not match {path}")
        hc = dict(m["heads"]["config"])
        hc["outputs"] = tuple(hc["outputs"])
        heads_cfg = HeadsConfig(**hc)
        if list(heads_cfg.outputs) != m["heads"]["outputs"]:
            raise ValueError(f"{path}: heads.outputs disagrees with heads.config.outputs")
        unknown = set(heads_cfg.outputs) - {"primary", "noncompliant"} - set(rules.BY_ID)
        if unknown:
            raise ValueError(f"{path}: outputs {sorted(unknown)} are not rule ids in agpis.rules")
        self.heads = NumpyHeads(heads_cfg, load_file(str(heads_path)))
        self.backbone = Backbone(self.directory, threads=self.config.threads, max_batch=self.config.backbone_batch)
        self.version = str(m["version"])
        self.check_cfg = check_config(self.config)
        self.prop_cfg = ProposalConfig(side=self.config.proposal_side, max_boxes=self.config.max_proposals)
        self.dup_cfg = DuplicateConfig()
        self._text = None
        self._text_lock = threading.Lock()
        # None: no side thread (Stage1Config.side_thread), the calling thread does every task
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stage1") if self.config.side_thread else None

    def text_detector(self):
        with self._text_lock:  # created on first use: most requests never need it
            if self._text is None:
                from stage1.textdet import TextDetConfig, TextDetector

                self._text = TextDetector(TextDetConfig(side=self.config.text_det_side), threads=1)
            return self._text

    # -------------------------------------------------------------------------------------
    def backbone_many(self, products: list[list[CandidateImage]]) -> list[dict[str, np.ndarray | list]]:
        """The backbone for the images of several products together (a catalogue batch: ONNX
        calls of config.backbone_batch images across products, or all in one call when it is 0,
        e.g. on a GPU). -> per product, what `run(features=)`
        takes: {"small": its images resized for the backbone, "patch": .., "final": ..}.
        MobileNetV2 has no batch-dependent layer, so each image's maps are those of its own
        product's forward (tests/stage1/test_model.py compares them)."""
        from stage1.train import resize_224

        for images in products:
            _validate(images, 1)
        smalls = [resize_224([im.pixels for im in images], self.backbone.preprocessing.size) for images in products]
        feats = self.backbone.features([s for small in smalls for s in small])
        out, at = [], 0
        for small in smalls:
            n = len(small)
            out.append({"small": small, "patch": feats["patch"][at:at + n], "final": feats["final"][at:at + n]})
            at += n
        return out

    def run(self, images: list[CandidateImage], k: int,
            check_deadline: Callable[[], None] | None = None, title: str = "",
            features: dict[str, np.ndarray | list] | None = None) -> Stage1Result:
        """`features`: this product's item of `backbone_many`, computed beforehand with other
        products' images; None: resized and run through the backbone here."""
        from stage1.checks import check_vector, run_checks
        from stage1.duplicates import find_duplicates, image_patches
        from stage1.heads import head_input
        from stage1.proposals import propose
        from stage1.sequence import build_sequences
        from stage1.train import resize_224

        check = check_deadline or (lambda: None)
        cfg = self.config
        timings: dict[str, float] = {}
        _validate(images, k)
        clock = _Clock(timings)

        size = self.backbone.preprocessing.size
        small = features["small"] if features is not None else \
            clock("resize", lambda: self._both_threads(lambda im: resize_224([im.pixels], size)[0], list(images)))

        # EdgeBoxes, the checks and the colours, one task per image, taken by a second thread while the
        # backbone runs and by this thread too once it is done (OpenCV releases the GIL): once the
        # backbone finishes, the rest is shared by both cores.
        from stage1 import colour

        props: list = [None] * len(images)
        checks: list = [None] * len(images)
        shares: list = [None] * len(images)
        spent = {"proposals": 0.0, "checks": 0.0, "colour": 0.0}
        lock = threading.Lock()

        def side_task(task: tuple[str, int]) -> None:
            kind, i = task
            t0 = time.perf_counter()
            if kind == "proposals":
                props[i] = propose(images[i].pixels, self.prop_cfg, square=small[i])[0]
            elif kind == "checks":
                checks[i] = run_checks(small[i], images[i].orig_size, self.check_cfg)
            else:
                shares[i] = colour.colour_shares(small[i])
            with lock:
                spent[kind] += (time.perf_counter() - t0) * 1000

        side = _Shared(self._pool, [(kind, i) for kind in ("proposals", "checks", "colour") for i in range(len(images))],
                       side_task)
        feats = features if features is not None else clock("backbone", lambda: self.backbone.features(small))
        clock("help_side_thread", side.help)
        timings["wait_side_thread"] = side.wait()
        timings["proposals"], timings["checks"], timings["colour"] = spent["proposals"], spent["checks"], spent["colour"]
        check()

        x = head_input(feats["final"], feats["patch"], np.stack([check_vector(c) for c in checks])
                       if self.heads.config.use_checks else None)
        probs = clock("heads", lambda: self.heads.probs(x))
        text_boxes, mark_boxes, mark_regions = clock("text", lambda: self._text_regions(images, probs, checks))
        check()

        reports, removed, decisions = self._decide(images, probs, checks, text_boxes, mark_boxes)
        verdict = colour.check_title(title, shares, cfg.title_colour_min)
        off_colour = self._off_colour(verdict, shares, reports, decisions)
        primary = self._choose_primary(reports, decisions)
        # Primary-rule findings explain the chosen primary, or, without one, why none qualified.
        for r, d in zip(reports, decisions):
            if primary is None or r.id == primary:
                r.findings += d["primary_findings"]
        order = [im.id for im in images]
        p_idx = order.index(primary) if primary is not None else None
        if p_idx is not None and not verdict.words and shares[p_idx] is not None \
                and "product_colour" in cfg.decisive_checks:
            # no colour word to judge by: the primary's colours are the listing's
            for i, d in enumerate(decisions):
                shared = colour.overlap(shares[i], shares[p_idx]) if shares[i] is not None else 1.0
                if i != p_idx and not d["remove"] and shared < cfg.colour_overlap_min:
                    self._flag_off_colour(i, 1.0 - shared, f"{colour.describe(shares[i])} against "
                                          f"{colour.describe(shares[p_idx])}", reports, decisions, off_colour)
        for i, detail in off_colour.items():
            sentence = rules.feedback("inconsistent_product", kind="variant", images=[p_idx, i], detail=detail) \
                if p_idx is not None else f"{rules.image_name(i)} shows the product in another colour ({detail})"
            removed.append(Removal(images[i].id, "inconsistent_product", sentence))
        kept_idx = [i for i, d in enumerate(decisions) if not d["remove"]]
        kept = [images[i] for i in kept_idx]

        duplicates: list[DuplicatePair] = []
        similarity: dict[frozenset, float] = {}
        if primary is not None and len(images) > 1:
            # Every image is matched, the removed ones too: a pair with an image already removed
            # for a single-image rule removes nothing more, but it is reported, so that a listing's
            # near-identical views are named even when one of them also breaks another rule.
            t0 = time.perf_counter()
            patches = self._both_threads(lambda i: image_patches(
                feats["patch"][i], feats["final"][i], props[i], (images[i].pixels.shape[1], images[i].pixels.shape[0]),
                ignore=np.asarray(mark_regions.get(i, []), np.float32).reshape(-1, 4)), list(range(len(images))))
            found = find_duplicates(patches, self.dup_cfg, run=self._both_threads)
            already = {r.id for r in removed}  # so far, only single-image removals
            duplicates, dup_removed = self._resolve_duplicates(found, images, patches, primary, reports, already)
            removed += dup_removed
            similarity = {frozenset((images[f.i].id, images[f.j].id)): f.score for f in found}
            gone = {r.id for r in dup_removed}
            kept = [im for im in kept if im.id not in gone]
            timings["matching"] = (time.perf_counter() - t0) * 1000
        check()

        features = {im.id: np.ascontiguousarray(feats["final"][i]) for i, im in enumerate(images)}
        result = Stage1Result(reports, duplicates, removed, primary, [], None, timings, features)
        if verdict.mismatch and "title_colour" in cfg.decisive_checks:
            result.rejection = _title_mismatch(verdict, shares, p_idx)
        if primary is None:
            result.terminated_reason = "no_primary"
            return result
        others = [im.id for im in kept if im.id != primary]
        if len(others) + 1 < k:
            result.terminated_reason = "too_few_images"
            return result
        p_nc = {r.id: r.p_noncompliant for r in reports}

        def propose_all() -> list[list[str]]:
            seqs = build_sequences(primary, others, k, cfg.max_sequences, p_nc, similarity)
            kept_ids = {im.id for im in kept}
            runners = sorted((r for r in reports if r.id != primary and r.id in kept_ids
                              and r.p_primary > cfg.primary_threshold), key=lambda r: -r.p_primary)
            for r in runners[:cfg.alternative_primaries]:
                rest = [im.id for im in kept if im.id != r.id]
                seqs += build_sequences(r.id, rest, k, max(1, cfg.max_sequences // 2), p_nc, similarity)
            return seqs

        result.sequences = clock("sequences", propose_all)
        return result

    def _both_threads(self, fn: Callable, items: list) -> list:
        """[fn(item) ...] in order, the items shared by this thread and a pool thread (_Shared)."""
        return _Shared(self._pool, items, fn).map()

    # -------------------------------------------------------------------------------------
    def _text_regions(self, images, probs, checks) -> tuple[dict[int, list], dict[int, list], dict[int, list]]:
        """The text detector on (1) the whole images the model most suspects of added text and
        (2) closely, the marks that stand apart from the product on a clean background (the
        `background_marks` check's candidates): text there was added to the photo. Returns the
        text boxes of (1), those of (2), and (2)'s marks that hold text (normalised regions)."""
        cfg = self.config
        p_text = np.max(np.stack([probs[r] for r in TEXT_RULES if r in probs]), axis=0)
        order = [int(i) for i in np.argsort(-p_text) if p_text[i] >= cfg.text_check_min_p]
        whole = {i: self.text_detector().detect(images[i].pixels) for i in order[: cfg.text_check_max_images]}
        marks, regions = {}, {}
        for i, c in enumerate(checks):
            for region in c["background_marks"].candidates:
                found = self.text_detector().detect_in(images[i].pixels, region)
                if found:
                    marks.setdefault(i, []).extend(found)
                    regions.setdefault(i, []).append(region)
        return whole, marks, regions

    def _decide(self, images, probs, checks, text_boxes, mark_boxes):
        from stage1.heads import p_noncompliant

        cfg = self.config
        reports, removed, decisions = [], [], []
        p_nc_model = p_noncompliant(probs)
        rule_names = [r for r in self.heads.config.outputs if r in rules.BY_ID]
        for i, im in enumerate(images):
            findings: list[Finding] = []
            s = im.scale
            sx, sy = im.pixels.shape[1] / 224.0, im.pixels.shape[0] / 224.0
            # Where added text is: a mark apart from the product if there is one, else every text
            # region the detector found (that may include text printed on the product).
            text_box = None
            if mark_boxes.get(i):
                text_box = _scale_box(_union([b for b, _ in mark_boxes[i]]), s)
            elif text_boxes.get(i):
                text_box = _scale_box(_union([b for b, _ in text_boxes[i]]), s)
            # learned rules
            best_rule = max(rule_names, key=lambda r: float(probs[r][i]))
            for r in rule_names:
                p = float(probs[r][i])
                if p >= 0.5:
                    box = text_box if r in TEXT_RULES else None
                    findings.append(Finding(r, p, box, "model:noncompliant", _sentence(r, i, box, im)))
            if text_boxes.get(i):
                box = _scale_box(_union([b for b, _ in text_boxes[i]]), s)
                score = max(sc for _, sc in text_boxes[i])
                findings.append(Finding("text_overlay", float(score) * float(max(probs[r][i] for r in TEXT_RULES)),
                                        box, "check:text_regions",
                                        f"{len(text_boxes[i])} text region(s) found {_region(box, im)}"))
            # The model's verdict (stage1.heads.p_noncompliant); the reason is the likeliest rule.
            p_nc, nc_rule, nc_box, nc_kind = float(p_nc_model[i]), best_rule, None, None
            p_primary = float(probs["primary"][i])
            primary_findings: list[Finding] = []
            if mark_boxes.get(i):  # text on a mark apart from the product: an added logo or slogan
                px_box = _union([b for b, _ in mark_boxes[i]])
                rule = "logo" if (px_box[2] - px_box[0]) < 0.4 * im.pixels.shape[1] else "text_overlay"
                score = float(max(sc for _, sc in mark_boxes[i]))
                box = _scale_box(px_box, s)
                findings.append(Finding(rule, score, box, "check:background_marks",
                                        f"text on a mark apart from the product {_region(box, im)}"))
                if "background_marks" in cfg.decisive_checks and score > p_nc:
                    p_nc, nc_rule, nc_box = score, rule, box
            for name, c in checks[i].items():
                if c.score < 0.5:
                    continue
                box = None if c.box is None else _scale_box((c.box[0] * sx, c.box[1] * sy, c.box[2] * sx, c.box[3] * sy), s)
                finding = Finding(c.rule, c.score, box, f"check:{name}", c.message)
                (primary_findings if name in PRIMARY_CHECKS else findings).append(finding)
                if name in cfg.decisive_checks and name in SINGLE_CHECKS and c.score > p_nc:
                    p_nc, nc_rule, nc_box, nc_kind = c.score, c.rule, box, c.detail or None
                if name in cfg.decisive_checks and name in PRIMARY_CHECKS:
                    p_primary = min(p_primary, 1.0 - c.score)
            remove = p_nc >= cfg.noncompliant_threshold
            reports.append(CandidateReport(im.id, p_primary, p_nc, findings))
            decisions.append({"remove": remove, "rule": nc_rule, "primary_findings": primary_findings})
            if remove:
                # the box of what decided, else of any finding of that rule
                box = nc_box or next((f.box for f in findings if f.rule == nc_rule and f.box), None)
                removed.append(Removal(im.id, nc_rule, _sentence(nc_rule, i, box, im, nc_kind)))
        return reports, removed, decisions

    def _off_colour(self, verdict, shares, reports, decisions) -> dict[int, str]:
        """The images whose product is not in the title's colour while others are: each gets a
        finding, and (`product_colour` decisive) is marked removed as inconsistent_product ->
        {index: what the finding says} of those removed. When most images do not show the
        title's colour, the title is wrong, not the images: none goes."""
        from stage1 import colour

        out: dict[int, str] = {}
        if verdict.mismatch:
            return out
        said = verdict.said
        for i, (ok, d) in enumerate(zip(verdict.agree, decisions)):
            if ok is False and not d["remove"]:
                self._flag_off_colour(i, 1.0 - verdict.scores[i], f"{colour.describe(shares[i])} against the title's {said}",
                                      reports, decisions, out)
        return out

    def _flag_off_colour(self, i: int, score: float, detail: str, reports, decisions, out: dict[int, str]) -> None:
        """Image i's product_colour finding; removed (and added to `out`) when the check is decisive."""
        reports[i].findings.append(Finding("inconsistent_product", score, None, "check:product_colour", detail))
        if "product_colour" in self.config.decisive_checks:
            decisions[i]["remove"] = True
            out[i] = detail

    def _choose_primary(self, reports, decisions) -> str | None:
        """argmax p_primary among the images that are not removed; it must pass the threshold.
        The seller's first image wins ties within `first_image_margin` (their chosen main view)."""
        eligible = [r for r, d in zip(reports, decisions) if not d["remove"]]
        if not eligible:
            return None
        best = max(eligible, key=lambda r: r.p_primary)
        first = reports[0]
        if first in eligible and first.p_primary > self.config.primary_threshold \
                and best.p_primary - first.p_primary <= self.config.first_image_margin:
            return first.id
        return best.id if best.p_primary > self.config.primary_threshold else None

    def _resolve_duplicates(self, found, images, patches, primary, reports, already: set[str]):
        """Strongest pairs first; the primary is never removed, otherwise the larger p_nc goes.
        A pair with an image already gone (`already`: removed for a single-image rule, or by a
        stronger pair) removes nothing more and names that image as the one stage 1 dropped; a
        pair of two gone images is not reported."""
        p_nc = {r.id: r.p_noncompliant for r in reports}
        gone: set[str] = set(already)
        pairs, removed = [], []
        for f in sorted(found, key=lambda f: -f.score):
            if f.score < self.config.duplicate_threshold:
                continue
            a, b = images[f.i], images[f.j]
            if a.id in gone and b.id in gone:
                continue
            matches = [BoxMatch(_scale_box(patches[f.i].boxes[x], a.scale), _scale_box(patches[f.j].boxes[y], b.scale), s)
                       for x, y, s in f.matches]
            if a.id in gone or b.id in gone:
                pairs.append(DuplicatePair(a.id, b.id, f.score, matches, a.id if a.id in gone else b.id))
                continue
            if primary in (a.id, b.id):
                loser = b if a.id == primary else a
            else:
                loser = a if p_nc[a.id] > p_nc[b.id] else b
            gone.add(loser.id)
            pairs.append(DuplicatePair(a.id, b.id, f.score, matches, loser.id))
            keeper = a if loser is b else b
            order = [r.id for r in reports]
            sentence = rules.feedback("duplicated_view", images=[order.index(keeper.id), order.index(loser.id)])
            removed.append(Removal(loser.id, "duplicated_view", f"{sentence} (patch match {f.score:.2f}); kept {keeper.id}"))
        return pairs, removed


class _Shared:
    """fn over tasks, each task taken by whichever is free of a pool thread (started here) and the
    thread that calls help() or map(): OpenCV, ONNX Runtime and numpy's larger steps release the
    GIL, so both cores work. Results are kept in the tasks' order."""

    def __init__(self, pool: ThreadPoolExecutor | None, tasks: list, fn: Callable):
        self.results: list = [None] * len(tasks)
        self._next = iter(enumerate(tasks))
        self._lock = threading.Lock()
        self._fn = fn
        self._side = pool.submit(self.help) if pool is not None else None  # None: this thread alone

    def help(self) -> None:
        while True:
            with self._lock:
                item = next(self._next, None)
            if item is None:
                return
            self.results[item[0]] = self._fn(item[1])

    def wait(self) -> float:
        """Ms this thread waited for the pool thread's last task (its error raised here). Called
        once this thread found no task left: a pool thread not yet started (busy with another
        request's work) is cancelled, not waited for."""
        if self._side is None or self._side.cancel():
            return 0.0
        t0 = time.perf_counter()
        self._side.result()
        return (time.perf_counter() - t0) * 1000

    def map(self) -> list:
        self.help()
        self.wait()
        return self.results


class _Clock:
    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    def __call__(self, name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        self.timings[name] = self.timings.get(name, 0.0) + (time.perf_counter() - t0) * 1000
        return out


def _validate(images: list[CandidateImage], k: int) -> None:
    if k < 1:
        raise ValueError(f"sequence length k must be >= 1, got {k}")
    for im in images:
        px = im.pixels
        if not isinstance(px, np.ndarray) or px.ndim != 3 or px.shape[2] != 3 or px.dtype != np.uint8:
            raise ValueError(f"candidate {im.id!r}: pixels must be (H, W, 3) uint8 RGB, got "
                             f"{getattr(px, 'shape', None)} {getattr(px, 'dtype', type(px).__name__)}")
        if min(px.shape[:2]) < MIN_SIDE:
            raise ValueError(f"candidate {im.id!r}: image of {px.shape[1]}x{px.shape[0]} px is too small to judge")


def _title_mismatch(verdict, shares, p_idx) -> Finding:
    """The title names a colour no image shows: the sentence names the title's word and what the
    primary (else the first judged image) shows."""
    from stage1 import colour

    i = p_idx if p_idx is not None and shares[p_idx] is not None else \
        next(j for j, ok in enumerate(verdict.agree) if ok is False)
    said = verdict.said
    score = 1.0 - max(s for s in verdict.scores if s is not None)
    sentence = f"{rules.feedback('title_mismatch', detail=said)}: the product in {rules.image_name(i)} is " \
               f"{colour.describe(shares[i])}"
    return Finding("title_mismatch", score, None, "check:title_colour", sentence)


def _union(boxes):
    b = np.asarray(boxes, np.float32)
    return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


def _scale_box(box, s: float) -> tuple[int, int, int, int]:
    """A box in decoded pixels -> the original image's pixels (CandidateImage.scale)."""
    return tuple(int(round(float(v) * s)) for v in box)


def _region(box, im: CandidateImage) -> str:
    return rules.region_name(box, *im.orig_size) if box else ""


def _sentence(rule: str, index: int, box, im: CandidateImage, kind: str | None = None) -> str:
    if rule == "other":
        return f"{rules.image_name(index)} breaks a rule not in the catalogue"
    # a kind the rule does not know (a check's detail such as a colour word) gets its generic text
    return rules.feedback(rule, image=index, region=_region(box, im), kind=kind)


def load(path: str | Path, config: Stage1Config | None = None) -> LearnedStage1:
    return LearnedStage1(path, config)
