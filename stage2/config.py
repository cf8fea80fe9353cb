"""Stage 2 (MUIsC) inference settings."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stage2Config:
    # Longest feedback sentence generated as the explanation of a rejection, in tokens.
    max_feedback_tokens: int = 24
    # With explain=True, a sequence whose p_qualified is below this never gets the qualified
    # feedback "yes": it gets the most likely rejection sentence instead (the explanation).
    explain_below: float = 0.5
    # With explain=True, write the sentence for every scored sequence, or only for the one with
    # the highest p_qualified (the one the pipeline keeps; the response's alternatives carry no
    # feedback): a request's 4 candidates then cost one explanation, not four.
    explain_all: bool = False
    # ONNX Runtime threads for scoring a request's sequences (4 sequences: 26 ms on 1 thread,
    # 15 ms on 2, `agpis bench stage2`); its threads do not spin, so concurrent requests share
    # the cores without stalling each other.
    onnx_threads: int = 2
