"""Self-describing stage 2 checkpoints: a directory that rebuilds its own model.

    config.json        format, architecture, model config, class list by name, preprocessing,
                       text lengths, training summary, metrics, sha256 of every file below
    model.safetensors  weights (float16 to keep the committed files small; loaded as float32)
    tokenizer.json     the project's WordPiece tokenizer (models that read text)

Loading is strict: every file's sha256 must match, every tensor name and shape must match the
rebuilt model, and the class list must contain `qualified`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

FORMAT = "agpis-stage2/1"
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_model(arch: str, model_config: dict):
    """(arch, config dict) -> a freshly initialised model."""
    if arch == "muisc":
        from stage2.model import MUIsC, MUIsCConfig

        return MUIsC(MUIsCConfig(**model_config))
    if arch == "single_tower":
        from stage2.baselines import SingleTower, SingleTowerConfig

        return SingleTower(SingleTowerConfig(**model_config))
    raise ValueError(f"unknown architecture {arch!r}; expected 'muisc' or 'single_tower'")


def arch_of(model) -> str:
    from stage2.baselines import SingleTower

    return "single_tower" if isinstance(model, SingleTower) else "muisc"


def save(directory: str | Path, model, tokenizer=None, *, preprocessing: dict, text: dict,
         version: str, extra: dict | None = None, dtype: torch.dtype = torch.float16) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Tied weights (LM head = token embedding) are stored once; load_state_dict re-ties them.
    state, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen and k.endswith("lm_head.weight"):
            continue
        seen.add(v.data_ptr())
        state[k] = v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().cpu()
    save_file(state, str(directory / WEIGHTS))
    files = {WEIGHTS: sha256_file(directory / WEIGHTS)}
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER)
        files[TOKENIZER] = sha256_file(directory / TOKENIZER)
    cfg = model.config.to_dict()
    meta = {"format": FORMAT, "version": version, "arch": arch_of(model), "model": cfg,
            "classes": list(cfg["classes"]), "preprocessing": preprocessing, "text": text,
            "n_params": sum(p.numel() for p in model.parameters()), "files": files, **(extra or {})}
    (directory / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def add_file(directory: str | Path, name: str) -> None:
    """List a file written beside a checkpoint (e.g. its ONNX export) with its sha256."""
    directory = Path(directory)
    meta = read_meta(directory)
    meta["files"][name] = sha256_file(directory / name)
    (directory / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a stage 2 checkpoint (no {CONFIG})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load(directory: str | Path, verify: bool = True):
    """-> (model in eval mode, float32; tokenizer or None; meta dict)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_meta(directory)
    for name, digest in meta["files"].items():
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing (listed in {CONFIG})")
        if verify and sha256_file(directory / name) != digest:
            raise ValueError(f"{directory / name}: sha256 does not match {CONFIG}; the file was changed")
    if "qualified" not in meta["classes"]:
        raise ValueError(f"{directory}: class list lacks 'qualified'")
    model = build_model(meta["arch"], meta["model"])
    state = load_file(str(directory / WEIGHTS))
    expected = model.state_dict()
    tied = {k for k in expected if k.endswith("lm_head.weight")}
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{directory}: weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"{directory}: {k} has shape {tuple(v.shape)}, model expects {tuple(expected[k].shape)}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    if any(k in tied for k in expected):
        assert model.lm_head.weight is model.decoder.wte.weight, "LM head lost its tie to the embedding"
    tokenizer = None
    if TOKENIZER in meta["files"]:
        from stage2.tokenizer import TextTokenizer

        tokenizer = TextTokenizer.load(directory / TOKENIZER)
        if model.config.use_decoder and tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(f"{directory}: tokenizer has {tokenizer.vocab_size} tokens, model {model.config.vocab_size}")
    return model.eval(), tokenizer, meta
