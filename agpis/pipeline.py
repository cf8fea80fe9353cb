"""The two stages put together (paper Fig. 2): candidate images + title -> a Decision.

Pure domain code: no gRPC and no Redis here. The service (agpis/service.py) adapts requests to
`Pipeline.run` and adds the review queue; `agpis generate` and the Python API call it directly:

    from agpis import Pipeline
    decision = Pipeline.load("default").generate("Red running shoe", ["a.jpg", "b.jpg", "c.jpg"])
    print(decision.to_json())
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from agpis import images as images_mod
from agpis import rules
from agpis.config import Config
from agpis.version import code_version
from stage1.types import MIN_SIDE, CandidateImage, CandidateReport, DuplicatePair, Removal, Stage1, Stage1Result
from stage2.types import SequenceScore, Stage2

log = logging.getLogger("agpis.pipeline")

QUEUED, REJECTED, TERMINATED = "QUEUED", "REJECTED", "TERMINATED"


class DeadlineExceeded(Exception):
    """The caller's time ran out; raised between steps by `check_deadline`."""


class PipelineError(ValueError):
    """A request the pipeline cannot work on (empty title, duplicate ids, ...)."""


@dataclass
class ReviewInfo:
    state: str = "NOT_SENT"  # NOT_SENT | ENQUEUED | ALREADY_ENQUEUED | PENDING
    entry_id: str = ""
    queue: str = ""


@dataclass
class Decision:
    product_id: str
    status: str  # QUEUED | REJECTED | TERMINATED
    p_qualified: float
    threshold: float
    sequence: list[str]
    reports: list[CandidateReport]
    duplicates: list[DuplicatePair]
    removed: list[Removal]
    terminated_reason: str
    predicted_rule: str
    feedback: str
    model_versions: dict[str, str]
    timings_ms: dict[str, float]
    alternatives: list[SequenceScore] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (width, height)
    review: ReviewInfo = field(default_factory=ReviewInfo)
    explain: bool = True
    # The uncertain band (stage2.novelty): how far the kept sequence's images are from MUIsC's
    # training images (-1: not measured), and whether a rejection was turned into a review
    # because of it: stage 2's word alone does not reject what it has never seen.
    novelty: float = -1.0
    uncertain: bool = False

    @property
    def sequence_hash(self) -> str:
        """Identifies (product, sequence) for the queue's idempotency."""
        return hashlib.sha256(json.dumps([self.product_id, self.sequence]).encode()).hexdigest()[:16]

    def to_proto(self):
        from agpis.convert import decision_to_proto

        return decision_to_proto(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the gRPC response (same field names), as plain Python objects."""
        from google.protobuf import json_format

        return json_format.MessageToDict(self.to_proto(), preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


ImageInput = str | os.PathLike | bytes | CandidateImage | tuple[str, Any]


class Pipeline:
    """Stage 1 then stage 2 on one product. Thread-safe: the service shares one instance."""

    def __init__(self, stage1: Stage1, stage2: Stage2, config: Config, version: str):
        self.stage1, self.stage2, self.config, self.version = stage1, stage2, config, version
        self._decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        self._slots = _Slots(config.pipeline.parallel_runs)

    @property
    def model_versions(self) -> dict[str, str]:
        return {"model": self.version, "stage1": self.stage1.version, "stage2": self.stage2.version,
                "code": code_version()}

    @classmethod
    def load(cls, name: str | os.PathLike | None = None, config: Config | None = None) -> "Pipeline":
        """Load a model version: a name under weights/ ("default") or a version directory."""
        from agpis.models import load_version

        config = config or Config()
        name = name or config.pipeline.model
        _set_threads(config.pipeline.threads)
        stage1, stage2, version = load_version(name, config)
        return cls(stage1, stage2, config, version)

    def warmup(self) -> None:
        """One full run on a made-up product, so the first real call is not the slow one."""
        from agpis.samples import warmup_images

        self.run("warmup", "warm-up product", warmup_images(), explain=True)

    # -- the Python API ---------------------------------------------------------------------
    def generate(self, title: str, images: Sequence[ImageInput], product_id: str | None = None,
                 category: str = "", k: int | None = None, threshold: float | None = None,
                 explain: bool = True) -> Decision:
        """Decide on one product from local files, encoded bytes or decoded images.

        `images` items: a path, encoded bytes, a CandidateImage, or an `(id, path-or-bytes)`
        pair. Ids default to the file name (without extension) or the position.
        """
        decoded = self.decode_inputs(images)
        pid = product_id or hashlib.sha256(title.encode()).hexdigest()[:12]
        return self.run(pid, title, decoded, category=category, k=k, threshold=threshold, explain=explain)

    def decode_inputs(self, images: Sequence[ImageInput]) -> list[CandidateImage]:
        loaders = []
        for i, item in enumerate(images):
            cid, src = item if isinstance(item, tuple) else (None, item)
            if isinstance(src, CandidateImage):
                loaders.append(lambda src=src: src)
                continue
            if isinstance(src, (str, os.PathLike)):
                path = Path(src)
                cid = cid or path.stem
                uri = path.resolve().as_uri()
                loaders.append(lambda cid=cid, path=path, uri=uri: images_mod.decode(
                    cid, _read_local(cid, path), self.config.images, uri))
            elif isinstance(src, (bytes, bytearray)):
                cid = cid or str(i)
                loaders.append(lambda cid=cid, src=src: images_mod.decode(cid, bytes(src), self.config.images))
            else:
                raise PipelineError(f"image {i}: expected a path, bytes or CandidateImage, got {type(src).__name__}")
        return list(self._decoder.map(lambda f: f(), loaders))

    # -- the core -----------------------------------------------------------------------------
    def backbone_many(self, products: list[list[CandidateImage]]) -> list[Any] | None:
        """Stage 1's backbone for the images of several products in one forward (`agpis batch`),
        one item per product to pass to `run(features=)`; None when this stage 1 has no batched
        path (the placeholder): each product then runs its own."""
        many = getattr(self.stage1, "backbone_many", None)
        return many(products) if many is not None else None

    def run(self, product_id: str, title: str, images: list[CandidateImage], category: str = "",
            k: int | None = None, threshold: float | None = None, explain: bool = True,
            check_deadline: Callable[[], None] | None = None,
            timings: dict[str, float] | None = None, features: Any = None) -> Decision:
        """Decide on one product. At most `pipeline.parallel_runs` products are computed at once;
        a request waits for a slot (its deadline still checked) and the wait is in its timings.
        `features`: this product's item of `backbone_many` (the decision is the same as without)."""
        check = check_deadline or (lambda: None)
        t0 = time.perf_counter()
        self._slots.acquire(check)
        try:
            waited = _ms(t0)
            decision = self._run(product_id, title, images, category, k, threshold, explain, check_deadline, timings,
                                 features)
        finally:
            self._slots.release()
        decision.timings_ms["wait"] = waited
        decision.timings_ms["total"] = decision.timings_ms.get("total", 0.0) + waited
        return decision

    def _run(self, product_id: str, title: str, images: list[CandidateImage], category: str = "",
             k: int | None = None, threshold: float | None = None, explain: bool = True,
             check_deadline: Callable[[], None] | None = None,
             timings: dict[str, float] | None = None, features: Any = None) -> Decision:
        t_start = time.perf_counter()
        timings = dict(timings or {})
        check = check_deadline or (lambda: None)
        k = k or self.config.pipeline.sequence_length
        threshold = self.config.pipeline.threshold if threshold is None else float(threshold)
        _validate(title, images, k, threshold)

        t0 = time.perf_counter()
        # `features` only when given: a stage 1 without a batched path need not know the argument
        extra = {} if features is None else {"features": features}
        s1: Stage1Result = self.stage1.run(images, k, check, title=title, **extra)
        timings["stage1"] = _ms(t0)
        for step, ms in s1.timings_ms.items():
            timings[f"stage1.{step}"] = ms
        check()

        base = dict(product_id=product_id, threshold=threshold, reports=s1.reports, duplicates=s1.duplicates,
                    removed=s1.removed, model_versions=self.model_versions, timings_ms=timings,
                    sizes={im.id: im.orig_size for im in images}, explain=explain)
        if s1.terminated_reason:
            timings["total"] = timings.get("decode", 0.0) + _ms(t_start)
            return Decision(status=TERMINATED, p_qualified=0.0, sequence=[], terminated_reason=s1.terminated_reason,
                            predicted_rule="", feedback=rules.TERMINATION_REASONS[s1.terminated_reason], **base)

        by_id = {im.id: im for im in images}
        t0 = time.perf_counter()
        # Score every proposed sequence without explanations (the fast path), then generate the
        # feedback sentence (~30 ms, stage2.explain) only for the sequence kept, and only when
        # it is a rejection or explanations were asked for: a queued sequence needs none.
        explain_all = explain and self.config.stage2.explain_all
        scores = self.stage2.score(title, [[by_id[i] for i in seq] for seq in s1.sequences], s1.features,
                                   explain_all)
        check()
        # Multi-candidate choice (the paper's future work): the sequence reviewers are most
        # likely to accept, among those stage 1 proposed.
        best = max(scores, key=lambda s: s.p_qualified)
        status = QUEUED if best.p_qualified > threshold else REJECTED
        if s1.rejection is not None:
            # stage 1's explainable check rejects the listing whatever stage 2 scored: its
            # sentence is the feedback, and the listing is not "uncertain" (the check is sure)
            status = REJECTED
            best = dataclasses.replace(best, rule=s1.rejection.rule, feedback=s1.rejection.message)
            scores = [best if s.ids == best.ids else s for s in scores]
        elif not explain_all and (status == REJECTED or explain):
            said = self.stage2.score(title, [[by_id[i] for i in best.ids]], s1.features, True)[0]
            feedback = said.feedback
            if status == REJECTED and feedback == rules.feedback(rules.QUALIFIED):
                # judged above stage2.explain_below yet under the caller's threshold: a rejection
                # still says why, in the catalogue's words for the likeliest rule
                feedback = rules.feedback(best.rule)
            explained = dataclasses.replace(best, feedback=feedback)
            scores = [explained if s is best else s for s in scores]
            best = explained
        novelty, uncertain = -1.0, False
        measured = self.stage2.novelty([by_id[i] for i in best.ids], s1.features) \
            if hasattr(self.stage2, "novelty") else None
        if measured is not None:
            novelty = measured[0]
            uncertain = status == REJECTED and novelty > measured[1] and s1.rejection is None
        timings["stage2"] = _ms(t0)
        timings["total"] = timings.get("decode", 0.0) + _ms(t_start)
        return Decision(status=QUEUED if uncertain else status, p_qualified=best.p_qualified, sequence=list(best.ids),
                        terminated_reason="", predicted_rule=best.rule,
                        feedback=best.feedback if status == REJECTED or explain else "",
                        alternatives=sorted(scores, key=lambda s: -s.p_qualified), novelty=novelty,
                        uncertain=uncertain, **base)


class _Slots:
    """At most `n` holders at once; waiters are served in arrival order (a semaphore polled with
    timeouts lets late arrivals overtake, and the p99 at concurrency 8 tripled)."""

    def __init__(self, n: int):
        self.n, self.busy = max(1, n), 0
        self.cv = threading.Condition()
        self.waiting: collections.deque = collections.deque()

    def acquire(self, check: Callable[[], None]) -> None:
        """Wait for a slot; `check` runs every 50 ms and may raise (a deadline): the place is given up."""
        me = object()
        with self.cv:
            self.waiting.append(me)
            try:
                while self.waiting[0] is not me or self.busy >= self.n:
                    self.cv.wait(0.05)
                    check()
            except BaseException:
                self.waiting.remove(me)
                self.cv.notify_all()
                raise
            self.waiting.popleft()
            self.busy += 1
            self.cv.notify_all()  # the next in line may fit too

    def release(self) -> None:
        with self.cv:
            self.busy -= 1
            self.cv.notify_all()


def _set_threads(n: int) -> None:
    """Intra-op threads for the models (FACTS.md: 2 threads on 2 cores, OMP_WAIT_POLICY=PASSIVE)."""
    try:
        import torch
    except ImportError:
        return
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _validate(title: str, images: list[CandidateImage], k: int, threshold: float) -> None:
    if not title or not title.strip():
        raise PipelineError("title is empty")
    if len(title) > 1000:
        raise PipelineError(f"title is {len(title)} characters; the limit is 1000")
    if not images:
        raise PipelineError("no candidate images")
    ids = [im.id for im in images]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise PipelineError(f"candidate ids must be unique; repeated: {', '.join(dup)}")
    if any(not i for i in ids):
        raise PipelineError("every candidate needs a non-empty id")
    for im in images:
        if min(im.pixels.shape[:2]) < MIN_SIDE:  # images.decode refuses these already; this is for the Python API
            h, w = im.pixels.shape[:2]
            raise PipelineError(f"candidate {im.id!r}: image of {w}x{h} px is too small to judge "
                                f"(at least {MIN_SIDE} px a side)")
    if not 1 <= k <= 10:
        raise PipelineError(f"sequence_length must be between 1 and 10, got {k}")
    if not 0.0 <= threshold <= 1.0:
        raise PipelineError(f"threshold must be in [0, 1], got {threshold}")


def _read_local(cid: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise images_mod.ImageError(cid, f"cannot read {path}: {e.strerror or e}") from None


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0

