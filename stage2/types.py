"""Stage 2's inputs and outputs (paper §3.4). Pure data: no gRPC, no Redis."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from stage1.types import CandidateImage


@dataclass
class SequenceScore:
    ids: list[str]  # the sequence scored, primary first
    p_qualified: float  # softmax(class logits)[qualified], the paper's p^t
    rule: str  # most likely class other than `qualified` (the explanation of a rejection)
    rule_probs: dict[str, float] = field(default_factory=dict)
    feedback: str = ""  # generated sentence (the paper's NLG head), "" when not asked for


class Stage2(Protocol):
    version: str

    def score(self, title: str, sequences: list[list[CandidateImage]],
              features: dict[str, Any] | None = None, explain: bool = True) -> list[SequenceScore]:
        """Score each sequence with the title; `features` are stage 1's per-image features."""
        ...
