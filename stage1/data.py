"""Stage 1's view of AGPIS-data: one row per candidate image (not per sequence).

Several records (sequences) share a listing and its candidates; stage 1 learns from each
listing's candidates once, with their per-candidate truth (`candidate_meta`, docs/data.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agpis import rules

SINGLE_RULES: tuple[str, ...] = tuple(r.id for r in rules.rules_in("single"))


@dataclass
class Candidate:
    path: Path
    product_id: str
    group: str
    split: str
    style_split: str
    index: int  # candidate index within its listing
    view: str
    rules: list[str]  # single-image rule ids it breaks ([] = compliant)
    primary_ok: bool
    dup_group: int
    variant: str
    box: list[float] | None
    size: tuple[int, int]
    title: str = ""  # the listing's title (of a record not labelled title_mismatch), for the colour check


def listings(directory: str | Path, split: str | None = None) -> dict[str, list[Candidate]]:
    """product_id -> its candidates (each listing once), from a dataset directory."""
    from agpis.data.format import load_dataset

    out: dict[str, list[Candidate]] = {}
    titles: dict[str, str] = {}
    for r in load_dataset(directory, split=split):
        if r.label != "title_mismatch":
            titles.setdefault(r.product_id, r.title)
        if r.product_id in out:
            continue
        if not r.candidate_meta:
            raise ValueError(f"{directory}: record of {r.product_id} has no candidate_meta; stage 1 needs it")
        cands = []
        for i, m in enumerate(r.candidate_meta):
            unknown = set(m.rules) - set(SINGLE_RULES)
            if unknown:
                raise ValueError(f"{r.product_id} candidate {i}: not single-image rules: {sorted(unknown)}")
            path = r.path(i)
            if not isinstance(path, Path):
                raise ValueError(f"{r.product_id} candidate {i}: {path!r} is not a local file")
            cands.append(Candidate(path, r.product_id, r.group or r.product_id, r.split or "", r.style_split or "",
                                   i, m.view, list(m.rules), bool(m.primary_ok), int(m.dup_group), m.variant,
                                   m.box, tuple(m.size)))
        out[r.product_id] = cands
    for pid, cands in out.items():
        for c in cands:
            c.title = titles.get(pid, "")
    return out
