"""`agpis bench stage1`: stage 1 on 7 candidates of ~800x800 JPEG, as the service runs it
(decoded with the service's reduced-size JPEG decoding, then `Stage1.run`), p50/p90 over
repeats with a breakdown per step. Drawn products (agpis.data.synth), no ../shared needed."""
from __future__ import annotations

import io
import os
import time

import numpy as np

STEPS = ("resize", "backbone", "proposals", "checks", "colour", "help_side_thread", "wait_side_thread", "heads",
         "text", "matching", "sequences")


def jpeg_candidates(n_products: int, size: int = 800, n: int = 7) -> list[list[tuple[str, bytes]]]:
    """`n` candidates per product; a drawn product with fewer images borrows the next one's."""
    from agpis.data.synth import demo_products

    products = demo_products(n_products + 1, seed=0, size=size)
    out = []
    for i in range(n_products):
        images = list(products[i]["images"]) + [(f"x{cid}", data) for cid, data in products[i + 1]["images"]]
        out.append(images[:n])
    return out


def run_bench(stage1, products: list[list[tuple[str, bytes]]], repeats: int, log=print) -> dict:
    from agpis.config import ImagesConfig
    from agpis.images import decode

    cfg = ImagesConfig()
    totals, decodes = [], []
    steps: dict[str, list[float]] = {s: [] for s in STEPS}
    for _ in range(2):  # warm-up: sessions, thread pool, text detector
        stage1.run([decode(cid, data, cfg) for cid, data in products[0]], 3)
    for r in range(repeats):
        cands = products[r % len(products)]
        t0 = time.perf_counter()
        ims = [decode(cid, data, cfg) for cid, data in cands]
        t1 = time.perf_counter()
        res = stage1.run(ims, 3)
        t2 = time.perf_counter()
        decodes.append((t1 - t0) * 1000)
        totals.append((t2 - t1) * 1000)
        for s in STEPS:
            steps[s].append(res.timings_ms.get(s, 0.0))
    out = {"n": repeats, "candidates": len(products[0]), "threads": stage1.config.threads,
           "stage1_p50": float(np.percentile(totals, 50)), "stage1_p90": float(np.percentile(totals, 90)),
           "decode_p50": float(np.percentile(decodes, 50)),
           "steps_p50": {s: float(np.percentile(v, 50)) for s, v in steps.items()},
           "image_size": products[0] and _size(products[0][0][1]), "cpus": os.cpu_count(),
           "load_avg": os.getloadavg()[0]}
    log(f"stage 1 p50 {out['stage1_p50']:.1f} ms, p90 {out['stage1_p90']:.1f} ms; decode p50 {out['decode_p50']:.1f} ms")
    return out


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def markdown(r: dict, target_ms: float = 100.0) -> str:
    verdict = "within" if r["stage1_p50"] <= target_ms else "OVER"
    steps = " | ".join(f"{v:.1f}" for v in r["steps_p50"].values())
    return (f"{r['candidates']} candidates of {r['image_size'][0]}x{r['image_size'][1]} JPEG (drawn products), "
            f"{r['n']} runs, backbone {r['threads']} ONNX thread + 1 side thread, "
            f"{r['cpus']} cores (1-min load average at the end {r['load_avg']:.1f}; other work on the machine "
            f"shows there).\n\n"
            f"| | p50 ms | p90 ms |\n|---|---|---|\n"
            f"| stage 1 (`Stage1.run`) | {r['stage1_p50']:.1f} | {r['stage1_p90']:.1f} |\n"
            f"| decode (service, before stage 1) | {r['decode_p50']:.1f} | |\n\n"
            f"Per step, p50 ms. Proposals (EdgeBoxes), checks and colour are per-image tasks that a side thread "
            f"takes while the backbone runs and the main thread shares once the backbone is done "
            f"(`help_side_thread`); their columns are the time spent in them on both threads, "
            f"`wait_side_thread` what the main thread then still waited:\n\n"
            f"| " + " | ".join(r["steps_p50"]) + " |\n" + "|---" * len(r["steps_p50"]) + "|\n| " + steps + " |\n\n"
            f"Target: stage 1 p50 <= {target_ms:.0f} ms on 2 cores: **{verdict}** ({r['stage1_p50']:.1f} ms).")


def backbone_batch_sizes(directory, sizes: tuple[int, ...] = (1, 2, 4, 7, 14, 28, 56), threads: tuple[int, ...] = (1, 2),
                         seconds: float = 2.0, log=print) -> dict[int, dict[int, float]]:
    """CPU ms per image of the backbone's ONNX call at each call size, per thread count: CPU time
    (all threads), since on a shared machine that is what a call costs the others. Random 224x224
    images: the trunk's cost does not depend on the pixels. -> {threads: {size: ms per image}}."""
    from stage1.backbone import Backbone

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(max(sizes))]
    out: dict[int, dict[int, float]] = {}
    for t in threads:
        backbone = Backbone(directory, threads=t)  # max_batch 0: each call is exactly `size` images
        out[t] = {}
        for size in sizes:
            for _ in range(2):  # the first calls of a new shape plan its memory
                backbone.features(images[:size])
            t0, n = time.process_time(), 0
            while time.process_time() - t0 < seconds:
                backbone.features(images[:size])
                n += size
            out[t][size] = (time.process_time() - t0) * 1000 / n
            log(f"{t} thread(s), {size} image(s) per call: {out[t][size]:.2f} CPU ms per image")
    return out


def backbone_batch_markdown(r: dict[int, dict[int, float]], version: str) -> str:
    sizes = list(next(iter(r.values())))
    return (f"Command: `agpis bench stage1 --backbone-batch`. The backbone of stage 1 {version} (one ONNX Runtime "
            f"session, float32), random 224x224 images, CPU ms per image (all threads) by images per call; "
            f"{os.cpu_count()} cores, 1-min load average at the end {os.getloadavg()[0]:.1f}. "
            f"`stage1.backbone_batch` caps the images per call.\n\n"
            f"| threads | " + " | ".join(str(s) for s in sizes) + " |\n|---" + "|---" * len(sizes) + "|\n"
            + "".join(f"| {t} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |\n" for t, row in r.items()))
