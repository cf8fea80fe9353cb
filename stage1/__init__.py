"""Stage 1 (paper §3.3): primary image, non-compliant and duplicated images, candidate sequences.

`import stage1` stays cheap: the models load lazily through `load`.
"""
from __future__ import annotations

from pathlib import Path


def load(path: Path, config=None):
    """The learned stage 1 in a weights directory (weights/<version>/stage1), as the service
    loads it: `stage1.load(path, Stage1Config) -> Stage1`."""
    from stage1.model import LearnedStage1

    return LearnedStage1(path, config)
