"""Made-up images for warming the models up at start-up (no files, no ../shared)."""
from __future__ import annotations

import numpy as np
import cv2

from stage1.types import CandidateImage


def warmup_images(n: int = 7, size: int = 400) -> list[CandidateImage]:
    """n simple product-like drawings: a shape on white, then on tinted backgrounds."""
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        bg = 255 if i == 0 else int(rng.integers(120, 250))
        img = np.full((size, size, 3), bg, np.uint8)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 4 + 10 * i), 15 * i, 0, 360, colour, -1)
        out.append(CandidateImage(f"warmup-{i}", img, (size * 2, size * 2)))
    return out
