"""Install a trained MUIsC as a model version's stage 2, with its model card (README.md)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from stage2 import checkpoint

BACKBONE_NOTE = (
    "Image tokens come from the project's shared backbone (`weights/mobilenet_v2/`): Google's ImageNet "
    "MobileNetV2 1.0/224 from the Coral TFLite files, Apache-2.0 (see weights/mobilenet_v2/MODEL_CARD.md "
    "for its notice and sha256), imported by stage 1 and run in float32 (stage1/backbone.py says why). The backbone is frozen; it is not part "
    "of these weights.")


def install(best: str | Path, target: str | Path) -> Path:
    """Copy a checkpoint directory (config.json, model.safetensors, tokenizer.json) to `target`
    and write its model card; the checkpoint is verified (sha256, shapes) first."""
    best, target = Path(best), Path(target)
    checkpoint.load(best)  # strict: refuses a broken or altered checkpoint
    target.mkdir(parents=True, exist_ok=True)
    meta = checkpoint.read_meta(best)
    for name in [checkpoint.CONFIG, *meta["files"]]:
        shutil.copy2(best / name, target / name)
    # the scoring path in ONNX: MUIsCStage2 serves explain=False requests with ONNX Runtime,
    # measured faster than eager PyTorch (`agpis bench stage2`)
    from stage2.export import ONNX_FILE, export_scoring

    model, _, _ = checkpoint.load(target)
    export_scoring(model, target / ONNX_FILE)
    checkpoint.add_file(target, ONNX_FILE)
    (target / GOLDEN).write_text(json.dumps(golden_scores(target), indent=2) + "\n")
    write_card(target)
    return target


GOLDEN = "golden.json"


def golden_scores(directory: str | Path) -> dict:
    """Scores of fixed inputs (procedural demo products, the shipped backbone) kept beside the
    weights: a test recomputes them, so a changed backbone, tokenizer or model code that would
    silently change what the shipped weights say is caught."""
    import torch

    from stage2.bench import demo_inputs, sequences_of
    from stage2.scorer import MUIsCStage2

    torch.set_num_threads(1)
    s2 = MUIsCStage2(directory)
    out = []
    for title, ims in demo_inputs(3):
        for sc in s2.score(title, sequences_of(ims, n=2), None, explain=True):
            out.append({"title": title, "ids": sc.ids, "p_qualified": round(sc.p_qualified, 5), "rule": sc.rule,
                        "feedback": sc.feedback})
    return {"inputs": "agpis.data.synth.demo_products(4, seed=0, size=800)[:3], 2 sequences each",
            "scores": out}


def write_card(directory: str | Path, evaluation: dict | None = None) -> Path:
    """README.md from the checkpoint's own config.json (and the evaluation, when given)."""
    directory = Path(directory)
    meta = checkpoint.read_meta(directory)
    m, t = meta["model"], meta.get("train", {})
    data_card = Path(t.get("data", "")) / "CARD.md"
    lines = [
        f"# Model card: MUIsC default ({meta['version']})",
        "",
        "Stage 2 of AGPIS: the Multi-modality Unified Image-sequence Classifier of Fan et al., KDD'22 (§3.4), "
        "in the project's CPU configuration. It reads a 3-image sequence with the product title and returns "
        "p_qualified (the probability that reviewers accept it), the most likely rule, and a generated "
        "feedback sentence that explains a rejection.",
        "",
        "## Architecture",
        f"- image tokens: the frozen backbone's final 7x7x{m['feature_dim']} map per image (49 cell tokens"
        f"{' + 1 mean-pooled token' if m['pooled_token'] else ''}), LayerNorm, projected to d={m['d_model']}",
        f"- hierarchical encoder: learned positions over all {m['n_images']} images' tokens"
        f"{' (plus image-index and cell embeddings)' if m.get('factored_pos') else ''}, "
        f"N_s={m['n_enc_layers']} transformer block(s), {m['n_head']} heads",
        f"- decoder: GPT-2-style, N_d={m['n_dec_layers']} blocks, cross-attention in blocks {m['cross_layers']}; "
        f"text `title [SEP] feedback [EOS]`, WordPiece vocabulary of {m['vocab_size']} trained on the "
        "training titles and feedback (tokenizer.json)",
        f"- heads: class head at [SEP] over {len(meta['classes'])} classes (agpis.rules.CLASSES by name), "
        "LM head tied to the token embedding; loss 1.0 x class CE + 0.1 x LM",
        f"- {meta['n_params']:,} parameters, stored as float16 (loaded as float32)",
        "",
        "## Training",
        f"- data: `{t.get('data', '?')}` train split ({t.get('n_train', '?')} sequences), synthetic AGPIS-data "
        f"built by `agpis data build` from real product photos (see {data_card} for sources and licences: "
        "the Magento Luma sample catalogue, Open Software License 3.0 (magento/magento2-sample-data: real "
        "studio listings, about two thirds of the listings); GroceryStoreDataset MIT; ABO CC BY 4.0 (credit "
        "Amazon.com and the ABO authors); JD examples MIT); nothing of it is shipped here",
        f"- {t.get('epochs', '?')} epochs max, batch {t.get('batch_size', '?')}, AdamW lr {t.get('lr', '?')}, "
        f"weight decay {t.get('weight_decay', '?')}, dropout {t.get('dropout', '?')}, seed {t.get('seed', '?')}; "
        f"best epoch {t.get('epoch', '?')} by validation AUC ({t.get('val_auc', float('nan')):.4f})",
        *([f"- mismatched-title negatives: each epoch {t['title_negatives']:.0%} of the training sequences, drawn "
           "among the qualified ones whose title names a colour, get that colour word swapped for another, "
           "labelled title_mismatch (stage2.data.with_title_negatives)"]
          if t.get("title_negatives") else []),
        f"- command: `agpis train muisc --data {t.get('data', '?')} --epochs {t.get('epochs', '?')} "
        f"--install {directory}`",
        "",
        "## Base weights",
        BACKBONE_NOTE,
        "",
    ]
    if evaluation:
        ev = evaluation
        lines += ["## Evaluation", f"On `{ev['data']}` {ev['split']} split, {ev['styles']} styles "
                  f"({ev['n']} sequences); full tables in docs/evaluation.md (`agpis eval muisc`).", "",
                  f"- ROC AUC {ev['auc']:.3f}; R@P=0.8/0.85/0.9 {ev['r@p0.8']:.3f} / {ev['r@p0.85']:.3f} / "
                  f"{ev['r@p0.9']:.3f}; AUC single/pair/multi {ev['auc_single']:.3f} / {ev['auc_pair']:.3f} / "
                  f"{ev['auc_multi']:.3f}", ""]
    cal = meta.get("calibration")
    if cal or "novelty.npz" in meta["files"]:
        lines += ["## Calibration and the uncertain band (`agpis calibrate muisc`)", ""]
        if cal:
            lines.append(f"- p_qualified is Platt-scaled, sigmoid({cal['a']:.3f} x logit(p) + {cal['b']:.3f}), fitted "
                         f"on {cal.get('fitted_on', 'real validation listings')}: expected calibration error on the "
                         f"real test records {cal.get('ece_test_before', float('nan')):.3f} -> "
                         f"{cal.get('ece_test_after', float('nan')):.3f} (docs/evaluation.md)")
        if "novelty.npz" in meta["files"]:
            lines.append("- `novelty.npz`: principal components and a sample of the training images' pooled "
                         "backbone maps (no pixels); a sequence whose images are farther from them than the "
                         "threshold stored inside (a high percentile of held-out validation sequences) is sent "
                         "to reviewers marked uncertain instead of rejected (stage2.novelty)")
        lines.append("")
    lines += ["## Files (sha256)", ""] + [f"- `{name}` {digest}" for name, digest in meta["files"].items()]
    lines += ["", "## Limits",
              "- trained on one real catalogue's listings (about 70 training styles of the Magento Luma store) and "
              "synthetic violations rendered onto a few hundred real products; another store's photography and "
              "real reviewer data will differ (the paper trained on 700K reviewed sequences); real-listing "
              "numbers: `agpis eval listings` in docs/evaluation.md",
              "- scores sequences of exactly 3 images; English titles and feedback only",
              "- a title that names another colour than the images show (`title_mismatch`) is learned from the "
              "catalogue's real colour variants only; the frozen 224-px backbone map is its only view of colour",
              ""]
    path = directory / "README.md"
    path.write_text("\n".join(lines))
    return path


