"""Stage 1 + stage 2 back to back through Pipeline.run, as GenerateSequence computes them after
decoding: the 8 demo products of 7 candidates of 800x800 with their titles, p50 ms of stage 1,
stage 2 and the whole run. To compare with older code, run it from a git worktree of that commit:

    cd ../old && PYTHONPATH=. ../main/.venv/bin/python ../main/scripts/pipeline_latency.py 48
"""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the service's image sets it (FACTS.md)
import agpis  # noqa: E402,F401  (before numpy, as in the CLI and the service: it sets the BLAS threads)

import numpy as np  # noqa: E402

from agpis.config import Config
from agpis.data.synth import demo_products
from agpis.images import decode
from agpis.pipeline import Pipeline


def main(runs: int) -> None:
    cfg = Config()
    pipeline = Pipeline.load(None, cfg)
    pipeline.warmup()
    drawn = demo_products(9, seed=0, size=800)
    items = []
    for i in range(8):  # a product with fewer than 7 images borrows the next one's, as `agpis bench stage1`
        images = list(drawn[i]["images"]) + [(f"x{c}", d) for c, d in drawn[i + 1]["images"]]
        items.append((drawn[i]["title"], [decode(c, d, cfg.images) for c, d in images[:7]]))
    for title, images in items[:2]:
        pipeline.run("warm", title, images)
    s1, s2, whole = [], [], []
    for r in range(runs):
        title, images = items[r % len(items)]
        t0 = time.perf_counter()
        d = pipeline.run(f"p{r}", title, images)
        whole.append((time.perf_counter() - t0) * 1000)
        s1.append(d.timings_ms["stage1"])
        s2.append(d.timings_ms.get("stage2", 0.0))
    print(f"{os.getcwd()}: p50 ms over {runs} runs: stage1 {np.median(s1):.1f}, stage2 {np.median(s2):.1f}, "
          f"run {np.median(whole):.1f} (1-min load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
