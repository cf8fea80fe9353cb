"""`agpis data preview`: a contact sheet PNG of sequences with their label, feedback and title,
so a person can judge whether the violations look like what sellers upload."""
from __future__ import annotations

import random
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from agpis import rules
from agpis.data import format as fmt
from agpis.data import styles

THUMB = 200
TEXT_H = 58


def pick(records: list[fmt.Record], n: int, seed: int = 0, per_label: int = 0) -> list[fmt.Record]:
    """n records; with per_label, up to that many of every label (rules first, then qualified)."""
    rng = random.Random(seed)
    if not per_label:
        return rng.sample(records, min(n, len(records)))
    by: dict[str, list[fmt.Record]] = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    out = []
    for label in rules.CLASSES:
        if label in by:
            out += rng.sample(by[label], min(per_label, len(by[label])))
    return out[:n] if n else out


def _load(rec: fmt.Record, i: int) -> Image.Image:
    p = rec.path(i)
    with Image.open(p) as im:
        return im.convert("RGB")


def contact_sheet(records: list[fmt.Record], out: str | Path, columns: int = 2) -> Path:
    """Each cell: the sequence's images (primary first) with the label, feedback and title."""
    cell_w, cell_h = 3 * (THUMB + 4) + 8, THUMB + TEXT_H + 10
    rows = (len(records) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, max(1, rows) * cell_h), (235, 235, 235))
    d = ImageDraw.Draw(sheet)
    f_label, f_text = styles.font("DejaVuSans-Bold.ttf", 13), styles.font("DejaVuSans.ttf", 12)
    for n, rec in enumerate(records):
        x0, y0 = (n % columns) * cell_w + 4, (n // columns) * cell_h + 4
        for k, idx in enumerate(rec.sequence[:3]):
            im = _load(rec, idx)
            w, h = im.size
            im.thumbnail((THUMB, THUMB), Image.LANCZOS)
            cx = x0 + k * (THUMB + 4) + (THUMB - im.width) // 2
            sheet.paste(im, (cx, y0 + (THUMB - im.height) // 2))
            d.text((x0 + k * (THUMB + 4) + 3, y0 + 2), f"{k + 1}", font=f_label, fill=(255, 0, 160))
            if (w, h) != (THUMB, THUMB) and max(w, h) < 480:
                d.text((x0 + k * (THUMB + 4) + 3, y0 + THUMB - 16), f"{w}x{h}", font=f_text, fill=(255, 0, 160))
        colour = (0, 120, 0) if rec.label == rules.QUALIFIED else (190, 0, 0)
        ty = y0 + THUMB + 3
        d.text((x0, ty), f"{rec.label}" + (f"  [{rec.split}/{rec.style_split}]" if rec.split else ""),
               font=f_label, fill=colour)
        fb = textwrap.shorten(rec.feedback, 95) if rec.label != rules.QUALIFIED else "yes"
        d.text((x0, ty + 17), fb, font=f_text, fill=(20, 20, 20))
        d.text((x0, ty + 34), textwrap.shorten("title: " + rec.title, 95), font=f_text, fill=(0, 0, 150))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out
