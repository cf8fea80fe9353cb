"""The model card of a trained stage 1 directory (written by `agpis train stage1`)."""
from __future__ import annotations

import json
from pathlib import Path


def _f(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def write_card(out: Path, info: dict) -> Path:
    from stage1.model import MANIFEST

    m = json.loads((out / MANIFEST).read_text())
    base = info["base"]
    res = info["metrics"]
    variants = ("`chosen` is the shipped model; the other variants are the measurement behind the design (both\n"
                "models MLP, both linear, the chosen widths without the check measurements)." if len(res) > 1 else
                "`chosen` is the shipped model (trained without `--compare`, so no variants here: the\n"
                "comparison behind its widths is in the git history of this card).")
    rows = ["| variant | hidden (primary, non-compliant) | check inputs | split | subset | primary AUC | primary P / R | non-compliant AUC | non-compliant P / R |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        for split in ("val", "test"):
            for subset, s in r[split].items():
                rows.append(f"| {name} | {r['hidden']} | {r['use_checks']} | {split} | {subset} | "
                            f"{_f(s['primary']['auc'])} | {_f(s['primary']['precision'])} / {_f(s['primary']['recall'])} | "
                            f"{_f(s['noncompliant']['auc'])} | {_f(s['noncompliant']['precision'])} / "
                            f"{_f(s['noncompliant']['recall'])} |")
    chosen = res["chosen"]["test"]
    rule_rows = ["| rule | " + " | ".join(f"{k}: n / recall / AUC" for k in chosen) + " |",
                 "|---" * (1 + len(chosen)) + "|"]
    rules_seen = sorted({r for s in chosen.values() for r in s["per_rule"]})
    for rule in rules_seen:
        cells = []
        for s in chosen.values():
            x = s["per_rule"].get(rule)
            cells.append(f"{x['n']} / {_f(x['recall'])} / {_f(x['auc'])}" if x else "–")
        rule_rows.append(f"| {rule} | " + " | ".join(cells) + " |")
    text = f"""# Stage 1 model card: {m['version']}

Written by `agpis train stage1` (stage1/train.py, stage1/card.py). Loaded by `stage1.load()`
through `weights/default/manifest.json`.

## What it is
Stage 1 of AGPIS (paper §3.3): the primary-image model and the non-compliant model are small
heads (hidden widths: primary {m['heads']['config']['hidden_primary']}, non-compliant
{m['heads']['config']['hidden_noncompliant']}, 0 = linear; outputs {', '.join(m['heads']['outputs'])})
on the features of a frozen ImageNet MobileNetV2 (average- and max-pooled final and patch maps)
plus the explainable checks' measurements. The same backbone maps serve the duplicate detector
(EdgeBoxes + patch kNN) and stage 2. Thresholds: each output's F1-best threshold on the
validation split is moved to p = 0.5 (logit offsets stored with the heads).

## Files
| file | sha256 |
|---|---|
| `{m['backbone']['onnx']}` (ONNX trunk) | `{m['backbone']['sha256']}` |
| `{m['heads']['file']}` (heads, float16 weights) | `{m['heads']['sha256']}` |
| `{m['backbone']['info']}`, `{MANIFEST}` | configuration, preprocessing, provenance, metrics |

## Base weights
Google Coral's ImageNet MobileNetV2 1.0/224 (`{base['source']}`, sha256 `{base['source_sha256']}`),
**Apache License 2.0**, Copyright Google LLC; converted by `agpis weights import` (dequantised,
exported to ONNX; quantisation: {base['quantisation']}). The licence text is at
https://www.apache.org/licenses/LICENSE-2.0; the backbone file here is a derivative work under it.
The heads were trained by this project.

## Data
{chr(10).join(f"- `{d}`: {c or 'AGPIS-data'}" for d, c in zip(info['trained_on']['datasets'], info['trained_on']['cards']))}

(docs/data.md: synthetic labels over real product photos from ../shared, and drawn products,
one row per candidate image of each listing.) Sources and licences of the photos: the Magento
Luma sample catalogue (magento/magento2-sample-data), **Open Software License 3.0**: real studio
listings (main, back and close-up views, colour variants), about two thirds of the listings;
GroceryStoreDataset, MIT; Amazon Berkeley Objects samples, CC BY 4.0 (credit Amazon.com and the
ABO authors); JD MUIsC examples, MIT; drawn products (no external images). No photo is shipped
here. Candidates:
{info['trained_on']['n_train']} train, {info['trained_on']['n_val']} val, {info['trained_on']['n_test']} test
(splits by product group; half of val/test products use violation styles never seen in
training: `heldout_styles`). Seed {info['trained_on']['seed']}, {info['trained_on']['epochs']} epochs,
{info['train_seconds']} s including feature caching.

## Metrics (candidate level, operating threshold)
{variants} `family:<x>` rows:
candidates of one product family; `jd` (one product, sandals, only in val) is the only family
that never appears in training, so it shows how each variant carries over to a new kind of
product.

{chr(10).join(rows)}

Recall per single-image rule on test (share of that rule's images flagged non-compliant; AUC of
the rule's own output):

{chr(10).join(rule_rows)}

Whole-pipeline numbers (listings, real photos, duplicates, latency): docs/evaluation.md and
docs/benchmarks.md (`agpis eval stage1 --duplicates`, `agpis bench stage1`).

## Limits
- Trained on one real catalogue (about 70 training styles of one store's studio photography:
  apparel on models, bags, gear) and rendered violations over few other products (81 grocery
  products, 3 ABO listings, 1 JD product, drawn products): another store's photography may
  differ; real reviewed data (`source: review`) is the remedy. Real-listing numbers:
  `agpis eval listings` (docs/evaluation.md).
- `primary_ok` is the builder's definition (front/pack view, white, fill >= ~0.7, no violation),
  not the paper's "first image of an approved sequence".
- The backbone is frozen ImageNet MobileNetV2 at 224 px: small marks (a corner logo in a
  512 px image) are a few feature cells; the text detector and the max-pooling help.
"""
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path
