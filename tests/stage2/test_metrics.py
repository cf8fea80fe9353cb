from __future__ import annotations

import random

import numpy as np
import pytest

from agpis import rules
from stage2 import metrics
from stage2.data import Example
from stage2.evaluate import queue_report


def test_auc_known_values():
    y = np.array([1, 1, 0, 0])
    assert metrics.roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert metrics.roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert metrics.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # one swapped pair out of four
    assert metrics.roc_auc(y, np.array([0.9, 0.3, 0.4, 0.1])) == 0.75
    assert np.isnan(metrics.roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.6
    s = np.round(rng.random(300), 2)  # ties included
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert metrics.roc_auc(y, s) == pytest.approx(pairwise)


def test_recall_at_precision():
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert metrics.recall_at_precision(y, s, 1.0) == 0.5  # top 2 are both qualified
    assert metrics.recall_at_precision(y, s, 0.75) == 0.75  # top 4: 3 of 4 qualified
    assert metrics.recall_at_precision(y, s, 0.6) == 1.0  # top 6: 4 of 6
    assert metrics.recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) == 0.0


def test_subsets_are_balanced_per_family():
    labels = ["qualified"] * 20 + ["watermark"] * 3 + ["primary_product_too_small"] * 2 + ["duplicated_view"] * 4 \
        + ["title_mismatch"] * 1
    single = metrics.subset_indices(labels, "single")
    assert sorted(labels[i] for i in single).count("qualified") == 5 and len(single) == 10
    assert {labels[i] for i in metrics.subset_indices(labels, "pair")} == {"qualified", "duplicated_view"}
    assert len(metrics.subset_indices(labels, "multi")) == 2
    s = metrics.summary(labels, np.linspace(1, 0, len(labels)))
    assert s["auc"] == 1.0 and s["auc_single"] == 1.0 and s["n_pair"] == 8


def test_every_template_of_the_catalogue_is_recognised():
    rng = random.Random(0)
    for rule in rules.CLASSES:
        for variant in range(4):
            for region in ("", "across the top", "in the top-left corner"):
                text = rules.feedback(rule, image=rng.randrange(3), images=[0, 2], region=region, detail="red",
                                      variant=variant)
                assert metrics.rule_named(text) == rule, text
                # as the WordPiece decoder spells it: spaces around punctuation
                spaced = " ".join(text.replace("-", " - ").replace(",", " ,").split())
                assert metrics.rule_named(spaced) == rule, spaced
    assert metrics.rule_named("the weather is nice") is None
    assert metrics.images_named("images 2 and 3 show the same view") == [2, 3]
    assert metrics.images_named("image 1 is blurry") == [1]


def test_confusion_counts():
    cm = metrics.confusion(["qualified", "logo", "logo"], ["qualified", "logo", "watermark"])
    i = {c: k for k, c in enumerate(rules.CLASSES)}
    assert cm[i["logo"], i["logo"]] == 1 and cm[i["logo"], i["watermark"]] == 1 and cm.sum() == 3


def _ex(pid, label):
    return Example("t", ["a", "b", "c"], label, "", pid)


def test_queue_report_matched_protocol():
    # two products, two sequences each: one qualified, one violating; a perfect scorer
    ex = [_ex("p1", "qualified"), _ex("p1", "logo"), _ex("p2", "logo"), _ex("p2", "qualified")]
    q = queue_report(ex, np.array([0.9, 0.1, 0.2, 0.8]), threshold=0.3)
    f, c = q["filter"], q["choice"]
    assert f["stage1_reject_share"] == 0.5 and f["stage2_sent"] == 2 and f["stage2_reject_share"] == 0.0
    assert c["stage1_qualified"] == 1.0 and c["stage1_reject_share"] == 0.5  # random choice: expectation
    assert c["matched_qualified"] == 1 and c["matched_sent"] == 1 and c["matched_reject_share"] == 0.0
    assert c["reduction"] == 1.0
    assert c["multi_sent"] == 2 and c["multi_qualified"] == 2
    # a scorer that prefers the violating sequences: the choice makes things worse
    bad = queue_report(ex, np.array([0.1, 0.9, 0.8, 0.2]), threshold=0.3)["choice"]
    assert bad["multi_qualified"] == 0 and bad["reduction"] <= 0


def test_auc_difference_interval_brackets_the_gap_and_is_zero_for_the_same_scores():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.6
    good = y + rng.normal(0, 0.6, 400)
    weak = y + rng.normal(0, 1.5, 400)
    gap = metrics.roc_auc(y, good) - metrics.roc_auc(y, weak)
    groups = np.repeat(np.arange(100), 4)
    lo, hi = metrics.auc_difference_ci(y, good, weak, groups, n=300)
    assert 0 < lo < gap < hi
    assert metrics.auc_difference_ci(y, good, good, groups, n=50) == (0.0, 0.0)
