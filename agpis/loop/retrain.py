"""`agpis retrain`: the quarterly loop (paper §5.1: retrained every 3 months on the last 3
months of reviews), champion/challenger style.

1. Export the verdicts of the window (`--since 90d`) as AGPIS-data records (source=review).
2. Split them by product: a held-out part never trained on, the rest (plus optional base data)
   for training and model selection.
3. Train a challenger MUIsC (stage 2) from scratch on that, as the paper does each quarter.
4. Score the held-out reviewed sequences with the champion (the registry's CURRENT, else the
   configured model) and with the challenger, through the same `Stage2.score` the server uses.
5. Promote the challenger only if its ROC AUC beats the champion's by `--margin`. Every
   challenger is kept as a version directory (weights, tokenizer, configuration, model card,
   metrics), promoted or not, and the decision is appended to the registry's history.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from agpis import models, rules
from agpis.config import Config
from agpis.loop.export import export_reviews, parse_since
from agpis.loop.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


class RetrainError(RuntimeError):
    pass


@dataclass
class RetrainConfig:
    since: str = "90d"  # the review window: 90d, 12h, or an ISO date
    registry: str = "var/models"
    base_data: str = ""  # an AGPIS-data dataset directory added to the training data
    work_dir: str = "var/retrain"
    margin: float = 0.005  # the challenger's AUC must beat the champion's by this much
    heldout_fraction: float = 0.25  # of reviewed products, never trained on
    min_heldout: int = 10  # fewer held-out sequences (or only one class): no decision
    seed: int = 0
    # Passed to stage 2's TrainConfig (epochs, batch_size, lr, d_model, max_steps, ...).
    train: dict = field(default_factory=dict)


def _bucket(product_id: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{product_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_reviews(records: list[dict], heldout_fraction: float, seed: int) -> tuple[list, list, list]:
    """By product (no product in two parts): -> (train, val, heldout)."""
    train, val, heldout = [], [], []
    for r in records:
        b = _bucket(r["product_id"], seed)
        (heldout if b < heldout_fraction else val if b < heldout_fraction + 0.1 else train).append(r)
    return train, val, heldout


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC with ties counted half (a constant scorer gets exactly 0.5)."""
    from stage2.metrics import roc_auc

    return float(roc_auc(y, score))


def score_records(stage2, records: list[dict], config: Config) -> np.ndarray:
    """p_qualified of each record's sequence, read and decoded as the service does."""
    from agpis.data.format import Record
    from agpis.images import decode

    out = []
    for r in records:
        rec = Record.from_dict(r)
        images = []
        for n, i in enumerate(rec.sequence):
            src = rec.path(i)
            data = Path(src).read_bytes() if isinstance(src, Path) else _read_uri(src)
            images.append(decode(f"{n}", data, config.images, rec.candidates[i]))
        out.append(stage2.score(rec.title, [images], None, explain=False)[0].p_qualified)
    return np.asarray(out, np.float64)


def _read_uri(uri: str) -> bytes:
    import fsspec

    with fsspec.open(uri, "rb") as f:
        return f.read()


def champion_dir(config: Config, registry: Registry) -> Path:
    return registry.current() or models.resolve(config.pipeline.model)


def evaluate_version(version_dir: Path, records: list[dict], config: Config) -> dict:
    manifest = models.read_manifest(version_dir)
    stage2 = models.load_stage("stage2", manifest["stage2"], version_dir, config.stage2)
    p = score_records(stage2, records, config)
    y = np.asarray([r["label"] == rules.QUALIFIED for r in records], np.int64)
    return {"version": manifest["version"], "stage2": stage2.version, "auc": auc(y, p),
            "n": len(records), "n_qualified": int(y.sum())}


def build_challenger(registry: Registry, name: str, champion: Path, trained: Path, metrics: dict,
                     rcfg: RetrainConfig, n_reviews: int) -> Path:
    """A complete version directory: the champion's stage 1, the new stage 2, card, metrics."""
    staging = registry.new_version_dir(name)
    champ_manifest = models.read_manifest(champion)
    stage1 = champ_manifest["stage1"]
    if stage1.get("kind") == "learned":
        shutil.copytree(champion / stage1.get("path", "stage1"), staging / "stage1")
        stage1 = {"kind": "learned", "path": "stage1"}
    shutil.copytree(trained, staging / "stage2")
    manifest = {"version": name, "stage1": stage1, "stage2": {"kind": "learned", "path": "stage2"},
                "parent": champ_manifest["version"]}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (staging / "MODEL_CARD.md").write_text(
        f"# Model version {name}\n\n"
        f"Made by `agpis retrain` on {datetime.now(timezone.utc).date()}.\n\n"
        f"- Stage 1: as in `{champ_manifest['version']}` (not retrained).\n"
        f"- Stage 2: MUIsC trained from scratch on {n_reviews} reviewed sequences from the window "
        f"`--since {rcfg.since}`" + (f" plus the base dataset `{rcfg.base_data}`" if rcfg.base_data else "") +
        ". Base weights: the imported ImageNet MobileNetV2 (Apache-2.0), frozen; see stage2/MODEL_CARD.md.\n"
        f"- Held-out reviewed sequences: {metrics['challenger']['n']} "
        f"({metrics['challenger']['n_qualified']} approved).\n\n"
        f"| model | ROC AUC on held-out reviews |\n|---|---|\n"
        f"| champion `{metrics['champion']['version']}` | {metrics['champion']['auc']:.4f} |\n"
        f"| this challenger | {metrics['challenger']['auc']:.4f} |\n\n"
        f"Promotion needs a gain of at least {rcfg.margin}; decision: **{metrics['decision']}**.\n")
    return registry.add(staging)


def retrain(config: Config, rcfg: RetrainConfig, queue=None, log=print) -> dict:
    """Run the whole loop once. -> the decision report (also in the registry's history)."""
    from agpis.data.format import load_dataset, write_records
    from stage2.train import TrainConfig, train

    t0 = time.time()
    registry = Registry(rcfg.registry)
    if queue is None:
        from agpis.queue import ReviewQueue
        from agpis.redisconn import RedisHandle

        handle = RedisHandle(config.queue)
        try:
            return retrain(config, rcfg, ReviewQueue(handle.client, config.queue), log)
        finally:
            handle.close()

    records, problems = export_reviews(queue, parse_since(rcfg.since))
    for p in problems:
        log(f"skipped: {p}")
    train_r, val_r, heldout = split_reviews(records, rcfg.heldout_fraction, rcfg.seed)
    log(f"{len(records)} reviewed sequences since {rcfg.since}: {len(train_r)} train, {len(val_r)} val, "
        f"{len(heldout)} held out for the champion/challenger comparison")
    y_held = {r["label"] == rules.QUALIFIED for r in heldout}
    if len(heldout) < rcfg.min_heldout or len(y_held) < 2:
        raise RetrainError(f"only {len(heldout)} held-out reviewed sequences (need {rcfg.min_heldout}, with both "
                           f"approvals and rejections): not enough to compare models; wait for more reviews")

    name = f"r{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    work = Path(rcfg.work_dir) / name
    data_dir = work / "data"
    base_train, base_val = [], []
    if rcfg.base_data:
        base_train = [r.to_dict() for r in load_dataset(rcfg.base_data, "train")]
        base_val = [r.to_dict() for r in load_dataset(rcfg.base_data, "val")]
        base_dir = Path(rcfg.base_data).resolve()
        for r in base_train + base_val:  # make relative image paths absolute: the data moves
            r["candidates"] = [c if "://" in c or c.startswith("/") else str(base_dir / c) for c in r["candidates"]]
    val = val_r + base_val
    if len({r["label"] == rules.QUALIFIED for r in val}) < 2:
        log("warning: the validation part lacks approvals or rejections; selecting the epoch on training data")
        val = train_r + base_train
    write_records(data_dir / "train.jsonl", train_r + base_train)
    write_records(data_dir / "val.jsonl", val)
    write_records(data_dir / "test.jsonl", heldout)

    tcfg = TrainConfig(**{"data": str(data_dir), "out": str(work / "run"), "cache_dir": str(work / "cache"),
                          "version": f"muisc-{name}", "seed": rcfg.seed, **rcfg.train})
    log(f"training the challenger ({tcfg.epochs} epochs) in {work}")
    trained = train(tcfg)
    if not (trained / "config.json").is_file():
        raise RetrainError(f"training produced no checkpoint in {trained}")

    champion = champion_dir(config, registry)
    log(f"evaluating champion {champion.name} and the challenger on {len(heldout)} held-out reviewed sequences")
    champ = evaluate_version(champion, heldout, config)
    challenger_stage2 = models.load_stage("stage2", {"kind": "learned", "path": "."}, trained, config.stage2)
    p = score_records(challenger_stage2, heldout, config)
    y = np.asarray([r["label"] == rules.QUALIFIED for r in heldout], np.int64)
    chall = {"version": name, "stage2": challenger_stage2.version, "auc": auc(y, p), "n": len(heldout),
             "n_qualified": int(y.sum())}
    promote = chall["auc"] >= champ["auc"] + rcfg.margin
    metrics = {"champion": champ, "challenger": chall, "margin": rcfg.margin,
               "decision": "promoted" if promote else "not promoted",
               "reviews": len(records), "since": rcfg.since, "minutes": round((time.time() - t0) / 60, 2),
               "retrain_config": asdict(rcfg)}
    version_dir = build_challenger(registry, name, champion, trained, metrics, rcfg, len(records))
    if promote:
        registry.promote(name)
    registry.record({"version": name, "decision": metrics["decision"], "champion": champ["version"],
                     "champion_auc": champ["auc"], "challenger_auc": chall["auc"], "margin": rcfg.margin,
                     "reviews": len(records)})
    log(f"champion {champ['version']}: AUC {champ['auc']:.4f}; challenger {name}: AUC {chall['auc']:.4f}; "
        f"margin {rcfg.margin} -> {metrics['decision']} ({version_dir})")
    return metrics
