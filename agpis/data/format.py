"""AGPIS-data records: one JSON object per line (DESIGN.md, "Data contract").

Required fields are DESIGN.md's; the optional ones (`split`, `style_split`, `group`,
`violation`, `candidate_meta`) carry what the synthetic builder knows and reviewers do not
write: per-candidate truth for stage 1, and the splits. docs/data.md documents every field.

Images are referenced, never inlined: a candidate is a URI (`file://`, `https://`, an image
store key) or a path relative to the JSONL file's directory.

`validate_record` is pure and returns a list of messages; `validate_file` adds line numbers
and the file-level checks (no product or group in two splits).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from agpis import rules

SPLITS = ("train", "val", "test")
STYLE_SPLITS = ("train", "heldout")  # violation styles seen in training / kept for evaluation
SOURCES = ("review", "synthetic")
# What a candidate shows. `front` is the main view; `pack` several units together; `label` a
# text-heavy image (ingredients, size chart); `scene` the product staged in a setting;
# `lifestyle` a real photo in use or in a shop.
VIEWS = ("front", "side", "back", "top", "bottom", "angle", "detail", "pack", "label", "scene",
         "lifestyle", "collage")
# Whether a candidate shows the listed product: `same`, another colour/variant of it, or
# another product of the same category.
VARIANTS = ("same", "variant", "other_product")
SINGLE_RULES = tuple(r.id for r in rules.rules_in("single"))

REQUIRED = {
    "product_id": str, "title": str, "category": str, "candidates": list, "sequence": list,
    "label": str, "feedback": str, "source": str, "reviewed_at": str, "model_version": str,
}
OPTIONAL = {"split": str, "style_split": str, "group": str, "violation": dict, "candidate_meta": list}
META_REQUIRED = {"view": str, "rules": list, "primary_ok": bool, "dup_group": int, "box": (list, type(None)),
                 "size": list, "variant": str}
META_OPTIONAL = {"source": str}
VIOLATION_KEYS = {"images": list, "region": str, "detail": str, "candidates": list}


class ValidationError(ValueError):
    """A file that is not valid AGPIS-data; `errors` holds every message with its line number."""

    def __init__(self, path: str | Path, errors: list[str]):
        self.path, self.errors = str(path), errors
        shown = "\n".join(errors[:20]) + (f"\n... and {len(errors) - 20} more" if len(errors) > 20 else "")
        super().__init__(f"{path}: {len(errors)} error(s)\n{shown}")


@dataclass
class CandidateMeta:
    """Per-candidate truth (the synthetic builder knows it; stage 1's models learn from it)."""
    view: str  # one of VIEWS
    rules: list[str]  # single-image rule ids this image breaks by itself; [] if compliant
    primary_ok: bool  # acceptable as the primary: whole product, white background, good fill
    dup_group: int  # candidates with the same value show the same content (near-duplicates)
    box: list[float] | None  # (x0, y0, x1, y1) pixels of the violation, None if none/whole image
    size: list[int]  # (width, height) of the image file
    variant: str = "same"  # one of VARIANTS
    source: str = ""  # where the pixels came from, e.g. "grocery-iconic", "procedural"


@dataclass
class Record:
    product_id: str
    title: str
    category: str
    candidates: list[str]
    sequence: list[int]  # indices into candidates, primary first
    label: str  # "qualified" or a rule id
    feedback: str  # "yes" when qualified
    source: str = "synthetic"
    reviewed_at: str = ""
    model_version: str = ""
    split: str | None = None
    style_split: str | None = None
    group: str | None = None  # the real product a listing was made from; splits never share one
    # Where the violation is: {"images": [1-based positions in the sequence], "candidates":
    # [candidate indices], "region": "across the top", "detail": "red"}.
    violation: dict[str, Any] | None = None
    candidate_meta: list[CandidateMeta] | None = None
    base_dir: Path | None = field(default=None, repr=False, compare=False)  # for relative URIs

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: Path | None = None) -> "Record":
        d = dict(d)
        meta = d.pop("candidate_meta", None)
        if meta is not None:
            meta = [CandidateMeta(**m) for m in meta]
        return cls(**d, candidate_meta=meta, base_dir=base_dir)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("base_dir")
        return {k: v for k, v in d.items() if v is not None or k in REQUIRED}

    def path(self, i: int) -> Path | str:
        """Where candidate i can be read: a local Path for relative and file:// URIs, else the URI."""
        uri = self.candidates[i]
        if uri.startswith("file://"):
            return Path(uri[len("file://"):])
        if "://" in uri:
            return uri
        return (self.base_dir or Path(".")) / uri

    def sequence_paths(self) -> list[Path | str]:
        return [self.path(i) for i in self.sequence]


# --- validation ---------------------------------------------------------------------------------

def _type_errors(obj: dict, spec: dict, where: str) -> list[str]:
    errors = []
    for key, typ in spec.items():
        if key in obj and not isinstance(obj[key], typ) or (typ is int and isinstance(obj.get(key), bool)):
            name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            errors.append(f"{where}{key!r} must be {name}, got {type(obj[key]).__name__}")
    return errors


def _validate_meta(meta: Any, n_candidates: int) -> list[str]:
    if len(meta) != n_candidates:
        return [f"'candidate_meta' has {len(meta)} entries for {n_candidates} candidates"]
    errors = []
    for i, m in enumerate(meta):
        where = f"candidate_meta[{i}]: "
        if not isinstance(m, dict):
            errors.append(f"{where}must be an object")
            continue
        missing = [k for k in META_REQUIRED if k not in m]
        unknown = [k for k in m if k not in META_REQUIRED and k not in META_OPTIONAL]
        if missing:
            errors.append(f"{where}missing {', '.join(missing)}")
        if unknown:
            errors.append(f"{where}unknown field(s) {', '.join(unknown)}")
        errors += _type_errors(m, {**META_REQUIRED, **META_OPTIONAL}, where)
        if errors:
            continue
        if m["view"] not in VIEWS:
            errors.append(f"{where}view {m['view']!r} is not one of {', '.join(VIEWS)}")
        if m["variant"] not in VARIANTS:
            errors.append(f"{where}variant {m['variant']!r} is not one of {', '.join(VARIANTS)}")
        bad = [r for r in m["rules"] if r not in SINGLE_RULES]
        if bad:
            errors.append(f"{where}rules {bad} are not single-image rule ids ({', '.join(SINGLE_RULES)})")
        size = m["size"]
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            errors.append(f"{where}size must be [width, height] of positive integers, got {size!r}")
            continue
        box = m["box"]
        if box is not None:
            if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
                errors.append(f"{where}box must be [x0, y0, x1, y1] numbers, got {box!r}")
            elif not (0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1]):
                errors.append(f"{where}box {box} is empty or outside the {size[0]}x{size[1]} image")
    return errors


def validate_record(obj: Any) -> list[str]:
    """Every problem with one decoded line (empty list: valid)."""
    if not isinstance(obj, dict):
        return [f"a record must be a JSON object, got {type(obj).__name__}"]
    missing = [k for k in REQUIRED if k not in obj]
    unknown = [k for k in obj if k not in REQUIRED and k not in OPTIONAL]
    errors = []
    if missing:
        errors.append(f"missing field(s) {', '.join(missing)}")
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)} (known: {', '.join([*REQUIRED, *OPTIONAL])})")
    errors += _type_errors(obj, {**REQUIRED, **OPTIONAL}, "")
    if errors:
        return errors
    if not obj["product_id"].strip():
        errors.append("'product_id' is empty")
    cands = obj["candidates"]
    if not cands or not all(isinstance(c, str) and c for c in cands):
        errors.append("'candidates' must be a non-empty list of URI strings")
    seq = obj["sequence"]
    if not seq or not all(isinstance(i, int) and not isinstance(i, bool) for i in seq):
        errors.append("'sequence' must be a non-empty list of integer indices")
    elif any(not 0 <= i < len(cands) for i in seq):
        errors.append(f"'sequence' {seq} has an index outside 0..{len(cands) - 1}")
    elif len(set(seq)) != len(seq):
        errors.append(f"'sequence' {seq} repeats an index")
    label = obj["label"]
    if not rules.is_known(label):
        errors.append(f"'label' {label!r} is not 'qualified' or a rule id ({', '.join(rules.CLASSES)})")
    if not obj["feedback"].strip():
        errors.append("'feedback' is empty")
    elif label == rules.QUALIFIED and obj["feedback"] != "yes":
        errors.append(f"a qualified record's feedback must be 'yes' (paper §3.4.3), got {obj['feedback']!r}")
    if obj["source"] not in SOURCES:
        errors.append(f"'source' {obj['source']!r} is not one of {', '.join(SOURCES)}")
    try:
        datetime.fromisoformat(obj["reviewed_at"])
    except ValueError:
        errors.append(f"'reviewed_at' {obj['reviewed_at']!r} is not an ISO-8601 time")
    if "split" in obj and obj["split"] not in SPLITS:
        errors.append(f"'split' {obj['split']!r} is not one of {', '.join(SPLITS)}")
    if "style_split" in obj and obj["style_split"] not in STYLE_SPLITS:
        errors.append(f"'style_split' {obj['style_split']!r} is not one of {', '.join(STYLE_SPLITS)}")
    if "violation" in obj:
        v = obj["violation"]
        unknown = [k for k in v if k not in VIOLATION_KEYS]
        if unknown:
            errors.append(f"'violation' has unknown key(s) {', '.join(unknown)}")
        errors += _type_errors(v, VIOLATION_KEYS, "violation.")
        if isinstance(v.get("images", []), list) and isinstance(seq, list) and \
                any(not isinstance(p, int) or not 1 <= p <= len(seq) for p in v.get("images", [])):
            errors.append(f"'violation.images' {v['images']} must be 1-based positions in the sequence")
    if "candidate_meta" in obj and isinstance(cands, list):
        errors += _validate_meta(obj["candidate_meta"], len(cands))
    return errors


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def validate_file(path: str | Path, check_images: bool = False) -> tuple[int, list[str]]:
    """(records read, errors as 'path:line: message'); also checks split leakage."""
    path = Path(path)
    errors: list[str] = []
    n = 0
    split_of: dict[tuple[str, str], tuple[str, int]] = {}  # ("product"|"group", id) -> (split, line)
    for lineno, line in iter_lines(path):
        n += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})")
            continue
        problems = validate_record(obj)
        errors += [f"{path}:{lineno}: {p}" for p in problems]
        if problems:
            continue
        if "split" in obj:
            for kind in ("product_id", "group"):
                if kind not in obj:
                    continue
                key = (kind, obj[kind])
                first = split_of.setdefault(key, (obj["split"], lineno))
                if first[0] != obj["split"]:
                    errors.append(f"{path}:{lineno}: {kind} {obj[kind]!r} is in split {obj['split']!r} "
                                  f"but line {first[1]} put it in {first[0]!r} (split leakage)")
        if check_images:
            rec = Record.from_dict(obj, base_dir=path.parent)
            for i in range(len(rec.candidates)):
                p = rec.path(i)
                if isinstance(p, Path) and not p.is_file():
                    errors.append(f"{path}:{lineno}: candidate {i} {rec.candidates[i]!r} does not exist")
    if n == 0:
        errors.append(f"{path}: no records")
    return n, errors


def check_leakage(records: Iterable[Record]) -> list[str]:
    """Products or groups found in more than one split (across files)."""
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for r in records:
        for kind, key in (("product", r.product_id), ("group", r.group)):
            if key is None or r.split is None:
                continue
            first = seen.setdefault((kind, key), r.split)
            if first != r.split:
                problems.append(f"{kind} {key!r} is in splits {first!r} and {r.split!r}")
    return sorted(set(problems))


# --- reading and writing ------------------------------------------------------------------------

def load_records(path: str | Path, validate: bool = True) -> list[Record]:
    """Every record of one JSONL file; raises ValidationError (with line numbers) when invalid."""
    path = Path(path)
    if validate:
        _, errors = validate_file(path)
        if errors:
            raise ValidationError(path, errors)
    return [Record.from_dict(json.loads(line), base_dir=path.parent) for _, line in iter_lines(path)]


def load_dataset(directory: str | Path, split: str | None = None) -> list[Record]:
    """Records of a dataset directory (var/datasets/<name>): one split, or all of them."""
    directory = Path(directory)
    names = [split] if split else [s for s in SPLITS if (directory / f"{s}.jsonl").exists()]
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not names or not (directory / f"{names[0]}.jsonl").exists():
        raise FileNotFoundError(f"{directory}: no {split or 'split'} .jsonl file; build one with "
                                f"`agpis data build` or `agpis data synth`")
    return [r for name in names for r in load_records(directory / f"{name}.jsonl")]


def dumps(record: Record | dict) -> str:
    d = record.to_dict() if isinstance(record, Record) else record
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def write_records(path: str | Path, records: Iterable[Record | dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(dumps(r) + "\n")
            n += 1
    return n
