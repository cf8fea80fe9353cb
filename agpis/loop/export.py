"""Reviewers' verdicts as training data: the decisions stream -> AGPIS-data records.

Each verdict is stored once (the queue's atomic verdict), so each decision becomes exactly one
record with `source = "review"`, the reviewer's rule and feedback, the images by URI, and the
model version that proposed the sequence.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agpis.data.format import validate_record
from agpis.queue import ReviewQueue

_SPAN = re.compile(r"^(\d+)([dhm])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'90d', '12h', '30m' before now, or an ISO-8601 date/time."""
    now = now or datetime.now(timezone.utc)
    m = _SPAN.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: n})
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since expects 90d, 12h, 30m or an ISO date, got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def decision_to_record(d: dict) -> dict:
    p = d["payload"]
    candidates = [c for c in p.get("candidates", []) if c.get("uri")]
    index = {c["id"]: i for i, c in enumerate(candidates)}
    missing = [cid for cid in p.get("sequence", []) if cid not in index]
    if missing:
        raise ValueError(f"decision {d.get('decision_id')}: sequence images {missing} have no URI")
    return {
        "product_id": d["product_id"],
        "title": p.get("title", ""),
        "category": p.get("category", "") or "",
        "candidates": [c["uri"] for c in candidates],
        "sequence": [index[cid] for cid in p["sequence"]],
        "label": d["rule"],
        "feedback": d["feedback"],
        "source": "review",
        "reviewed_at": d["decided_at"],
        "model_version": p.get("model_versions", {}).get("model", ""),
    }


def export_reviews(queue: ReviewQueue, since: datetime, until: datetime | None = None) -> tuple[list[dict], list[str]]:
    """-> (valid records, problems). Streams ids are millisecond times, so the window is a range read."""
    start = f"{int(since.timestamp() * 1000)}-0"
    end = int(until.timestamp() * 1000) if until else None
    records, problems = [], []
    while True:
        batch = queue.decisions(start=start, count=1000)
        for d in batch:
            if end is not None and int(d["decision_id"].split("-")[0]) > end:
                return records, problems
            try:
                rec = decision_to_record(d)
            except (KeyError, ValueError) as e:
                problems.append(f"decision {d.get('decision_id')}: {e}")
                continue
            errors = validate_record(rec)
            if errors:
                problems.append(f"decision {d['decision_id']}: {'; '.join(errors)}")
            else:
                records.append(rec)
        if len(batch) < 1000:
            return records, problems
        start = "(" + batch[-1]["decision_id"]  # exclusive: the next page starts after the last one


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
