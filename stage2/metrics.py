"""Pure metric functions for stage 2 (paper §4.1): ROC AUC, recall at precision, balanced
per-category subsets, confusion counts, and which rule a feedback sentence names.

The positive class is `qualified` and the score is p_qualified, as in the paper: R@P=0.9 is the
share of qualified sequences that can be sent while 90% of those sent are qualified.
"""
from __future__ import annotations

import re

import numpy as np

from agpis import rules

# The paper's three rule families; primary-image rules judge one image, so they count as single.
SUBSET_OF_CATEGORY = {"single": "single", "primary": "single", "pair": "pair", "multi": "multi"}


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic, tied scores at their mean rank."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank of each distinct score
    return float((mean_rank[inverse][y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, highest threshold first."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, t = np.asarray(score)[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    return tp / (tp + fp), tp / max(int(y.sum()), 1), s[last]


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), starting at (0, 0)."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, t = np.asarray(score)[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    return np.r_[0, fp / max(int((~y).sum()), 1)], np.r_[0, tp / max(int(y.sum()), 1)]


def recall_at_precision(y: np.ndarray, score: np.ndarray, precision: float) -> float:
    p, r, _ = pr_curve(y, score)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def subset_indices(labels: list[str], subset: str, seed: int = 0) -> np.ndarray:
    """The paper's AGPIS-data-{single,pair,multi}: every sequence rejected by a rule of that
    family plus as many randomly chosen qualified ones (fewer if fewer exist)."""
    rejected = [i for i, l in enumerate(labels) if SUBSET_OF_CATEGORY.get(rules.category_of(l)) == subset]
    qualified = [i for i, l in enumerate(labels) if l == rules.QUALIFIED]
    rng = np.random.default_rng(seed)
    n = min(len(rejected), len(qualified))
    rej = rng.choice(rejected, n, replace=False) if n < len(rejected) else np.array(rejected, dtype=int)
    return np.sort(np.r_[rej, rng.choice(qualified, n, replace=False)]).astype(int)


def auc_difference_ci(y: np.ndarray, a: np.ndarray, b: np.ndarray, groups: np.ndarray | None = None,
                      n: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of AUC(a) - AUC(b) on the same sequences. With `groups`
    (product ids) whole products are resampled: a product's sequences share its images, so
    resampling them one by one would understate the spread."""
    y, a, b = np.asarray(y).astype(bool), np.asarray(a), np.asarray(b)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        d = roc_auc(y[idx], a[idx]) - roc_auc(y[idx], b[idx])
        if not np.isnan(d):
            diffs.append(d)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summary(labels: list[str], p_qualified: np.ndarray, seed: int = 0) -> dict:
    """The paper's Table 2/3 columns for one model on one evaluation set."""
    y = np.array([l == rules.QUALIFIED for l in labels])
    out = {"n": len(labels), "n_qualified": int(y.sum()), "auc": roc_auc(y, p_qualified)}
    for p in (0.8, 0.85, 0.9):
        out[f"r@p{p}"] = recall_at_precision(y, p_qualified, p)
    for subset in ("single", "pair", "multi"):
        idx = subset_indices(labels, subset, seed)
        out[f"auc_{subset}"] = roc_auc(y[idx], p_qualified[idx]) if len(idx) else float("nan")
        out[f"n_{subset}"] = int(len(idx))
    return out


def confusion(true: list[str], pred: list[str], classes: tuple[str, ...] = rules.CLASSES) -> np.ndarray:
    """counts[i, j]: sequences of true class i predicted as class j."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(true, pred):
        out[index[t], index[p]] += 1
    return out


# --- which rule a feedback sentence names ----------------------------------------------------

def normalise(text: str) -> str:
    """Lower case, one space, no space around punctuation: a WordPiece decode of "top-left" is
    "top - left", a template's is "top-left"; both become "top-left"."""
    text = " ".join(text.lower().split())
    return re.sub(r"\s*([-,.:;!?'/%()])\s*", r"\1", text)


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{image\}|\{images\}|\{region\}|\{detail\})", normalise(template))
    slots = {"{image}": r"(?:image \d+|an image)", "{images}": r"(?:images? [\d ,and]+|two images)",
             "{region}": r".*?", "{detail}": r".+?"}

    def literal(p: str) -> str:  # spaces next to a slot are optional: an empty {region} drops one
        return (" ?" if p.startswith(" ") else "") + re.escape(p.strip()) + (" ?" if p.endswith(" ") and p.strip() else "")

    return re.compile("^" + "".join(slots.get(p, literal(p)) for p in parts) + "$")


_PATTERNS: list[tuple[str, re.Pattern]] = [
    (r.id, _template_regex(t)) for r in rules.RULES for t in r.feedback
] + [(rules.QUALIFIED, re.compile(r"^yes$")), (rules.OTHER, re.compile("^" + re.escape(normalise(
    rules.feedback(rules.OTHER))) + "$"))]


def rule_named(feedback: str) -> str | None:
    """The class whose feedback template the sentence instantiates, or None if none fits."""
    text = normalise(feedback)
    for rule_id, pattern in _PATTERNS:
        if pattern.match(text):
            return rule_id
    return None


def images_named(feedback: str) -> list[int]:
    """1-based image numbers a feedback sentence names ("images 2 and 3" -> [2, 3])."""
    m = re.search(r"\bimages? ([\d ,and]+)", normalise(feedback))
    return sorted({int(d) for d in re.findall(r"\d+", m.group(1))}) if m else []
