"""Stage 1's inputs and outputs (paper §3.3). Pure data: no gRPC, no Redis."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in the ORIGINAL image's pixels
# Smaller images cannot be judged (the checks and the backbone need a few pixels a side).
MIN_SIDE = 8


@dataclass
class CandidateImage:
    id: str
    pixels: np.ndarray  # (H, W, 3) uint8 RGB; may be a reduced-size decode of the original
    orig_size: tuple[int, int]  # (width, height) of the image as uploaded
    uri: str | None = None  # where a reviewer can see it (file://, https://, or the image store)

    @property
    def scale(self) -> float:
        """Multiply a coordinate in `pixels` by this to get the original image's coordinate."""
        return self.orig_size[0] / self.pixels.shape[1]


@dataclass
class Finding:
    rule: str  # a rule id from agpis.rules
    score: float  # in [0, 1]; higher = more certainly a violation
    box: Box | None = None
    source: str = ""  # which check or model produced it, e.g. "check:text_regions"
    message: str = ""  # one sentence a reviewer can read


@dataclass
class CandidateReport:
    id: str
    p_primary: float
    p_noncompliant: float
    findings: list[Finding] = field(default_factory=list)


@dataclass
class BoxMatch:
    box_a: Box
    box_b: Box
    similarity: float


@dataclass
class DuplicatePair:
    id_a: str
    id_b: str
    score: float
    matches: list[BoxMatch] = field(default_factory=list)
    # Which of the two stage 1 dropped, for this pair or (when it was gone already) for another
    # reason that `Stage1Result.removed` gives; "" if neither.
    removed_id: str = ""


@dataclass
class Removal:
    id: str
    rule: str  # a rule id from agpis.rules
    reason: str  # a sentence


@dataclass
class Stage1Result:
    reports: list[CandidateReport]
    duplicates: list[DuplicatePair]
    removed: list[Removal]
    primary_id: str | None
    # Candidate sequences (ids, primary first), best first, for stage 2 to choose from.
    sequences: list[list[str]]
    terminated_reason: str | None  # a key of agpis.rules.TERMINATION_REASONS, or None
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Per-image features computed once by the shared backbone, keyed by candidate id, opaque to
    # the pipeline; stage 2 reuses them when its image encoder is the same backbone.
    features: dict[str, Any] = field(default_factory=dict)
    # A decisive sequence-level finding of stage 1's own checks (the title names a colour no
    # image shows): the listing is rejected for it whatever stage 2 scores.
    rejection: Finding | None = None


class Stage1(Protocol):
    version: str

    def run(self, images: list[CandidateImage], k: int,
            check_deadline: Callable[[], None] | None = None, title: str = "") -> Stage1Result:
        """Decide the primary, drop non-compliant and duplicated images, propose sequences.
        `title` (the product's) is checked against the images' colours.

        `check_deadline()` raises when the caller's time is up; call it between steps.
        """
        ...
