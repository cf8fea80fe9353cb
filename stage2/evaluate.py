"""`agpis eval muisc`: MUIsC against the paper's baselines on evaluation styles never seen in
training, its ablations, its explanations, and what it does to the review queue.

Everything is computed from model outputs on the evaluation split; nothing is typed in.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from agpis import rules
from stage2 import metrics
from stage2.data import Example, SequenceDataset, collate


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield list(range(i, min(n, i + size)))


@torch.inference_mode()
def predict(model, examples: list[Example], source, tokenizer, max_title: int, batch_size: int = 128,
            device: torch.device | str = "cpu", progress: bool = True) -> dict:
    """Class probabilities from the images and the inference prompt `title [SEP]` only."""
    from tqdm import tqdm

    model.eval()
    c = model.config
    ds = SequenceDataset(examples, source, tokenizer if c.use_decoder else None, c.classes, max_title, 0,
                         c.use_title, with_feedback=False)
    probs = []
    for idx in tqdm(list(_chunks(len(ds), batch_size)), desc="predict", disable=not progress):
        b = collate([ds[i] for i in idx])
        o = model(b["images"].to(device), b["idx"].to(device), b["sep_pos"].to(device))
        probs.append(torch.softmax(o.class_logits.float(), -1).cpu())
    p = torch.cat(probs).numpy() if probs else np.zeros((0, len(c.classes)), np.float32)
    return {"probs": p, "p_qualified": p[:, c.classes.index(rules.QUALIFIED)], "classes": c.classes}


@torch.inference_mode()
def generate_feedback(model, examples: list[Example], source, tokenizer, max_title: int, max_new_tokens: int,
                      batch_size: int = 64, progress: bool = True, served: bool = False,
                      explain_below: float | None = 0.5) -> list[str]:
    """Feedback for each example, batched by prompt length: plain greedy decoding of the NLG
    head, or (`served`) the explanation exactly as `score(explain=True)` gives it."""
    from tqdm import tqdm

    from stage2.explain import Explainer

    model.eval()
    ex = Explainer(model, tokenizer, explain_below, max_new_tokens)
    prompts = [tokenizer.encode(e.title, None, max_title, 0, model.config.use_title).ids for e in examples]
    by_len = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out = [""] * len(examples)
    jobs = [idx[j:j + batch_size] for idx in by_len.values() for j in range(0, len(idx), batch_size)]
    for idx in tqdm(jobs, desc="feedback", disable=not progress):
        images = torch.stack([torch.from_numpy(np.asarray(source(examples[i].images))) for i in idx]).float()
        prompt = torch.tensor([prompts[i] for i in idx])
        if served:
            _, sentences = ex.explain(images, prompt)
        else:
            _, gen = model.classify_and_generate(images, prompt, tokenizer.eos_id, max_new_tokens, constrain=ex.plain)
            sentences = [tokenizer.decode(g.tolist()) for g in gen]
        for i, text in zip(idx, sentences):
            out[i] = text
    return out


def evaluation_examples(examples: list[Example], styles: str) -> list[Example]:
    """`heldout`: products whose violations were drawn from styles never used in training."""
    if styles == "all":
        return examples
    return [e for e in examples if e.style_split == styles]


# --- explanations ---------------------------------------------------------------------------

def feedback_report(examples: list[Example], generated: list[str], records=None) -> dict:
    """How often the generated sentence names the true rule (and the right images)."""
    rejected = [(e, g) for e, g in zip(examples, generated) if e.label != rules.QUALIFIED]
    named = [metrics.rule_named(g) for _, g in rejected]
    right = sum(n == e.label for (e, _), n in zip(rejected, named))
    unparsed = sum(n is None for n in named)
    img_ok = img_n = 0
    if records is not None:
        for (e, g) in rejected:
            v = records[e.record_index].violation or {}
            if v.get("images"):
                img_n += 1
                img_ok += metrics.images_named(g) == sorted(v["images"])
    per_rule = defaultdict(lambda: [0, 0])
    for (e, _), n in zip(rejected, named):
        per_rule[e.label][0] += n == e.label
        per_rule[e.label][1] += 1
    return {"n_rejected": len(rejected), "names_true_rule": right / max(1, len(rejected)),
            "unparsed": unparsed / max(1, len(rejected)), "n_with_images": img_n,
            "names_right_images": img_ok / max(1, img_n), "per_rule": dict(per_rule),
            "examples": [(e.label, g) for e, g in rejected[:8]]}


# --- the review queue -----------------------------------------------------------------------

def queue_report(examples: list[Example], p: np.ndarray, threshold: float = 0.3, seed: int = 0) -> dict:
    """What stage 2 does to the share of rule-violating sequences sent to review.

    filter (the paper's §5.1 setting): stage 1 alone sends every sequence; stage 2 sends those
    with p > threshold.
    choice (matched): per product, stage 1 alone sends one of the product's sequences at random
    (the paper's stage 1 picks the non-primary images at random); stage 2 scores all of them,
    keeps the best, and sends it if p > t, with t the lowest threshold at which stage 2 sends no
    more qualified sequences than stage 1 alone does (in expectation) - the same number of
    qualified sequences sent, so the reject shares compare like for like.
    """
    ok = np.array([e.label == rules.QUALIFIED for e in examples])
    n = len(examples)
    sent = p > threshold
    filt = {"stage1_sent": n, "stage1_qualified": int(ok.sum()), "stage1_reject_share": float(1 - ok.mean()),
            "stage2_sent": int(sent.sum()), "stage2_qualified": int((ok & sent).sum()),
            "stage2_reject_share": float(1 - ok[sent].mean()) if sent.any() else float("nan")}
    by_product = defaultdict(list)
    for i, e in enumerate(examples):
        by_product[e.product_id].append(i)
    groups = list(by_product.values())
    # stage 1 alone, random choice: expected counts per product
    s1_qual = float(sum(ok[g].mean() for g in groups))
    best = [g[int(np.argmax(p[g]))] for g in groups]
    best_p, best_ok = p[best], ok[best]
    # stage 2 single-candidate at the threshold: a random sequence per product, sent if p > t
    single_sent = float(sum((p[g] > threshold).mean() for g in groups))
    single_qual = float(sum((ok[g] & (p[g] > threshold)).mean() for g in groups))
    multi_sent_mask = best_p > threshold
    # matched: the highest threshold at which stage 2 sends as many qualified sequences as
    # stage 1 alone (rounded down), i.e. the top-k products by their best p
    order = np.argsort(-best_p, kind="mergesort")
    cum_q = np.cumsum(best_ok[order])
    target = min(int(np.floor(s1_qual)), int(cum_q[-1]))
    k = int(np.searchsorted(cum_q, target, side="left")) + 1 if target > 0 else 1
    matched_sent = k
    matched_qual = int(cum_q[k - 1])
    choice = {
        "products": len(groups), "sequences_per_product": n / max(1, len(groups)),
        "stage1_sent": len(groups), "stage1_qualified": s1_qual,
        "stage1_reject_share": 1 - s1_qual / max(1, len(groups)),
        "matched_threshold": float(best_p[order[k - 1]]), "matched_sent": matched_sent,
        "matched_qualified": matched_qual, "matched_reject_share": 1 - matched_qual / matched_sent,
        "single_sent": single_sent, "single_qualified": single_qual,
        "single_reject_share": 1 - single_qual / single_sent if single_sent else float("nan"),
        "multi_sent": int(multi_sent_mask.sum()), "multi_qualified": int((best_ok & multi_sent_mask).sum()),
        "multi_reject_share": float(1 - best_ok[multi_sent_mask].mean()) if multi_sent_mask.any() else float("nan"),
        "products_with_a_qualified_sequence": int(sum(ok[g].any() for g in groups)),
        "matched_reached": bool(cum_q[-1] >= np.floor(s1_qual)),
    }
    choice["reduction"] = 1 - choice["matched_reject_share"] / choice["stage1_reject_share"] \
        if choice["stage1_reject_share"] > 0 else float("nan")
    filt["reduction"] = 1 - filt["stage2_reject_share"] / filt["stage1_reject_share"] \
        if filt["stage1_reject_share"] > 0 else float("nan")
    return {"threshold": threshold, "filter": filt, "choice": choice}


# --- plots ------------------------------------------------------------------------------------

def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path) -> list[Path]:
    """ROC and PR curves of several models on one evaluation set, as small PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=90)
        for name, (y, s) in curves.items():
            if kind == "roc":
                fpr, tpr = metrics.roc_curve(y, s)
                ax.plot(fpr, tpr, label=f"{name} ({metrics.roc_auc(y, s):.3f})", lw=1.4)
            else:
                prec, rec, _ = metrics.pr_curve(y, s)
                ax.plot(rec, prec, label=name, lw=1.4)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
            ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, positive = qualified")
        else:
            for p in (0.8, 0.85, 0.9):
                ax.axhline(p, ls=":", c="grey", lw=0.6)
            ax.set(xlabel="recall (qualified)", ylabel="precision", title="precision-recall")
        ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
        fig.tight_layout()
        path = out_dir / f"stage2_{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


# --- markdown ---------------------------------------------------------------------------------

def _f(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def metrics_table(rows: list[tuple[str, dict]]) -> str:
    head = "| model | AUC | R@P=0.8 | R@P=0.85 | R@P=0.9 | AUC-single | AUC-pair | AUC-multi |\n|---|---|---|---|---|---|---|---|"
    lines = [head] + [f"| {name} | {_f(m['auc'])} | {_f(m['r@p0.8'])} | {_f(m['r@p0.85'])} | {_f(m['r@p0.9'])} | "
                      f"{_f(m['auc_single'])} | {_f(m['auc_pair'])} | {_f(m['auc_multi'])} |" for name, m in rows]
    return "\n".join(lines)


def confusion_table(true: list[str], pred: list[str]) -> str:
    classes = [c for c in rules.CLASSES if c in set(true) | set(pred)]
    cm = metrics.confusion(true, pred, tuple(classes))
    short = {c: c.replace("primary_", "p_").replace("_", " ") for c in classes}
    head = "| true \\ predicted | " + " | ".join(short[c] for c in classes) + " | recall |\n|---" * 1 + "|---" * (len(classes) + 1) + "|"
    lines = [head]
    for i, c in enumerate(classes):
        rec = cm[i, i] / max(1, cm[i].sum())
        lines.append(f"| **{c}** | " + " | ".join(str(v) if v else "." for v in cm[i]) + f" | {rec:.2f} |")
    return "\n".join(lines)
