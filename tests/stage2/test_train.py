"""`agpis train muisc` on a tiny procedural dataset: every variant trains, checkpoints resume
exactly, the feature cache is reused, and `agpis eval muisc` runs end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stage2 import checkpoint
from stage2.train import train
from tests.stage2.conftest import tiny_train_config

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_writes_a_self_describing_checkpoint(tiny_run):
    model, tok, meta = checkpoint.load(tiny_run)
    assert meta["arch"] == "muisc" and meta["train"]["variant"] == "muisc"
    assert meta["preprocessing"]["kind"] == "backbone_tokens" and tok is not None
    assert model.config.vocab_size == tok.vocab_size
    history = json.loads((tiny_run.parent / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(0 <= h["val_auc"] <= 1 for h in history)


@pytest.mark.parametrize("variant", ["late_fusion", "early_fusion", "hier", "encdec"])
def test_every_variant_trains(tiny_data, cache_dir, tmp_path, variant):
    best = train(tiny_train_config(tiny_data, tmp_path / variant, cache_dir, variant=variant, epochs=1))
    model, _, meta = checkpoint.load(best)
    assert meta["train"]["variant"] == variant
    if variant == "early_fusion":
        assert meta["preprocessing"]["early_fusion"] is True


def test_resume_continues_exactly(tiny_data, cache_dir, tmp_path):
    """Stopped after 3 steps and resumed: the same weights as one uninterrupted run."""
    straight = tiny_train_config(tiny_data, tmp_path / "a", cache_dir, epochs=2, checkpoint_every=3)
    train(straight)
    interrupted = tiny_train_config(tiny_data, tmp_path / "b", cache_dir, epochs=2, checkpoint_every=3, stop_at=3)
    train(interrupted)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["state"]["step"] == 3
    train(tiny_train_config(tiny_data, tmp_path / "b", cache_dir, epochs=2, checkpoint_every=3, resume=True))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"]
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


def test_resume_refuses_another_variant(tiny_data, cache_dir, tmp_path):
    train(tiny_train_config(tiny_data, tmp_path / "r", cache_dir, max_steps=1, epochs=1))
    with pytest.raises(ValueError, match="not hier"):
        train(tiny_train_config(tiny_data, tmp_path / "r", cache_dir, variant="hier", resume=True, epochs=1))


def test_feature_cache_holds_the_backbone_tokens(tiny_data, cache_dir):
    from stage2.data import cached_source, load_backbone, load_examples, read_rgb

    _, ex = load_examples(tiny_data, "val")
    source, pre = cached_source("tokens", ex, cache_dir, progress=False)
    tokens = source(ex[0].images)
    assert tokens.shape == (3, 49, 1280) and tokens.dtype.name == "float16"
    direct = load_backbone().image_tokens([read_rgb(k) for k in ex[0].images])
    assert abs(tokens.astype("float32") - direct).max() < 0.01  # float16 storage of the same numbers


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_data, cache_dir, tmp_path, tiny_run):
    """Distributed data parallel through torchrun: 2 CPU processes on gloo, a few steps."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "agpis.cli", "train", "muisc", "--data", str(tiny_data), "--out", str(out), "--cache-dir",
           str(cache_dir), "--epochs", "1", "--batch-size", "4", "--d-model", "32", "--n-head", "2",
           "--vocab-size", "300", "--no-progress", "--threads", "1"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    _, _, meta = checkpoint.load(out / "best")
    assert meta["train"]["world_size"] == 2
    assert "epoch 1: train loss" in r.stdout


def test_eval_command_end_to_end(tiny_data, cache_dir, tiny_run, tmp_path, monkeypatch):
    from agpis.cli import main

    runs = tiny_run.parent.parent  # holds muisc/ only: the baselines are reported as missing
    out = tmp_path / "eval.json"
    monkeypatch.chdir(tmp_path)
    rc = main(["eval", "muisc", "--checkpoint", str(tiny_run), "--data", str(tiny_data), "--split", "test",
               "--styles", "all", "--runs", str(runs), "--cache-dir", str(cache_dir), "--stage1", "",
               "--plots", str(tmp_path / "plots"), "--json", str(out), "--no-docs"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert 0 <= res["summaries"]["muisc"]["auc"] <= 1
    assert res["feedback"]["n_rejected"] > 0
    assert set(res["queue"]["all"]) == {"threshold", "filter", "choice"}
    assert (tmp_path / "plots" / "stage2_roc.png").stat().st_size > 1000


def test_mixed_precision_path_runs_on_cpu(tiny_data, cache_dir, tmp_path):
    """--amp bf16 goes through the same autocast code the GPU uses (fp16/bf16 there)."""
    best = train(tiny_train_config(tiny_data, tmp_path / "amp", cache_dir, amp="bf16", epochs=1))
    _, _, meta = checkpoint.load(best)
    assert meta["train"]["amp"] == "bf16" and 0 <= meta["train"]["val_auc"] <= 1


@pytest.mark.slow
def test_paper_configuration_trains_end_to_end_on_pixels(tiny_data, cache_dir, tmp_path):
    """--paper with ViT and GPT-2 from local directories (tiny configs): trains on pixels."""
    from transformers import GPT2Config, GPT2Model, ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8), add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    GPT2Model(GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=100, n_positions=64)).save_pretrained(tmp_path / "gpt2")
    best = train(tiny_train_config(tiny_data, tmp_path / "paper", cache_dir, paper=True, vit=str(tmp_path / "vit"),
                                   gpt2=str(tmp_path / "gpt2"), epochs=1, batch_size=4, max_steps=3))
    model, _, meta = checkpoint.load(best)
    assert meta["preprocessing"]["kind"] == "pixels" and meta["model"]["decoder"] == "gpt2"
    import stage2
    from agpis.data.format import load_dataset
    from stage1.types import CandidateImage
    from stage2.data import read_rgb

    r = load_dataset(tiny_data, "test")[0]
    ims = [CandidateImage(f"c{i}", read_rgb(str(r.path(i))), (160, 160)) for i in r.sequence]
    out = stage2.load(best).score(r.title, [ims], None, explain=True)[0]
    assert 0 <= out.p_qualified <= 1 and out.feedback


def test_weight_averaging_is_validated_and_resumes(tiny_data, cache_dir, tmp_path):
    train(tiny_train_config(tiny_data, tmp_path / "ema", cache_dir, ema=0.9, epochs=2, stop_at=3))
    ck = torch.load(tmp_path / "ema" / "last.pt", weights_only=False)
    assert ck["ema"] is not None and set(ck["ema"]) <= set(ck["model"])
    best = train(tiny_train_config(tiny_data, tmp_path / "ema", cache_dir, ema=0.9, epochs=2, resume=True))
    history = json.loads((tmp_path / "ema" / "history.json").read_text())
    assert {h["weights"] for h in history} <= {"raw", "ema"} and len(history) == 2
    _, _, meta = checkpoint.load(best)
    assert meta["train"]["weights"] in ("raw", "ema")


def test_balanced_class_weights_weigh_rare_rules_up_and_keep_the_loss_size():
    from stage2.train import balanced_class_weights

    classes = ("qualified", "watermark", "title_mismatch", "other")
    labels = ["qualified"] * 90 + ["watermark"] * 8 + ["title_mismatch"] * 2
    assert balanced_class_weights(labels, classes, 0.0) is None
    w = balanced_class_weights(labels, classes, 0.5)
    assert w[0] < w[1] < w[2] and w[3] == w.max()  # rarer -> heavier; absent: the heaviest
    mean = sum(float(w[classes.index(l)]) for l in labels) / len(labels)
    assert abs(mean - 1.0) < 1e-5


def _example(title, label="qualified", category="mug", n=0):
    from stage2.data import Example

    return Example(title, [f"img/{n}/0.jpg", f"img/{n}/1.jpg", f"img/{n}/2.jpg"], label,
                   "yes" if label == "qualified" else "images 1 and 2 show the same view", f"p{n}", "train", n, category)


def test_title_negatives_swap_the_colour_word_of_qualified_titles():
    from stage2.data import with_title_negatives
    from stage2.metrics import rule_named

    examples = [_example(f"Red Ceramic Mug {n}: a red cup", category="mug", n=n) for n in range(50)] \
        + [_example(f"Leather Boot {n}", category="boot", n=50 + n) for n in range(30)] \
        + [_example(f"Orange, 1 kg {n}", category="orange", n=80 + n) for n in range(19)] \
        + [_example("Blue Mug", label="duplicated_view", n=100)]
    out = with_title_negatives(examples, 0.2, seed=3)
    assert out is not examples and len(out) == len(examples)
    changed = [(a, b) for a, b in zip(examples, out) if a is not b]
    assert len(changed) == 20  # 20% of all examples, drawn among the qualified titles that name a colour
    for a, b in changed:
        assert a.label == "qualified" and a.category == "mug"  # no colour word: boots; "Orange" names the fruit
        assert b.label == "title_mismatch" and rule_named(b.feedback) == "title_mismatch"
        assert b.images == a.images
        colour, rest = b.title.split(" ", 1)
        assert colour != "Red" and rest == a.title.split(" ", 1)[1]  # only the title's colour word changed
        assert f"{colour.lower()} mug" in b.feedback
    assert out[-1] is examples[-1]  # a rejected sequence keeps its own label
    assert with_title_negatives(examples, 0.2, seed=3) == out  # deterministic per seed (exact resume)
    assert with_title_negatives(examples, 0.0, seed=3) is examples
