"""`agpis data stats`: what is in a dataset, by split, label, rule category and style."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from agpis import rules
from agpis.data import format as fmt


def stats(records: list[fmt.Record]) -> dict:
    by_split = Counter(r.split or "-" for r in records)
    by_label = Counter(r.label for r in records)
    by_cat = Counter(rules.category_of(r.label) if r.label != rules.QUALIFIED else "qualified" for r in records)
    by_style = Counter(f"{r.split or '-'}/{r.style_split or '-'}" for r in records)
    by_source: dict[str, Counter] = {}  # where a record's pixels came from x label
    for r in records:
        by_source.setdefault(source_of(r), Counter())[r.label] += 1
    products = {r.product_id for r in records}
    groups = Counter()
    for split in by_split:
        groups[split] = len({r.group or r.product_id for r in records if (r.split or "-") == split})
    n_cand = [len(r.candidates) for r in records]
    meta_rules = Counter()
    primary_ok = total_meta = 0
    seen = set()
    for r in records:
        if r.candidate_meta is None or r.product_id in seen:
            continue
        seen.add(r.product_id)
        for m in r.candidate_meta:
            total_meta += 1
            primary_ok += m.primary_ok
            for x in m.rules or ["(compliant)"]:
                meta_rules[x] += 1
    return {"records": len(records), "products": len(products), "groups_by_split": dict(groups),
            "by_split": dict(by_split), "by_category": dict(by_cat), "by_label": dict(by_label),
            "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
            "by_style": dict(by_style), "candidates_mean": sum(n_cand) / max(1, len(n_cand)),
            "candidate_images": total_meta, "candidates_primary_ok": primary_ok,
            "candidate_rules": dict(meta_rules), "leakage": fmt.check_leakage(records)}


def format_stats(s: dict, name: str = "") -> str:
    n = max(1, s["records"])
    out = [f"{name}: {s['records']} records, {s['products']} products, {s['candidates_mean']:.1f} candidates each",
           f"  groups by split: {s['groups_by_split']}", f"  records by split: {s['by_split']}",
           f"  style split: {s['by_style']}", "  by category:"]
    out += [f"    {k:<10} {v:>7}  {v / n:6.1%}" for k, v in sorted(s["by_category"].items(), key=lambda kv: -kv[1])]
    out.append("  by label:")
    out += [f"    {k:<30} {v:>7}  {v / n:6.1%}" for k, v in sorted(s["by_label"].items(), key=lambda kv: -kv[1])]
    out.append("  by source (records; labels):")
    for src, labels in s.get("by_source", {}).items():
        m = sum(labels.values())
        top = ", ".join(f"{k} {v}" for k, v in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(f"    {src:<12} {m:>7}  {m / n:6.1%}  {top}")
    if s["candidate_images"]:
        out.append(f"  distinct candidate images (per product): {s['candidate_images']}, "
                   f"primary_ok {s['candidates_primary_ok']}")
        out += [f"    {k:<30} {v:>7}" for k, v in sorted(s["candidate_rules"].items(), key=lambda kv: -kv[1])]
    out.append("  split leakage: " + ("none" if not s["leakage"] else "; ".join(s["leakage"][:5])))
    return "\n".join(out)


def source_of(r: fmt.Record) -> str:
    """The source a record was made from: its group's prefix ("magento-MH01" -> "magento"), or
    "review" for reviewers' verdicts."""
    if r.source == "review":
        return "review"
    return (r.group or r.product_id).split("-", 1)[0]


def load_any(path: str | Path) -> list[fmt.Record]:
    """A dataset directory (all splits) or one JSONL file."""
    path = Path(path)
    return fmt.load_dataset(path) if path.is_dir() else fmt.load_records(path)
