"""docs/rules.md, generated from the catalogue (agpis/rules.py): `agpis data rules-doc`."""
from __future__ import annotations

from agpis import rules

HEADER = """# Rule catalogue

Generated from `agpis/rules.py` by `agpis data rules-doc`; do not edit by hand (a test checks
that this file is up to date). Class index = position in `agpis.rules.CLASSES`, the class list
of every model.
"""


def render_markdown() -> str:
    out = [HEADER, "| class | id | category | title |", "|---|---|---|---|"]
    for i, c in enumerate(rules.CLASSES):
        if c in rules.BY_ID:
            r = rules.BY_ID[c]
            out.append(f"| {i} | `{c}` | {r.category} | {r.title} |")
        else:
            out.append(f"| {i} | `{c}` | none | {'sequence passes' if c == rules.QUALIFIED else 'a rule not in the catalogue'} |")
    for cat in rules.CATEGORIES:
        out += ["", f"## {cat.capitalize()}-image rules" if cat in ("single", "multi")
                else f"## {cat.capitalize()} rules" if cat == "pair" else "## Primary-image rules", ""]
        for r in rules.rules_in(cat):
            out += [f"### `{r.id}`: {r.title}", "", r.description, "",
                    "Reflects: " + "; ".join(r.reflects) + ".", "", "Feedback templates:"]
            out += [f"- {t}" for t in r.generic]
            for kind, ts in r.kinds:
                out += [f"- ({kind}) {t}" for t in ts]
            out.append("")
    out += ["## Termination reasons (stage 1)", ""]
    out += [f"- `{k}`: {v}" for k, v in rules.TERMINATION_REASONS.items()]
    out += ["", "Placeholders: `{image}` (\"image 2\", 1-based position in the sequence), `{images}`, "
            "`{region}` (\"across the top\", from `rules.region_name`), `{detail}` (free text).", ""]
    return "\n".join(out)
