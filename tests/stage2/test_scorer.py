"""`stage2.load(...).score(...)` as the pipeline calls it, on a tiny trained MUIsC."""
from __future__ import annotations

import numpy as np
import pytest

import stage2
from agpis import rules
from stage1.types import CandidateImage
from stage2.config import Stage2Config


@pytest.fixture(scope="module")
def product(tiny_data):
    from agpis.data.format import load_dataset
    from stage2.data import read_rgb

    r = load_dataset(tiny_data, "test")[0]
    ims = [CandidateImage(f"c{i}", read_rgb(str(r.path(i))), (160, 160)) for i in range(len(r.candidates))]
    return r.title, ims, r


def test_scores_every_candidate_sequence(tiny_run, product):
    title, ims, r = product
    s2 = stage2.load(tiny_run, Stage2Config(max_feedback_tokens=10, explain_all=True))
    seqs = [[ims[i] for i in r.sequence], ims[:3], ims[1:4], [ims[0], ims[2], ims[3]]]
    out = s2.score(title, seqs, None, explain=True)
    assert [o.ids for o in out] == [[im.id for im in s] for s in seqs]
    for o in out:
        assert 0.0 <= o.p_qualified <= 1.0
        assert o.rule in rules.CLASSES and o.rule != rules.QUALIFIED
        assert abs(sum(o.rule_probs.values()) - 1.0) < 1e-4
        assert o.rule_probs[rules.QUALIFIED] == pytest.approx(o.p_qualified)
        assert isinstance(o.feedback, str) and o.feedback
        if o.p_qualified < 0.5:
            assert o.feedback != "yes"  # a rejection always gets an explanation
    # by default only the sequence the pipeline keeps (highest p_qualified) is explained
    default = stage2.load(tiny_run, Stage2Config(max_feedback_tokens=10)).score(title, seqs, None, explain=True)
    best = max(range(len(seqs)), key=lambda i: default[i].p_qualified)
    assert default[best].feedback == out[best].feedback
    assert all(d.feedback == "" for i, d in enumerate(default) if i != best)
    quiet = s2.score(title, seqs, None, explain=False)
    assert all(q.feedback == "" for q in quiet)
    assert [q.p_qualified for q in quiet] == pytest.approx([o.p_qualified for o in out], abs=1e-5)


def test_stage1_features_are_used_as_given(tiny_run, product):
    from stage2.data import load_backbone

    title, ims, _ = product
    s2 = stage2.load(tiny_run)
    feats = {im.id: f for im, f in zip(ims, load_backbone().image_tokens([im.pixels for im in ims]))}
    a = s2.score(title, [ims[:3]], feats, explain=False)[0]
    b = s2.score(title, [ims[:3]], None, explain=False)[0]
    assert a.p_qualified == pytest.approx(b.p_qualified, abs=1e-5)
    blank = {**feats, "c0": np.zeros_like(feats["c0"])}
    c = s2.score(title, [ims[:3]], blank, explain=False)[0]
    change = max(abs(c.rule_probs[k] - a.rule_probs[k]) for k in a.rule_probs)
    assert change > 1e-4  # the given features are what it reads
    with pytest.raises(ValueError, match="shape"):
        s2.score(title, [ims[:3]], {**feats, "c0": np.zeros((7, 7, 1280), np.float32)}, explain=False)


def test_bad_requests_are_clear_errors(tiny_run, product):
    title, ims, _ = product
    s2 = stage2.load(tiny_run)
    with pytest.raises(ValueError, match="3 images"):
        s2.score(title, [ims[:2]])
    with pytest.raises(ValueError, match="title"):
        s2.score("  ", [ims[:3]])
    assert s2.score(title, []) == []
    assert "sha256" in s2.version


def test_a_baseline_cannot_serve(tiny_data, cache_dir, tmp_path):
    from stage2.train import train
    from tests.stage2.conftest import tiny_train_config

    best = train(tiny_train_config(tiny_data, tmp_path / "lf", cache_dir, variant="late_fusion", epochs=1))
    with pytest.raises(ValueError, match="baseline"):
        stage2.load(best)


def test_installed_weights_serve_scores_with_onnx(tiny_run, product, tmp_path):
    """`--install` adds the ONNX scoring path, a model card and golden scores; ONNX Runtime and
    PyTorch give the same p_qualified."""
    from stage2.card import GOLDEN, install

    title, ims, _ = product
    target = install(tiny_run, tmp_path / "stage2")
    assert (target / "README.md").is_file() and (target / GOLDEN).is_file()
    s2 = stage2.load(target)
    assert s2.onnx is not None
    seqs = [ims[:3], ims[1:4]]
    fast = s2.score(title, seqs, None, explain=False)
    s2.onnx = None
    slow = s2.score(title, seqs, None, explain=False)
    assert [f.p_qualified for f in fast] == pytest.approx([s.p_qualified for s in slow], abs=1e-5)
