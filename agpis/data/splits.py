"""Product-level splits (paper §4.1: no SKU in two splits).

A split is a pure function of the group key (the real product a listing was made from), so
every builder, run and machine puts a product in the same split, and two listings made from
the same photos can never land on both sides.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

DEFAULT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for any key (Python's hash() changes between runs)."""
    h = hashlib.sha1("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(groups: dict[str, str], fractions=DEFAULT_FRACTIONS, salt: str = "agpis-split-v1"
                  ) -> dict[str, str]:
    """group -> split, stratified by stratum (groups maps group -> stratum, e.g. a coarse category).

    Within each stratum, groups are ordered by a salted hash and cut by the fractions, so every
    split gets some of every stratum once the stratum has enough groups; a stratum of one or two
    groups goes to train first (val and test only take from strata big enough to share).
    """
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for g, s in groups.items():
        by_stratum[s].append(g)
    out: dict[str, str] = {}
    for members in by_stratum.values():
        members.sort(key=lambda g: unit_hash(salt, g))
        n = len(members)
        # Cumulative cut points, rounded; the first split (train) always gets at least one.
        cuts, acc = [], 0.0
        for _, frac in fractions:
            acc += frac
            cuts.append(round(acc * n))
        cuts[0] = max(cuts[0], 1)
        start = 0
        for (name, _), end in zip(fractions, cuts):
            for g in members[start:max(end, start)]:
                out[g] = name
            start = max(end, start)
        for g in members[start:]:
            out[g] = fractions[0][0]
    return out


def style_split_for(product_id: str, split: str, heldout_fraction: float = 0.5) -> str:
    """Which style pool a product's violations are drawn from.

    Training products only ever see training styles; a share of validation and test products
    use the held-out styles, so evaluation can compare seen and unseen styles on the same
    products' split.
    """
    if split == "train":
        return "train"
    return "heldout" if unit_hash("style", product_id) < heldout_fraction else "train"
