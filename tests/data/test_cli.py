"""`agpis data ...` commands on a tiny procedural dataset."""
from __future__ import annotations

import json

from agpis.cli import main


def test_validate_stats_preview(synth_dataset, tmp_path, capsys):
    out, _ = synth_dataset
    assert main(["data", "validate", str(out), "--images"]) == 0
    assert main(["data", "stats", str(out)]) == 0
    assert "split leakage: none" in capsys.readouterr().out
    png = tmp_path / "sheet.png"
    assert main(["data", "preview", str(out), "--per-label", "1", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_validate_rejects_with_line_numbers(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"product_id": "x"}) + "\n")
    assert main(["data", "validate", str(bad)]) == 1
    assert f"{bad}:1: missing field(s)" in capsys.readouterr().out


def test_rules_doc_check(tmp_path):
    doc = tmp_path / "rules.md"
    assert main(["data", "rules-doc", "--out", str(doc), "--check"]) == 1
    assert main(["data", "rules-doc", "--out", str(doc)]) == 0
    assert main(["data", "rules-doc", "--out", str(doc), "--check"]) == 0
