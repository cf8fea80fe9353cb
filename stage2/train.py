"""`agpis train muisc`: MUIsC and its baselines/ablations on AGPIS-data.

One loop for every variant (the paper's Table 2 baselines and Table 3 rows), so they are trained
the same way: AdamW, linear warm-up then cosine decay, the best epoch by validation AUC kept.

- features models (default): the frozen backbone's tokens come from a float16 cache built once
  (stage2.data.FeatureCache); a run costs only MUIsC's own layers.
- the paper configuration (`--paper`): ViT + GPT-2 from local directories, end to end on pixels.
- checkpoints: `out/last.pt` every `checkpoint_every` steps and at each epoch's end (model,
  optimiser, schedule, step, RNG); `--resume` continues from it, mid-epoch included.
- mixed precision on GPU (bf16 where supported, else fp16 with a grad scaler); `--amp bf16`
  also on CPU.
- distributed data parallel under `torchrun` (NCCL on GPU, gloo on CPU): each rank trains on
  its shard; rank 0 builds the tokenizer and cache, validates and writes checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from agpis import rules
from stage2.trainconfig import VARIANTS, TrainConfig  # noqa: F401  (re-exported)

@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if world > 1:
        import torch.distributed as dist

        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank, world, local, device)


def barrier(d: DistInfo) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def feature_source(cfg: TrainConfig, all_examples: list, d: DistInfo):
    """-> (source(keys) -> array, preprocessing dict). Rank 0 builds the cache, the others wait."""
    from stage2.data import cached_source

    kind = "mosaic" if cfg.spec.get("fusion") == "early" else "tokens"
    if d.main:
        cached_source(kind, all_examples, cfg.cache_dir, cfg.backbone, cfg.progress)
    barrier(d)
    return cached_source(kind, all_examples, cfg.cache_dir, cfg.backbone, progress=False)


def build_tokenizer(cfg: TrainConfig, examples, out: Path, d: DistInfo):
    from stage2.tokenizer import TextTokenizer

    path = out / "tokenizer.json"
    if d.main and not (cfg.resume and path.is_file()):
        texts = [e.title for e in examples] + [e.feedback for e in examples]
        TextTokenizer.train(texts, vocab_size=cfg.vocab_size).save(path)
    barrier(d)
    return TextTokenizer.load(path)


def build_model(cfg: TrainConfig, tokenizer):
    spec = cfg.spec
    if spec["arch"] == "single_tower":
        from stage2.baselines import SingleTower, SingleTowerConfig

        return SingleTower(SingleTowerConfig(fusion=spec["fusion"], dropout=cfg.dropout))
    from stage2.model import MUIsC, MUIsCConfig

    flags = dict(use_decoder=spec.get("use_decoder", True), use_title=spec.get("use_title", True))
    max_len = cfg.max_title + cfg.max_feedback + 2
    if cfg.paper:
        from stage2.paper import build_paper_model

        if not cfg.vit or not cfg.gpt2:
            raise ValueError("--paper needs --vit and --gpt2 (local directories or hub ids)")
        return build_paper_model(tokenizer.vocab_size, vit=cfg.vit, gpt2=cfg.gpt2, n_enc_layers=cfg.n_enc_layers,
                                 n_dec_layers=cfg.n_dec_layers, cross_layers=cfg.cross_layers,
                                 max_text_len=max_len, dropout=cfg.dropout, **flags)
    return MUIsC(MUIsCConfig(d_model=cfg.d_model, n_head=cfg.n_head, n_enc_layers=cfg.n_enc_layers,
                             factored_pos=cfg.factored_pos, token_dropout=cfg.token_dropout,
                             n_dec_layers=cfg.n_dec_layers, cross_layers=cfg.cross_layers, dropout=cfg.dropout,
                             vocab_size=tokenizer.vocab_size, max_text_len=max_len, **flags))


def param_groups(model, weight_decay: float):
    """No weight decay on biases, norms, embeddings and positions (nanoGPT)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "wte" not in name and "wpe" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def epoch_order(n: int, epoch: int, seed: int, d: DistInfo) -> list[int]:
    """Deterministic shuffled order of one epoch, this rank's shard (equal-sized shards)."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per = n // d.world
    return order[d.rank * per:(d.rank + 1) * per]


def balanced_class_weights(labels: list[str], classes: tuple[str, ...], power: float) -> torch.Tensor | None:
    """(C,) CE weights share_c ** -power, scaled so that the training examples' mean weight is 1
    (the loss keeps its size); classes absent from the data get the largest weight. None at 0."""
    if not power:
        return None
    counts = torch.tensor([sum(l == c for l in labels) for c in classes], dtype=torch.float64)
    share = counts / counts.sum()
    w = torch.where(counts > 0, share.clamp_min(1e-12) ** -power, torch.zeros_like(share))
    w = torch.where(counts > 0, w, w.max())
    w = w / (w * share).sum()
    return w.float()


def train(cfg: TrainConfig) -> Path:
    from tqdm import tqdm

    from stage2 import checkpoint, evaluate
    from stage2.data import SequenceDataset, collate, has_split, load_examples, pixel_source, with_title_negatives
    from stage2.model import muisc_loss

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = setup_distributed()
    seed_all(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _, train_ex = load_examples(cfg.data, "train")
    _, val_ex = load_examples(cfg.data, "val")
    # one feature cache over every split of the dataset: evaluation reuses it
    everything = train_ex + val_ex + (load_examples(cfg.data, "test")[1] if has_split(cfg.data, "test") else [])
    if cfg.limit:
        train_ex = train_ex[:cfg.limit]
    if cfg.val_limit:
        val_ex = val_ex[:cfg.val_limit]
    tokenizer = build_tokenizer(cfg, train_ex, out, d)
    model = build_model(cfg, tokenizer)
    if cfg.paper:
        from stage2.paper import VIT_PREPROCESSING

        vit = model.config.vit
        pre = {**VIT_PREPROCESSING, "image_size": vit["image_size"], "kind": "pixels"}
        source = pixel_source(pre["image_size"], pre["mean"], pre["std"])
    else:
        source, pre = feature_source(cfg, everything, d)
    mcfg = model.config
    class_weights = balanced_class_weights([e.label for e in train_ex], mcfg.classes, cfg.class_balance)
    if class_weights is not None:
        class_weights = class_weights.to(d.device)
    ds = SequenceDataset(train_ex, source, tokenizer, mcfg.classes, cfg.max_title, cfg.max_feedback,
                         mcfg.use_title)
    model.to(d.device)
    lm_weight = cfg.effective_lm_weight if mcfg.use_decoder else 0.0
    # models that never read the title would only see label noise in mismatched-title examples
    reads_title = mcfg.use_title and mcfg.use_decoder
    title_negatives = cfg.title_negatives if reads_title else 0.0
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))
    dtype = amp_dtype(cfg, d.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16 and d.device.type == "cuda")
    steps_per_epoch = len(ds) // d.world // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(ds)} training examples are fewer than one batch of {cfg.batch_size} per rank")
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    state = {"step": 0, "epoch": 0, "best_auc": -1.0, "history": []}
    params = dict(model.named_parameters())
    ema = {k: p.detach().clone() for k, p in params.items()} if cfg.ema else None
    last = out / "last.pt"
    if cfg.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        if ck["train_config"]["variant"] != cfg.variant:
            raise ValueError(f"{last} is a {ck['train_config']['variant']} run, not {cfg.variant}")
        model.load_state_dict(ck["model"], strict=True)
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        state = ck["state"]
        if ema is not None:
            ema = ck["ema"]
        torch.set_rng_state(ck["rng"])
        if d.main:
            print(f"resumed {last} at step {state['step']} (epoch {state['epoch']})")
    net = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)

    def save_last():
        if not d.main:
            return
        tmp = last.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                    "state": state, "rng": torch.get_rng_state(), "train_config": asdict(cfg), "ema": ema}, tmp)
        tmp.replace(last)  # atomic: an interrupted save never leaves a broken checkpoint

    t_start = time.time()
    while state["step"] < total:
        epoch = state["epoch"]
        order = epoch_order(len(ds), epoch, cfg.seed, d)
        ds.examples = with_title_negatives(train_ex, title_negatives, cfg.seed * 1000 + epoch)
        skip = state["step"] - epoch * steps_per_epoch  # resume mid-epoch
        batches = [order[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(skip, steps_per_epoch)]
        # own generator: creating a loader must not draw from the global RNG (exact resume)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=cfg.workers,
                                             collate_fn=lambda b: collate([ds[i] for i in b], tokenizer.pad_id),
                                             generator=torch.Generator().manual_seed(cfg.seed + epoch))
        net.train()
        bar = tqdm(loader, desc=f"{cfg.variant} epoch {epoch + 1}/{cfg.epochs}", disable=not (d.main and cfg.progress),
                   initial=skip, total=steps_per_epoch)
        seen = {"loss": 0.0, "n": 0}
        for batch in bar:
            if state["step"] >= total or (cfg.stop_at and state["step"] >= cfg.stop_at):
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], total, cfg.lr, cfg.warmup_steps)
            mask = batch["lm_targets"] != -100 if lm_weight > 0 else None
            with torch.autocast(d.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                o = net(batch["images"].to(d.device), batch["idx"].to(d.device), batch["sep_pos"].to(d.device),
                        mask.to(d.device) if mask is not None else None)
                loss, parts = muisc_loss(o, batch["labels"].to(d.device),
                                         batch["lm_targets"].to(d.device)[mask.to(d.device)] if mask is not None else None,
                                         cfg.cls_weight, lm_weight, class_weights)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                with torch.no_grad():
                    for k, p in params.items():
                        ema[k].lerp_(p.detach(), 1.0 - cfg.ema)
            state["step"] += 1
            seen["loss"] += loss.item()
            seen["n"] += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
            if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                save_last()
        bar.close()
        if cfg.stop_at and state["step"] >= cfg.stop_at and state["step"] < total:
            save_last()
            barrier(d)
            _finish(d)
            return out / "best"
        if state["step"] >= (epoch + 1) * steps_per_epoch or state["step"] >= total:
            state["epoch"] = epoch + 1
            if d.main:
                def validate() -> float:
                    val = evaluate.predict(model, val_ex, source, tokenizer, cfg.max_title, batch_size=128,
                                           device=d.device, progress=False)
                    return evaluate.metrics.summary([e.label for e in val_ex], val["p_qualified"])["auc"]

                auc, which = validate(), "raw"
                if ema is not None:
                    raw = {k: p.detach().clone() for k, p in params.items()}
                    _copy_into(params, ema)
                    ema_auc = validate()
                    if ema_auc > auc:
                        auc, which = ema_auc, "ema"
                    else:
                        _copy_into(params, raw)
                train_loss = seen["loss"] / max(1, seen["n"])
                state["history"].append({"epoch": epoch + 1, "step": state["step"], "val_auc": auc, "weights": which,
                                         "train_loss": train_loss, "minutes": (time.time() - t_start) / 60})
                print(f"{cfg.variant} epoch {epoch + 1}: train loss {train_loss:.4f}, val AUC {auc:.4f} ({which})",
                      flush=True)
                if auc > state["best_auc"]:
                    state["best_auc"] = auc
                    checkpoint.save(out / "best", model, tokenizer if mcfg.use_decoder else None,
                                    preprocessing=pre, text={"max_title": cfg.max_title,
                                                             "max_feedback": cfg.max_feedback},
                                    version=cfg.version or f"muisc-{cfg.variant}",
                                    extra={"train": {**asdict(cfg), "val_auc": auc, "epoch": epoch + 1, "weights": which,
                                                     "n_train": len(ds), "world_size": d.world,
                                                     "data_sha256": checkpoint.sha256_file(Path(cfg.data) / "train.jsonl")},
                                           "classes_catalogue": list(rules.CLASSES)})
                if which == "ema":
                    _copy_into(params, raw)  # training goes on from the raw weights
            save_last()
            barrier(d)
    if d.main:
        (out / "history.json").write_text(json.dumps(state["history"], indent=2) + "\n")
    barrier(d)
    _finish(d)
    return out / "best"


def _copy_into(params: dict, values: dict) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(values[k])


def _finish(d: DistInfo) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
