"""PLACEHOLDER stage 1: a first version that lets the service run before the learned models
(issue 4) land. It says what it is in its version string; nothing about it is learned.

p_primary is the whiteness of the image border (the primary must be on white); nothing is
flagged non-compliant and no duplicates are looked for.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from stage1.config import Stage1Config
from stage1.types import CandidateImage, CandidateReport, Stage1Result


class PlaceholderStage1:
    version = "stage1-placeholder-0 (PLACEHOLDER: border whiteness only, no learned models)"

    def __init__(self, config: Stage1Config | None = None):
        self.config = config or Stage1Config()

    def run(self, images: list[CandidateImage], k: int,
            check_deadline: Callable[[], None] | None = None, title: str = "") -> Stage1Result:
        t0 = time.perf_counter()
        reports = [CandidateReport(im.id, _border_whiteness(im.pixels), 0.0) for im in images]
        best = max(reports, key=lambda r: r.p_primary, default=None)
        timings = {"placeholder": (time.perf_counter() - t0) * 1000}
        if best is None or best.p_primary <= self.config.primary_threshold:
            return Stage1Result(reports, [], [], None, [], "no_primary", timings)
        rest = [r.id for r in reports if r.id != best.id]
        if len(rest) + 1 < k:
            return Stage1Result(reports, [], [], best.id, [], "too_few_images", timings)
        return Stage1Result(reports, [], [], best.id, [[best.id, *rest[: k - 1]]], None, timings)


def _border_whiteness(pixels: np.ndarray) -> float:
    """Share of border pixels that are near white (all channels >= 235)."""
    b = max(1, min(pixels.shape[:2]) // 20)
    border = np.concatenate([pixels[:b].reshape(-1, 3), pixels[-b:].reshape(-1, 3),
                             pixels[:, :b].reshape(-1, 3), pixels[:, -b:].reshape(-1, 3)])
    return float((border.min(axis=1) >= 235).mean())
