"""Calibration of p_qualified (stage2.calibrate): Platt scaling, ECE, and the scorer applying it."""
from __future__ import annotations

import numpy as np

from stage2 import calibrate


def test_platt_recovers_an_overconfident_model_and_lowers_ece():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    p_over = 1 / (1 + np.exp(-(3.0 * true_logit + 1.0)))  # 3x too sharp and shifted
    cal = calibrate.fit_platt(p_over, y)
    assert abs(cal["a"] - 1 / 3) < 0.05 and abs(cal["b"] + 1 / 3) < 0.1
    before, _ = calibrate.reliability(p_over, y)
    after, rows = calibrate.reliability(calibrate.apply(p_over, cal), y)
    assert before > 0.08 and after < 0.03
    assert sum(r["n"] for r in rows) == 4000


def test_apply_to_probs_keeps_a_distribution_and_the_others_odds():
    probs = np.array([[0.9, 0.06, 0.04], [0.2, 0.5, 0.3]], np.float32)
    out = calibrate.apply_to_probs(probs, 0, {"a": 0.5, "b": -0.5})
    assert np.allclose(out.sum(1), 1.0, atol=1e-5)
    assert np.allclose(out[:, 1] / out[:, 2], probs[:, 1] / probs[:, 2], rtol=1e-4)
    assert out[0, 0] < 0.9
    assert calibrate.apply_to_probs(probs, 0, None) is probs
