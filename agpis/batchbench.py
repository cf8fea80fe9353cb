"""`agpis bench batch`: `agpis batch` (Ray Data) against `agpis generate --batch` (one process) on the
same products and cores, then a large catalogue with the memory of every process sampled.

Products are the demo's ~800x800 JPEG products of 7 candidates, written once as files; a
catalogue of N rows repeats them under new product ids (repeated images are allowed by the issue).
Numbers are printed and written into docs/benchmarks.md (section `batch`).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

from agpis.config import Config
from agpis.docsections import write_section

ROOT = Path(__file__).resolve().parents[1]

# The cost assumption: a named 2-vCPU machine at its on-demand list price (Linux, us-east-1),
# as listed on aws.amazon.com/ec2/pricing/on-demand when this was written. Change both together.
MACHINE = "AWS EC2 c7i.large (2 vCPU, 4 GiB), us-east-1, on-demand Linux"
PRICE_PER_HOUR_USD = 0.08925
PRICE_DATE = "2026-11-29 (list price assumed unchanged since 2024)"


def write_catalogue(directory: Path, products: list[dict], n: int, prefix: str = "p") -> Path:
    """`n` catalogue rows (JSONL) over `products`' images, written once as files under directory/images.
    Row i uses product i % len(products) under the id f"{prefix}-{i:06d}"."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, p in enumerate(products):
        folder = directory / "images" / f"{k:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for cid, data in p["images"]:
            (folder / f"{cid}.jpg").write_bytes(data)
        paths.append([f"images/{k:03d}/{cid}.jpg" for cid, _ in p["images"]])
    path = directory / "catalogue.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            p = products[i % len(products)]
            f.write(json.dumps({"product_id": f"{prefix}-{i:06d}", "title": p["title"], "category": p["category"],
                                "images": paths[i % len(products)]}) + "\n")
    return path


class MemorySampler:
    """The resident memory of a process and all its children (Ray's workers), every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 2.0):
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.monotonic() - self.t0, tree_rss_mib(self.pid)))


def tree_rss_mib(pid: int) -> float:
    """RSS of `pid` and its descendants (from /proc; Linux), in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 2**20


def _run(cmd: list[str], env: dict, sample: bool = False) -> tuple[float, list[float], MemorySampler | None]:
    """Run a command; -> (wall seconds, seconds at which each stdout line came, memory samples)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    sampler = MemorySampler(proc.pid) if sample else None
    lines = []
    if sampler:
        sampler.__enter__()
    try:
        for _ in proc.stdout:
            lines.append(time.perf_counter() - t0)
        proc.wait()
    finally:
        if sampler:
            sampler.__exit__()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return time.perf_counter() - t0, lines, sampler


def _steady(n: int, first_s: float, last_s: float) -> float:
    """Products/s between the first and the last product: start-up (Ray, models) left out."""
    return (n - 1) / (last_s - first_s) if n > 1 and last_s > first_s else float("nan")


def run_bench(cfg: Config, args) -> int:
    from agpis.data.synth import demo_products

    agpis = [sys.executable, "-m", "agpis.cli"]
    products = demo_products(16, seed=1, size=800)
    results: dict = {"products": args.products, "catalogue": args.catalogue, "load_start": os.getloadavg()[1]}
    with tempfile.TemporaryDirectory(prefix="agpis-bench-batch-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "AGPIS_QUEUE__DATA_DIR": str(tmp / "redis"), "AGPIS_QUEUE__OUTBOX_DIR": str(tmp / "outbox")}
        env.pop("REDIS_URL", None)
        cat = write_catalogue(tmp / "same", products, args.products, prefix="same")
        # Both commands on the same products, end to end (start-up and model loading included) and
        # after start-up: generate prints one line per product; batch times its first and last row.
        gen_s, gen_lines, _ = _run(agpis + ["generate", "--json", "--batch", str(cat)], env)
        bat_s, _, _ = _run(agpis + ["batch", str(cat), "--out", str(tmp / "out-same"), "--no-progress"], env)
        run = json.loads((tmp / "out-same" / "_summary.json").read_text())["last_run"]
        results.update(generate_s=gen_s, batch_s=bat_s, generate_steady=_steady(len(gen_lines), gen_lines[0], gen_lines[-1]),
                       batch_steady=run["steady_per_s"])
        print(f"{args.products} products, end to end: agpis generate --batch {gen_s:.1f} s ({args.products / gen_s:.2f}/s), "
              f"agpis batch {bat_s:.1f} s ({args.products / bat_s:.2f}/s), ratio {gen_s / bat_s:.2f}x; after start-up: "
              f"{results['generate_steady']:.2f}/s vs {results['batch_steady']:.2f}/s, ratio "
              f"{results['batch_steady'] / results['generate_steady']:.2f}x", flush=True)
        if args.catalogue:
            big = write_catalogue(tmp / "big", products, args.catalogue, prefix="big")
            wall, _, sampler = _run(agpis + ["batch", str(big), "--out", str(tmp / "out-big"), "--no-progress"],
                                    env, sample=True)
            summary = json.loads((tmp / "out-big" / "_summary.json").read_text())
            mem = [m for _, m in sampler.samples]
            results.update(big_s=wall, big_rows=summary["products"], big_status=summary["status"],
                           big_steady=summary["last_run"]["steady_per_s"], mem_samples=sampler.samples)
            print(f"{args.catalogue} products: {wall:.0f} s ({args.catalogue / wall:.2f}/s end to end, "
                  f"{results['big_steady']:.2f}/s after start-up), {summary['products']} rows, "
                  f"memory (MiB) first/median/max/last {_mem(mem)}", flush=True)
    results["load_end"] = os.getloadavg()[1]
    if not args.no_doc:
        path = write_section(ROOT / "docs" / "benchmarks.md", "batch", _markdown(results, cfg))
        print(f"wrote {path}")
    return 0


def _mem(mem: list[float]) -> str:
    if not mem:
        return "n/a"
    s = sorted(mem)
    return f"{mem[0]:.0f} / {s[len(s) // 2]:.0f} / {s[-1]:.0f} / {mem[-1]:.0f}"


def _markdown(r: dict, cfg: Config) -> str:
    n, b = r["products"], cfg.batch
    lines = ["## Catalogue batch on Ray Data (`agpis bench batch`)", "",
             f"Measured {date.today()} on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
             f"products of 7 candidates (~800x800 JPEG files, the demo's 16 products repeated under new ids), "
             f"review queue included (embedded Valkey), each command end to end including start-up and model loading. "
             f"`batch.actors={b.actors}`, `batch.actor_cpus={b.actor_cpus}`, `batch.read_cpus={b.read_cpus}`, "
             f"`batch.threads_per_actor={b.threads_per_actor}`, `batch.batch_size={b.batch_size}`. "
             f"Command: `agpis bench batch --products {n} --catalogue {r['catalogue']}`. The cores were shared: "
             f"5-minute load average {r['load_start']:.1f} at the start and {r['load_end']:.1f} at the end (2 means "
             f"both cores busy), so every rate here is below what a quiet machine gives.", "",
             "| command | products | seconds end to end | products/s end to end | products/s after start-up |",
             "|---|---|---|---|---|",
             f"| `agpis generate --batch` | {n} | {r['generate_s']:.1f} | {n / r['generate_s']:.2f} | "
             f"{r['generate_steady']:.2f} |",
             f"| `agpis batch` (Ray Data, local) | {n} | {r['batch_s']:.1f} | {n / r['batch_s']:.2f} | "
             f"{r['batch_steady']:.2f} |", "",
             f"Ratio `agpis batch` / `agpis generate --batch`: **{r['batch_steady'] / r['generate_steady']:.2f}x** after "
             f"start-up, {r['generate_s'] / r['batch_s']:.2f}x end to end (Ray's start and one model load per actor "
             f"cost `agpis batch` a fixed ~20-40 s)."]
    if r.get("big_s"):
        mem = [m for _, m in r["mem_samples"]]
        rate = r["big_steady"]
        hours_100k = 100_000 / rate / 3600
        lines += ["", f"Large catalogue: {r['catalogue']} products in {r['big_s']:.0f} s "
                      f"({r['catalogue'] / r['big_s']:.2f} products/s end to end, {rate:.2f} after start-up), "
                      f"{r['big_rows']} output rows ({', '.join(f'{k} {v}' for k, v in sorted(r['big_status'].items()))}). "
                      f"Resident memory of the job and all its Ray processes, sampled every 2 s "
                      f"(first / median / max / last, MiB): {_mem(mem)}.", "",
                  "| minute | MiB |", "|---|---|"]
        for t, m in r["mem_samples"][::max(1, len(r["mem_samples"]) // 12)]:
            lines.append(f"| {t / 60:.1f} | {m:.0f} |")
        lines += ["", f"Cost per 100,000 products at this rate: {hours_100k:.2f} h on {MACHINE} at "
                      f"${PRICE_PER_HOUR_USD}/h = **${hours_100k * PRICE_PER_HOUR_USD:.2f}** "
                      f"(price assumed as of {PRICE_DATE})."]
    lines += ["", "Targets (issue 14): >= 1.5x `agpis generate --batch`; >= 20 products/s on 2 cores; memory flat "
                  "across 100,000 products."]
    return "\n".join(lines)
