"""`agpis bench stage2`: how long stage 2 takes, as the service calls it.

Inputs are real model inputs: procedural demo products (agpis.data.synth.demo_products) decoded
like the service decodes them, their backbone tokens computed once (as stage 1 hands them
over), and the candidate sequences of a request. Medians over repeats, per thread count.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _median_ms(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return float(np.median(ts)), float(np.percentile(ts, 90))


def demo_inputs(n_products: int = 4):
    """[(title, [CandidateImage...])] from procedural demo products, decoded as the service does."""
    from agpis.config import ImagesConfig
    from agpis.data.synth import demo_products
    from agpis.images import decode

    out = []
    for p in demo_products(n_products, seed=0, size=800):
        ims = [decode(cid, data, ImagesConfig()) for cid, data in p["images"]]
        out.append((p["title"], ims))
    return out


def sequences_of(images, k: int = 3, n: int = 4):
    """n distinct k-image sequences from a product's candidates (what stage 1 proposes)."""
    seqs = []
    for start in range(len(images)):
        seq = [images[(start + j) % len(images)] for j in range(k)]
        seqs.append(seq)
        if len(seqs) == n:
            break
    return seqs


def bench_default(checkpoint: str, threads: list[int], repeats: int) -> tuple[list[list[str]], dict]:
    from stage2.data import load_backbone
    from stage2.scorer import MUIsCStage2

    s2 = MUIsCStage2(checkpoint)
    products = demo_inputs()
    backbone = load_backbone("")
    rows, raw = [], {}
    for t in threads:
        torch.set_num_threads(t)
        results = {}
        for title, ims in products:
            feats = {im.id: f for im, f in zip(ims, backbone.image_tokens([im.pixels for im in ims]))}
            seqs = sequences_of(ims)
            for name, n, explain in (("1 sequence, score only", 1, False), ("1 sequence, with explanation", 1, True),
                                     ("4 sequences, score only", 4, False), ("4 sequences, with explanation", 4, True)):
                p50, p90 = _median_ms(lambda: s2.score(title, seqs[:n], feats, explain), repeats)
                results.setdefault(name, []).append((p50, p90))
        for name, vals in results.items():
            p50 = float(np.median([v[0] for v in vals]))
            p90 = float(np.median([v[1] for v in vals]))
            rows.append([f"default MUIsC, eager PyTorch, {t} thread(s)", name, f"{p50:.1f}", f"{p90:.1f}"])
            raw[f"eager/{t}/{name}"] = p50
    # ONNX Runtime for the scoring path (no generation)
    from stage2.export import OnnxScorer, export_scoring

    with tempfile.TemporaryDirectory() as tmp:
        path = export_scoring(s2.model, Path(tmp) / "muisc.onnx")
        title, ims = products[0]
        feats = backbone.image_tokens([im.pixels for im in ims])
        enc = s2.tokenizer.encode(title, None, s2.max_title, 0)
        for t in threads:
            sess = OnnxScorer(path, t)
            for n in (1, 4):
                images = np.stack([feats[[0, 1, 2]]] * n).astype(np.float32)
                idx = np.array([enc.ids] * n)
                sep = np.full((n,), enc.sep_pos)
                torch_ref = s2.model(torch.from_numpy(images), torch.from_numpy(idx), torch.from_numpy(sep)).class_logits
                diff = float(np.abs(sess(images, idx, sep) - torch_ref.detach().numpy()).max())
                p50, p90 = _median_ms(lambda: sess(images, idx, sep), repeats)
                rows.append([f"default MUIsC, ONNX Runtime, {t} thread(s)", f"{n} sequence(s), score only (logits "
                             f"max diff vs torch {diff:.1e})", f"{p50:.1f}", f"{p90:.1f}"])
                raw[f"onnx/{t}/{n}"] = p50
    return rows, raw


def bench_paper(threads: int, repeats: int, device: str) -> list[list[str]]:
    """The paper configuration (ViT-B/16 + 3-block GPT-2, d=768) with random weights."""
    from stage2.model import MUIsC
    from stage2.paper import paper_config

    torch.set_num_threads(threads)
    model = MUIsC(paper_config(vocab_size=21128)).eval().to(device)  # the paper's BERT-Chinese vocabulary size
    rows = []
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model = model.to(dtype) if dtype != torch.float32 else model
    prompt = torch.randint(4, 21128, (1, 24), device=device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for n in ((1, 4) if not device.startswith("cuda") else (1, 4, 64)):
        px = torch.rand(n, 3, 3, 224, 224, device=device, dtype=dtype)
        idx = prompt.expand(n, -1)
        sep = torch.full((n,), 23, device=device)
        with torch.inference_mode():
            p50, p90 = _median_ms(lambda: (model(px, idx, sep), sync()), repeats, warmup=1)
            rows.append([f"paper configuration, random weights, {device}, {threads} thread(s)"
                         + (" fp16" if dtype == torch.float16 else ""),
                         f"{n} sequence(s) of 3 images from pixels, score only", f"{p50:.0f}", f"{p90:.0f}"])
            if n in (1, 4):
                g50, g90 = _median_ms(lambda: (model.classify_and_generate(px, idx, 3, 16), sync()), max(1, repeats // 2),
                                      warmup=1)
                rows.append([rows[-1][0], f"{n} sequence(s), with 16 generated feedback tokens", f"{g50:.0f}",
                             f"{g90:.0f}"])
            if n == 64:
                rows.append([rows[-1][0], "batched throughput", f"{n / (p50 / 1000):.0f} sequences/s", ""])
    return rows


def run_bench(args) -> dict:
    from agpis.docsections import write_section

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    load = os.getloadavg()[0]
    rows, raw = bench_default(args.checkpoint, threads, args.repeats)
    if not args.no_paper:
        rows += bench_paper(max(threads), args.paper_repeats, args.device)
    table = "| what | input | p50 ms | p90 ms |\n|---|---|---|---|\n" + "\n".join(
        f"| {' | '.join(r)} |" for r in rows)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    md = "\n".join([
        "## Stage 2 (MUIsC) latency", "",
        f"Command: `agpis bench stage2 --threads {args.threads} --repeats {args.repeats}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load:.1f} when started (the cores are shared; medians over {args.repeats} repeats per product, "
        "median over 4 demo products). Inputs: the backbone tokens of procedural demo products as stage 1 "
        "hands them over, so stage 2 runs no image network; the request's title; up to 4 candidate "
        "sequences (multi-candidate choice). With explanation: greedy feedback generation with a "
        "self-attention cache, as `score(explain=True)` runs it.", "",
        table, "",
        "Target: one sequence within 40 ms p50 on 2 cores with the default configuration. "
        + ("GPU: " + gpu if gpu else "No GPU was lent to this issue: the paper configuration's GPU latency and "
           "batched throughput are not measured (`agpis bench stage2 --device cuda` measures them)."),
    ])
    print(md)
    if args.docs:
        write_section("docs/benchmarks.md", "stage2", md)
    return raw
