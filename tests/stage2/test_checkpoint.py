from __future__ import annotations

import json

import pytest
import torch

from stage2 import checkpoint
from stage2.baselines import SingleTower, SingleTowerConfig
from stage2.model import MUIsC, MUIsCConfig

CFG = dict(vocab_size=30, d_model=16, n_head=2, feature_dim=8, feature_grid=2, max_text_len=16)


def _save(tmp_path, model):
    return checkpoint.save(tmp_path / "ck", model, None, preprocessing={"kind": "backbone_tokens"},
                           text={"max_title": 8, "max_feedback": 6}, version="test-1")


def test_roundtrip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    m = MUIsC(MUIsCConfig(**CFG)).eval()
    d = _save(tmp_path, m)
    again, tok, meta = checkpoint.load(d)
    x, idx, sep = torch.rand(2, 3, 4, 8), torch.randint(4, 30, (2, 5)), torch.tensor([2, 3])
    with torch.no_grad():
        # float16 storage: outputs agree to half precision
        assert torch.allclose(m(x, idx, sep).class_logits, again(x, idx, sep).class_logits, atol=2e-3)
    assert again.lm_head.weight is again.decoder.wte.weight
    assert meta["classes"][0] == "qualified" and meta["arch"] == "muisc" and tok is None


def test_altered_file_is_refused(tmp_path):
    d = _save(tmp_path, MUIsC(MUIsCConfig(**CFG)))
    with open(d / checkpoint.WEIGHTS, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="sha256"):
        checkpoint.load(d)


def test_mismatched_config_is_refused(tmp_path):
    d = _save(tmp_path, MUIsC(MUIsCConfig(**CFG)))
    meta = json.loads((d / checkpoint.CONFIG).read_text())
    meta["model"]["d_model"] = 32
    (d / checkpoint.CONFIG).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="shape"):
        checkpoint.load(d)
    meta["format"] = "something-else"
    (d / checkpoint.CONFIG).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format"):
        checkpoint.load(d)


def test_baseline_roundtrip(tmp_path):
    m = SingleTower(SingleTowerConfig(fusion="early", feature_dim=8)).eval()
    again, _, meta = checkpoint.load(_save(tmp_path, m))
    assert meta["arch"] == "single_tower"
    x = torch.rand(2, 1, 4, 8)
    assert torch.allclose(m(x).class_logits, again(x).class_logits, atol=2e-3)
    with pytest.raises(AssertionError, match="early fusion expects 1"):
        again(torch.rand(2, 3, 4, 8))
