"""`agpis train stage1`: cache the frozen backbone's features of every candidate once, then train
the primary / non-compliant heads on them (seconds per epoch), choose operating thresholds on the
validation split, and write a self-describing stage 1 directory (weights/default/stage1).

Class imbalance: each output's BCE uses pos_weight = sqrt(negatives / positives) (rare rules
are ~2% of candidates; the full ratio made the heads fire on everything, the square root
balances recall and precision), and the operating thresholds are chosen on the validation split
(max F1) rather than left at 0.5.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from stage1.data import SINGLE_RULES, Candidate, listings

CACHE_VERSION = 1


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def extract(cands: list[Candidate], backbone, check_cfg, batch: int = 16, desc: str = "features") -> dict:
    """Backbone + checks for every candidate, as the serving pipeline computes them (stage1.model
    uses the same functions): pooled head input (float16), check vector, labels, metadata."""
    from tqdm import tqdm

    from stage1.backbone import preprocess
    from stage1.checks import check_vector, run_checks
    from stage1.heads import head_input

    pooled, checks = [], []
    for i in tqdm(range(0, len(cands), batch), desc=desc, unit="batch", mininterval=5):
        chunk = cands[i:i + batch]
        ims = [load_rgb(c.path) for c in chunk]
        small = [s for s in resize_224(ims, backbone.preprocessing.size)]
        f = backbone.features(small)
        cv = np.stack([check_vector(run_checks(s, c.size, check_cfg)) for s, c in zip(small, chunk)])
        pooled.append(head_input(f["final"], f["patch"], None).astype(np.float16))
        checks.append(cv)
    return {
        "pooled": np.concatenate(pooled), "checks": np.concatenate(checks),
        "primary": np.array([c.primary_ok for c in cands]),
        "rules": np.array([[r in c.rules for r in SINGLE_RULES] for c in cands]),
        "style_split": np.array([c.style_split for c in cands]), "view": np.array([c.view for c in cands]),
        "group": np.array([c.group for c in cands]), "product_id": np.array([c.product_id for c in cands]),
        "index": np.array([c.index for c in cands]), "path": np.array([str(c.path) for c in cands]),
    }


def resize_224(ims: list[np.ndarray], size: int) -> list[np.ndarray]:
    """The backbone's input size, resized once: the checks read the same copy (stage1.model)."""
    from stage1.proposals import square_copy

    return [square_copy(im, size) for im in ims]


def cached_features(dataset: Path, split: str, backbone, check_cfg, cache_dir: Path) -> dict:
    """Features of one split, from var/ when the dataset, backbone and check settings match."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = {"v": CACHE_VERSION, "dataset": str(dataset.resolve()), "split": split,
           "backbone": backbone.info.onnx_sha256, "checks": asdict(check_cfg),
           "dataset_mtime": (dataset / f"{split}.jsonl").stat().st_mtime}
    path = cache_dir / f"{dataset.name}-{split}.npz"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == key:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    cands = [c for cs in listings(dataset, split).values() for c in cs]
    feats = extract(cands, backbone, check_cfg, desc=f"{dataset.name}/{split}")
    np.savez(path, **feats)
    meta.write_text(json.dumps(key))
    return feats


def targets(d: dict) -> np.ndarray:
    """(N, n_outputs) float32 in OUTPUTS order: primary, noncompliant (any rule), each rule."""
    rules = d["rules"].astype(np.float32)
    return np.concatenate([d["primary"][:, None].astype(np.float32), rules.max(1, keepdims=True), rules], axis=1)


def inputs(d: dict, use_checks: bool) -> np.ndarray:
    x = d["pooled"].astype(np.float32)
    return np.concatenate([x, d["checks"]], axis=1) if use_checks else x


def fit_heads(train: dict, val: dict, cfg, epochs: int = 40, lr: float = 1e-3, seed: int = 0, log=print):
    """Train `Heads` on cached features; keep the epoch with the best mean validation AUC."""
    import torch

    from stage1.heads import Heads
    from stage1.metrics import roc_auc

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = inputs(train, cfg.use_checks), targets(train)
    xv, yv = inputs(val, cfg.use_checks), targets(val)
    model = Heads(cfg)
    model.mean.copy_(torch.from_numpy(x.mean(0)))
    model.std.copy_(torch.from_numpy(x.std(0) + 1e-3))
    pos = y.sum(0)
    pos_weight = torch.from_numpy(np.sqrt((len(y) - pos) / np.maximum(pos, 1)).astype(np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xv)
    best = (-1.0, None, -1)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(order), 256):
            idx = torch.from_numpy(order[i:i + 256])
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            pv = torch.sigmoid(model(xvt)).numpy()
        aucs = [roc_auc(pv[:, k], yv[:, k]) for k in range(yv.shape[1]) if 0 < yv[:, k].sum() < len(yv)]
        score = float(np.nanmean(aucs[:2]) * 0.5 + np.nanmean(aucs) * 0.5)
        if score > best[0]:
            best = (score, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        if epoch % 5 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch:3d} loss {total / len(x):.4f} val AUC primary {aucs[0]:.3f} nc {aucs[1]:.3f} "
                f"mean {np.nanmean(aucs):.3f}")
    model.load_state_dict(best[1])
    log(f"best epoch {best[2]} (val score {best[0]:.4f})")
    return model.eval()


def choose_offsets(model, val: dict) -> dict[str, float]:
    """Per output, the threshold with the best F1 on validation; set the model's logit offset so
    that this threshold becomes p = 0.5. Returns the thresholds (in the uncalibrated p)."""
    import torch

    from stage1.metrics import best_f1_threshold

    xv, yv = inputs(val, model.config.use_checks), targets(val)
    with torch.no_grad():
        pv = torch.sigmoid(model(torch.from_numpy(xv))).numpy()
    thresholds = {}
    offsets = np.zeros(len(model.config.outputs), np.float32)
    for k, name in enumerate(model.config.outputs):
        if 0 < yv[:, k].sum() < len(yv):
            t = best_f1_threshold(pv[:, k], yv[:, k])
        else:
            t = 0.5
        t = float(np.clip(t, 0.02, 0.98))
        thresholds[name] = t
        offsets[k] = math.log(t / (1 - t))
    model.offset.copy_(torch.from_numpy(offsets))
    return thresholds


def save_stage1(model, out: Path, base_dir: Path, info: dict) -> Path:
    """weights/<version>/stage1: the trunk (copied from the imported base), the heads, and
    stage1.json describing both (config, outputs by name, sha256, provenance, metrics)."""
    from safetensors.torch import save_file

    from stage1.backbone import BACKBONE_JSON, BackboneInfo, remove_other_trunks
    from stage1.model import FORMAT, HEADS_FILE, MANIFEST
    from stage1.tflite_import import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    onnx_file = BackboneInfo.read(base_dir / BACKBONE_JSON).onnx_file
    remove_other_trunks(out, onnx_file)  # the trunk of an earlier version
    for name in (onnx_file, BACKBONE_JSON):
        if (base_dir / name).resolve() != (out / name).resolve():
            shutil.copyfile(base_dir / name, out / name)
    state = {k: (v if k in ("mean", "std", "offset") else v.half()).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / HEADS_FILE))
    manifest = {
        "format": FORMAT,
        "version": info["version"],
        "backbone": {"onnx": onnx_file, "info": BACKBONE_JSON, "sha256": sha256_file(out / onnx_file)},
        "heads": {"file": HEADS_FILE, "sha256": sha256_file(out / HEADS_FILE),
                  "config": {k: v for k, v in asdict(model.config).items()},
                  "outputs": list(model.config.outputs)},
        **{k: v for k, v in info.items() if k != "version"},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def merge(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_training(datasets: list[Path], out: Path, base_dir: Path, epochs: int, hidden: tuple[int, int],
                 use_checks: bool, seed: int, cache_dir: Path, compare: bool, log=print) -> dict:
    from stage1.backbone import INT8_FILE, Backbone
    from stage1.checks import CheckConfig
    from stage1.heads import HeadsConfig
    from stage1.metrics import head_metrics

    t0 = time.time()
    check_cfg = CheckConfig()
    backbone = Backbone(base_dir, threads=1)
    data = {s: merge([cached_features(d, s, backbone, check_cfg, cache_dir) for d in datasets])
            for s in ("train", "val", "test")}
    log(f"features ready in {time.time() - t0:.0f} s: " + ", ".join(f"{s} {len(d['primary'])}" for s, d in data.items()))

    variants = {"chosen": (hidden, use_checks)}
    if compare:  # the measurement behind the head design (model card)
        variants.update({"mlp_both": ((256, 256), use_checks), "linear_both": ((0, 0), use_checks),
                         "no_checks": (hidden, False)})
    results, models = {}, {}
    for name, (h, uc) in variants.items():
        cfg = HeadsConfig(hidden_primary=h[0], hidden_noncompliant=h[1], use_checks=uc)
        model = fit_heads(data["train"], data["val"], cfg, epochs=epochs, seed=seed, log=log)
        thresholds = choose_offsets(model, data["val"])
        results[name] = {"hidden": list(h), "use_checks": uc, "val_thresholds": thresholds,
                         "val": head_metrics(model, data["val"]), "test": head_metrics(model, data["test"])}
        models[name] = model
        log(f"{name}: val AUC primary {results[name]['val']['all']['primary']['auc']:.3f} "
            f"nc {results[name]['val']['all']['noncompliant']['auc']:.3f}")
    model = models["chosen"]
    info = {
        # the trunk's precision in the name: heads trained on one trunk's maps mean nothing on another's
        "version": f"stage1-mnv2{'int8' if backbone.info.onnx_file == INT8_FILE else 'f32'}-heads-{time.strftime('%Y%m%d')}",
        "trained_on": {"datasets": [str(d) for d in datasets], "cards": [_card_head(d) for d in datasets],
                       "seed": seed, "epochs": epochs,
                       "n_train": int(len(data["train"]["primary"])), "n_val": int(len(data["val"]["primary"])),
                       "n_test": int(len(data["test"]["primary"]))},
        "base": json.loads((base_dir / "backbone.json").read_text()),
        "metrics": results,
        "train_seconds": round(time.time() - t0, 1),
    }
    save_stage1(model, out, base_dir, info)
    log(f"wrote {out} in {time.time() - t0:.0f} s")
    return info


def _card_head(dataset: Path) -> str:
    card = dataset / "CARD.md"
    if not card.exists():
        return ""
    lines = [ln for ln in card.read_text().splitlines() if ln.startswith("- `agpis data")]
    return lines[0][2:] if lines else ""
