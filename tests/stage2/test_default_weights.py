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

    stage1, stage2, _ = load_version("default", Config())
    assert "sha256" in stage2.version and stage2.n_images == 3
    # stage 2 was trained on the maps of the backbone stage 1 runs
    assert stage2.pre["backbone"] == stage1.backbone.info.identity


def test_a_stage2_trained_on_another_backbone_is_refused(tmp_path):
    """A version whose MUIsC learned another backbone's maps (the int8 trunk's, say) does not load:
    it would answer, wrongly (stage1/backbone.py)."""
    import shutil

    from agpis.config import Config
    from agpis.models import ModelError, load_version

    version = tmp_path / "mixed"
    shutil.copytree(ROOT / "weights" / "default", version)
    meta = json.loads((version / "stage2" / "config.json").read_text())
    meta["preprocessing"]["backbone"] = "mobilenet_v2_1.0_224:31f4431a005ddf0f"  # the int8 trunk of 2026.11-3
    (version / "stage2" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="trained on the maps of backbone mobilenet_v2_1.0_224:31f4431a005ddf0f"):
        load_version(version, Config())


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
