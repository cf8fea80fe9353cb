"""Stage 1 settings: thresholds of the models and the explainable checks.

Every field is overridable through agpis' one configuration (file, AGPIS_STAGE1__<FIELD>, or
`--set stage1.<field>=...`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stage1Config:
    # The argmax of p_primary must exceed this, or stage 1 stops with `no_primary` (paper §3.3.1).
    primary_threshold: float = 0.5
    # Images with p_noncompliant above this are removed (paper §3.3.1).
    noncompliant_threshold: float = 0.5
    # A pair of images whose patch-match score exceeds this is a duplicate (paper §3.3.2).
    duplicate_threshold: float = 0.5
    # How many candidate sequences stage 1 proposes for stage 2 to rank.
    max_sequences: int = 4
