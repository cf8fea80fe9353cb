"""Metrics of stage 1's models: ROC AUC, precision/recall at the operating threshold, recall per
rule, on all candidates and on the held-out evaluation styles (docs/data.md)."""
from __future__ import annotations

import numpy as np

from stage1.data import SINGLE_RULES


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; NaN when one class is missing."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    y = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores) >= threshold
    tp = int((flagged & y).sum())
    precision = tp / max(int(flagged.sum()), 1) if flagged.any() else float("nan")
    recall = tp / max(int(y.sum()), 1) if y.any() else float("nan")
    return float(precision), float(recall)


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (midway between neighbours) with the highest F1."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-s)
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    prec = tp / np.arange(1, len(s) + 1)
    rec = tp / max(int(y.sum()), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
    last = np.r_[s[1:] != s[:-1], True]  # cut only between different scores
    f1 = np.where(last, f1, -1)
    k = int(np.argmax(f1))
    return float((s[k] + s[k + 1]) / 2) if k + 1 < len(s) else float(s[k])


def subsets(style_split: np.ndarray, group: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All candidates, by violation style, and by product family (the group's prefix: grocery,
    abo, jd, procedural...) when groups are given: a family absent from training shows how the
    models carry over to a new kind of product."""
    out = {"all": np.ones(len(style_split), bool), "heldout_styles": style_split == "heldout",
           "train_styles": style_split == "train"}
    if group is not None:
        family = np.array([str(g).split("-")[0] for g in group])
        for f in sorted(set(family)):
            out[f"family:{f}"] = family == f
    return out


def summarise(probs: dict[str, np.ndarray], primary: np.ndarray, rules: np.ndarray, style_split: np.ndarray,
              threshold: float = 0.5, group: np.ndarray | None = None) -> dict:
    """probs: OUTPUTS name -> (N,) calibrated probabilities; primary (N,) bool; rules (N, R) bool."""
    from stage1.heads import p_noncompliant

    nc = rules.any(1)
    probs = {**probs, "noncompliant": np.maximum(probs["noncompliant"], p_noncompliant(probs))}  # as the service
    out = {}
    for name, sel in subsets(style_split, group).items():
        if not sel.any():
            continue
        m = {"n": int(sel.sum())}
        for head, y in (("primary", primary), ("noncompliant", nc)):
            p, r = precision_recall(probs[head][sel], y[sel], threshold)
            m[head] = {"auc": roc_auc(probs[head][sel], y[sel]), "precision": p, "recall": r,
                       "positives": int(y[sel].sum())}
        flagged = probs["noncompliant"][sel] >= threshold
        per_rule = {}
        for k, rule in enumerate(SINGLE_RULES):
            y = rules[sel, k]
            if y.any():
                # removed at all (for any reason), and removed naming this rule
                named = flagged & (_named_rule(probs, sel) == rule)
                per_rule[rule] = {"n": int(y.sum()), "recall": float(flagged[y].mean()),
                                  "recall_named": float(named[y].mean()),
                                  "auc": roc_auc(probs[rule][sel], y)}
        m["per_rule"] = per_rule
        out[name] = m
    return out


def _named_rule(probs: dict[str, np.ndarray], sel: np.ndarray) -> np.ndarray:
    stacked = np.stack([probs[r][sel] for r in SINGLE_RULES], 1)
    return np.array(SINGLE_RULES)[stacked.argmax(1)]


def head_metrics(model, d: dict) -> dict:
    """`summarise` for a torch `Heads` model (with its calibration offsets) on cached features."""
    import torch

    from stage1.train import inputs

    with torch.no_grad():
        logits = model(torch.from_numpy(inputs(d, model.config.use_checks))) - model.offset
        p = torch.sigmoid(logits).numpy()
    probs = {name: p[:, i] for i, name in enumerate(model.config.outputs)}
    return summarise(probs, d["primary"], d["rules"], d["style_split"], group=d["group"])
