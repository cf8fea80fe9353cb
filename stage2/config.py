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
