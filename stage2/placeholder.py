"""PLACEHOLDER stage 2: a first version that lets the service run before MUIsC (issue 5)
lands. It says what it is in its version string; nothing about it is learned.

p_qualified is a fixed 0.5 for every sequence, so every sequence that survives stage 1 is sent
to review, as in the paper's stage-1-only deployment (§5.1).
"""
from __future__ import annotations

from agpis import rules
from stage1.types import CandidateImage
from stage2.config import Stage2Config
from stage2.types import SequenceScore


class PlaceholderStage2:
    version = "stage2-placeholder-0 (PLACEHOLDER: constant p_qualified=0.5, no MUIsC)"

    def __init__(self, config: Stage2Config | None = None):
        self.config = config or Stage2Config()

    def score(self, title: str, sequences: list[list[CandidateImage]], features=None,
              explain: bool = True) -> list[SequenceScore]:
        return [SequenceScore([im.id for im in seq], 0.5, rules.OTHER,
                              {rules.QUALIFIED: 0.5, rules.OTHER: 0.5},
                              "placeholder model: no explanation available" if explain else "")
                for seq in sequences]
