"""Target sequences (paper §3.3, last paragraph): the primary first, then K-1 of the images that
survived stage 1. The paper picks the K-1 at random; here every choice is enumerated and the
best few are proposed for stage 2 to choose from, ranked by how likely each image is compliant
and how different the chosen images are from each other. Within a sequence the images after
the primary keep the seller's upload order (often meaningful: front, side, back, detail)."""
from __future__ import annotations

import itertools
import math

MAX_COMBINATIONS = 5000  # enough for 10 candidates and any K; beyond, the first ones in order


def build_sequences(primary: str, others: list[str], k: int, max_sequences: int,
                    p_noncompliant: dict[str, float], similarity: dict[frozenset, float] | None = None
                    ) -> list[list[str]]:
    """primary + K-1 of `others` (in upload order) -> up to `max_sequences` sequences, best first.

    Score of a choice: sum of log(1 - p_nc) of its images (compliance) minus the largest pairwise
    duplicate score among all its images (diversity: near-duplicates below the removal threshold
    still make a sequence worse)."""
    if k < 1:
        raise ValueError(f"sequence length must be >= 1, got {k}")
    if max_sequences < 1:
        raise ValueError(f"max_sequences must be >= 1, got {max_sequences}")
    if len(others) < k - 1:
        return []
    similarity = similarity or {}
    scored = []
    for combo in itertools.islice(itertools.combinations(others, k - 1), MAX_COMBINATIONS):
        ids = [primary, *combo]
        compliance = sum(math.log(max(1e-6, 1.0 - p_noncompliant.get(i, 0.0))) for i in combo)
        overlap = max((similarity.get(frozenset(p), 0.0) for p in itertools.combinations(ids, 2)), default=0.0)
        scored.append((compliance - overlap, ids))
    scored.sort(key=lambda t: -t[0])  # stable: ties keep upload order
    return [ids for _, ids in scored[:max_sequences]]
