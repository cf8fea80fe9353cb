"""The MUIsC weights shipped in weights/default/stage2: they load strictly, the service's
manifest points at them, and they still say what they said when installed (golden scores)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights" / "default" / "stage2"

pytestmark = pytest.mark.skipif(not (WEIGHTS / "config.json").is_file(), reason="no default MUIsC shipped yet")


def test_manifest_points_at_the_learned_stage2():
    manifest = json.loads((ROOT / "weights" / "default" / "manifest.json").read_text())
    assert manifest["stage2"] == {"kind": "learned", "path": "stage2"}


def test_loads_through_the_model_registry():
    from agpis.config import Config
    from agpis.models import load_version

    _, stage2, _ = load_version("default", Config())
    assert "sha256" in stage2.version and stage2.n_images == 3


@pytest.mark.slow
def test_golden_scores():
    from stage2.card import GOLDEN, golden_scores

    want = json.loads((WEIGHTS / GOLDEN).read_text())
    got = golden_scores(WEIGHTS)
    assert len(got["scores"]) == len(want["scores"])
    for g, w in zip(got["scores"], want["scores"]):
        assert g["ids"] == w["ids"]
        assert g["p_qualified"] == pytest.approx(w["p_qualified"], abs=2e-3), g["title"]
        assert g["rule"] == w["rule"]
