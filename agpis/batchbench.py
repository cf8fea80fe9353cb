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
import re
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
    """The memory of a process and all its descendants (Ray's raylet and workers) every `interval_s`:
    see `tree_memory`. Samples are dicts with `t` (seconds since start) and MiB values."""

    def __init__(self, pid: int, interval_s: float = 5.0, log: Path | None = None, tag: dict | None = None):
        self.pid, self.interval_s, self.log, self.tag = pid, interval_s, log, tag or {}
        self.samples: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.t0, self.wall0 = time.monotonic(), time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append({"t": time.monotonic() - self.t0, "wall": time.time(), **self.tag,
                                 **tree_memory(self.pid)})
            if self.log:  # as they come: a run stopped early still has its numbers
                with open(self.log, "a") as f:
                    f.write(json.dumps(self.samples[-1]) + "\n")


def descendants(pid: int) -> list[int]:
    """`pid` and all the processes below it (Ray's raylet and workers), from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def tree_rss_mib(pid: int) -> float:
    """RSS of `pid` and its descendants (from /proc; Linux), in MiB."""
    total = 0
    for p in descendants(pid):
        try:
            total += int((Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()[21])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def smaps_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB: Rss, Pss, Private_Clean, Private_Dirty, ... ({} when gone)."""
    try:
        text = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            out[key.strip()] = int(rest.split()[0])
    return out


def store_pss_kb(pid: int) -> int:
    """kB of PSS that `pid` has in its mappings of Ray's object store (/dev/shm/plasma*), from
    /proc/PID/smaps (0 when gone): the store's share of its PSS."""
    try:
        text = (Path("/proc") / str(pid) / "smaps").read_text()
    except OSError:
        return 0
    total, i = 0, text.find("/plasma")
    while i >= 0:
        j = text.find("\nPss:", i)
        if j < 0:
            break
        total += int(text[j + 5:text.find("kB", j)])
        i = text.find("/plasma", j)
    return total


_AVAILABLE_STORE = re.compile(r'"available":\s*\{[^}]*object_store_memory:\s*\[(\d+)\]')
_TOTAL_STORE = re.compile(r'"total":\s*\{[^}]*object_store_memory:\s*\[(\d+)\]')


def object_store(raylet: int) -> dict[str, float | None]:
    """The object store of the raylet `raylet` (Ray's plasma store runs inside it), in MiB:
    `store_resident`: the pages of its shared-memory file (/dev/shm/plasma*, deleted but held open;
    also a fallback file, if any) that exist, i.e. have been touched: counted once, however many
    processes map them; `store_used`: what its objects take now, total minus available as the raylet
    reports them in debug_state.txt (rewritten every ~10 s; None when not found);
    `store_capacity`: the store's size."""
    resident, seen = 0, set()
    fds = Path("/proc") / str(raylet) / "fd"
    try:
        names = os.listdir(fds)
    except OSError:
        names = []
    for fd in names:
        try:
            if "plasma" not in os.readlink(fds / fd):
                continue
            st = os.stat(fds / fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            resident += st.st_blocks * 512
    used = capacity = None
    try:
        cmdline = (Path("/proc") / str(raylet) / "cmdline").read_bytes().decode(errors="replace")
        session = re.search(r"(/[^\x00=]*/session_[^/\x00]+)", cmdline)
        text = (Path(session.group(1)) / "logs" / "debug_state.txt").read_text() if session else ""
        local = next((line for line in text.splitlines() if line.startswith("Local id:")), "")
        total, available = _TOTAL_STORE.search(local), _AVAILABLE_STORE.search(local)
        if total and available:  # Ray's fixed point: 1/10000 of a byte
            capacity = int(total.group(1)) / 10000 / 2**20
            used = capacity - int(available.group(1)) / 10000 / 2**20
    except OSError:
        pass
    return {"store_resident": resident / 2**20, "store_used": used, "store_capacity": capacity}


def tree_memory(pid: int) -> dict[str, float | None]:
    """The memory of `pid` and its descendants, in MiB, several ways (Linux, /proc):
    `rss`: the sum of their RSS; shared pages (Ray's object store above all, mapped by the raylet,
    every worker and the driver) are counted once per process that touched them, so this overstates;
    `pss`: the sum of their PSS, each shared page divided among the processes that map it, so every
    page they have mapped counts once; the store's pages that no process has touched (only the store
    holds them) are missing, so the job's true footprint lies between `pss` and `pss` +
    `store_resident`; `uss`: the sum of the pages that only one process maps (a store page touched by
    one process only counts too); `driver_pss`: the driver alone (`pid`), `driver_own` the same
    without its share of the store's pages, `driver_anon` its anonymous (heap) memory; the object store
    (`object_store`); and `footprint`: the sum of their PSS outside the store plus the store's resident
    pages, i.e. every page counted once, those only the store holds included: the job's true size."""
    rss = pss = uss = store_pss = queue_pss = gcs_pss = 0
    driver_pss = driver_own = driver_anon = None
    raylet = None
    for p in descendants(pid):
        r = smaps_rollup(p)
        if not r:
            continue  # gone meanwhile
        rss += r.get("Rss", 0)
        pss += r.get("Pss", 0)
        uss += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        in_store = store_pss_kb(p)
        store_pss += in_store
        if p == pid:
            driver_pss = r.get("Pss", 0) / 1024
            driver_own = (r.get("Pss", 0) - in_store) / 1024  # its share of the store's pages left out
            # its heap and other private memory: no library's code pages (which a process maps as it
            # first runs them, bounded by their files), no store pages
            driver_anon = r.get("Anonymous", 0) / 1024
        try:
            comm = (Path("/proc") / str(p) / "comm").read_text().strip()
        except OSError:
            comm = ""
        if comm == "raylet":
            raylet = p
        elif comm.startswith("valkey"):  # the embedded review queue: its data, not the job's working set
            queue_pss += r.get("Pss", 0)
        elif comm == "gcs_server":  # Ray's control store: it grew with every task until ad20e5d
            gcs_pss += r.get("Pss", 0)
    store = object_store(raylet) if raylet else {"store_resident": None, "store_used": None, "store_capacity": None}
    footprint = (pss - store_pss) / 1024 + store["store_resident"] if store["store_resident"] is not None else None
    return {"rss": rss / 1024, "pss": pss / 1024, "uss": uss / 1024, "driver_pss": driver_pss,
            "footprint": footprint, "queue_pss": queue_pss / 1024, "driver_own": driver_own,
            "driver_anon": driver_anon, "gcs_pss": gcs_pss / 1024, **store}


def slope(samples: list[dict], key: str) -> float:
    """Least-squares slope of samples[key] over time, in MiB/min (nan with fewer than 2 values)."""
    pts = [(s["t"] / 60, s[key]) for s in samples if s.get(key) is not None]
    if len(pts) < 2:
        return float("nan")
    mt, mv = sum(t for t, _ in pts) / len(pts), sum(v for _, v in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (v - mv) for t, v in pts) / var if var else float("nan")


MEMORY_KEYS = ("footprint", "rss", "pss", "uss", "driver_pss", "store_resident", "store_used")


def memory_trend(samples: list[dict], start_s: float, end_s: float, keys: tuple[str, ...] = MEMORY_KEYS) -> dict:
    """The samples between start_s (warm-up over: the first output file) and end_s (the last output
    file) in two halves -> per half its time span and, per key of `keys`, the slope (MiB/min) and
    the first and last values."""
    steady = [s for s in samples if start_s <= s["t"] <= end_s]
    mid = (start_s + end_s) / 2
    halves = {}
    for name, part in (("first", [s for s in steady if s["t"] <= mid]), ("second", [s for s in steady if s["t"] >= mid])):
        if len(part) < 2:
            continue
        halves[name] = {"t0": part[0]["t"], "t1": part[-1]["t"], "n": len(part),
                        **{k: {"slope": slope(part, k), "first": part[0].get(k), "last": part[-1].get(k)}
                           for k in keys}}
    return halves


def _run(cmd: list[str], env: dict, sample: bool = False, memory_log: Path | None = None,
         tag: dict | None = None, interval_s: float = 5.0) -> tuple[float, list[float], MemorySampler | None]:
    """Run a command; -> (wall seconds, seconds at which each stdout line came, memory samples)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    sampler = MemorySampler(proc.pid, interval_s, log=memory_log, tag=tag) if sample else None
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


# Per-product steps whose mean the bench reports from the output's timings_ms (where the time goes).
STEPS = ("decode", "stage1", "stage1.backbone", "stage1.proposals", "stage1.checks", "stage1.matching",
         "stage1.text", "stage1.colour", "stage2")


def _batch(agpis: list[str], cat: Path, out: Path, env: dict, sample: bool = False, memory_log: Path | None = None,
           tag: dict | None = None, interval_s: float = 5.0, **settings) -> dict:
    """`agpis batch` on `cat` with batch.<key>=value settings (environment); -> its numbers: wall seconds,
    steady products/s, the summary, the mean per-product step timings, the memory sampler."""
    env = {**env, **{f"AGPIS_BATCH__{k.upper()}": str(v) for k, v in settings.items()}}
    wall, _, sampler = _run(agpis + ["batch", str(cat), "--out", str(out), "--no-progress"], env, sample=sample,
                            memory_log=memory_log, tag=tag, interval_s=interval_s)
    summary = json.loads((out / "_summary.json").read_text())
    from agpis.batch import iter_rows

    timings = [dict(r["timings_ms"]) for r in iter_rows(out, ["timings_ms"]) if r["timings_ms"]]
    steps = {k: sum(t.get(k, 0.0) for t in timings) / len(timings) for k in STEPS} if timings else {}
    # Output files' times since the start: the first ends the warm-up (Ray up, models loaded, the
    # store in use), the last is the end of the work (before the processes exit).
    files = sorted(p.stat().st_mtime - sampler.wall0 for p in out.glob("part-*.parquet")) if sampler else []
    return {"s": wall, "steady": summary["last_run"]["steady_per_s"], "summary": summary, "steps_ms": steps,
            "sampler": sampler, "files_s": (files[0], files[-1]) if files else None}


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
        # The commands on the same products, end to end (start-up and model loading included) and
        # after start-up: generate prints one line per product; batch times its first and last row.
        # batch twice: the backbone shared by a block's products (the default), and one forward
        # per product as the service does, to see what sharing it gives.
        gen_s, gen_lines, _ = _run(agpis + ["generate", "--json", "--batch", str(cat)], env)
        shared = _batch(agpis, cat, tmp / "out-shared", env)
        alone = _batch(agpis, cat, tmp / "out-alone", env, backbone_across_products="false")
        results.update(generate_s=gen_s, generate_steady=_steady(len(gen_lines), gen_lines[0], gen_lines[-1]),
                       batch=shared, batch_alone=alone)
        g = results["generate_steady"]
        print(f"{args.products} products, end to end: agpis generate --batch {gen_s:.1f} s ({args.products / gen_s:.2f}/s), "
              f"agpis batch {shared['s']:.1f} s ({args.products / shared['s']:.2f}/s), ratio {gen_s / shared['s']:.2f}x; "
              f"after start-up: {g:.2f}/s vs {shared['steady']:.2f}/s, ratio {shared['steady'] / g:.2f}x; "
              f"agpis batch with one backbone forward per product: {alone['s']:.1f} s, {alone['steady']:.2f}/s "
              f"after start-up", flush=True)
        print("mean ms per product (backbone shared / one forward per product): " + ", ".join(
            f"{k} {shared['steps_ms'][k]:.0f}/{alone['steps_ms'][k]:.0f}" for k in STEPS), flush=True)
        if args.catalogue:
            big = write_catalogue(tmp / "big", products, args.catalogue, prefix="big")
            # $AGPIS_BENCH_MEMORY_LOG: the samples also appended there as JSON lines, as they come.
            memory_log = Path(os.environ["AGPIS_BENCH_MEMORY_LOG"]) if os.environ.get("AGPIS_BENCH_MEMORY_LOG") else None
            r = _batch(agpis, big, tmp / "out-big", env, sample=True, memory_log=memory_log)
            samples = r["sampler"].samples
            trend = memory_trend(samples, *r["files_s"]) if r["files_s"] else {}
            results.update(big_s=r["s"], big_rows=r["summary"]["products"], big_status=r["summary"]["status"],
                           big_steady=r["steady"], mem_samples=samples, mem_trend=trend, mem_window=r["files_s"])
            print(f"{args.catalogue} products: {r['s']:.0f} s ({args.catalogue / r['s']:.2f}/s end to end, "
                  f"{r['steady']:.2f}/s after start-up), {r['summary']['products']} rows; memory (MiB) "
                  f"first/median/max/last: footprint {_mem(samples, 'footprint')}, RSS {_mem(samples, 'rss')}, PSS {_mem(samples, 'pss')}, "
                  f"USS {_mem(samples, 'uss')}, object store resident {_mem(samples, 'store_resident')}, "
                  f"used {_mem(samples, 'store_used')}", flush=True)
            for half, h in trend.items():
                print(f"  {half} half after warm-up, minute {h['t0'] / 60:.1f} to {h['t1'] / 60:.1f}, MiB/min: "
                      + ", ".join(f"{k} {h[k]['slope']:+.1f}" for k in MEMORY_KEYS), flush=True)
    results["load_end"] = os.getloadavg()[1]
    if not args.no_doc:
        path = write_section(ROOT / "docs" / "benchmarks.md", "batch", _markdown(results, cfg))
        print(f"wrote {path}")
    return 0


def _mem(samples: list[dict], key: str) -> str:
    mem = [s[key] for s in samples if s.get(key) is not None]
    if not mem:
        return "n/a"
    s = sorted(mem)
    return f"{mem[0]:.0f} / {s[len(s) // 2]:.0f} / {s[-1]:.0f} / {mem[-1]:.0f}"


def _markdown(r: dict, cfg: Config) -> str:
    n, b, cores = r["products"], cfg.batch, os.cpu_count()
    shared, alone, g = r["batch"], r["batch_alone"], r["generate_steady"]
    lines = ["## Catalogue batch on Ray Data (`agpis bench batch`)", "",
             f"Measured {date.today()} on {cores} CPU cores ({platform.processor() or platform.machine()}), "
             f"products of 7 candidates (~800x800 JPEG files, the demo's 16 products repeated under new ids), "
             f"review queue included (embedded Valkey), each command end to end including start-up and model loading. "
             f"`batch.actors={b.actors}`, `batch.actor_cpus={b.actor_cpus}`, `batch.read_cpus={b.read_cpus}`, "
             f"`batch.threads_per_actor={b.threads_per_actor}`, `batch.batch_size={b.batch_size}`. "
             f"Command: `agpis bench batch --products {n} --catalogue {r['catalogue']}`. 5-minute load average "
             f"{r['load_start']:.1f} at the start and {r['load_end']:.1f} at the end ({cores} means every core busy; "
             f"the bench itself keeps them busy, anything above that is another process sharing them).", "",
             "| command | products | seconds end to end | products/s end to end | products/s after start-up |",
             "|---|---|---|---|---|",
             f"| `agpis generate --batch` | {n} | {r['generate_s']:.1f} | {n / r['generate_s']:.2f} | {g:.2f} |",
             f"| `agpis batch` (Ray Data, local; backbone shared by a block's products) | {n} | {shared['s']:.1f} | "
             f"{n / shared['s']:.2f} | {shared['steady']:.2f} |",
             f"| `agpis batch`, `batch.backbone_across_products=false` (one forward per product) | {n} | "
             f"{alone['s']:.1f} | {n / alone['s']:.2f} | {alone['steady']:.2f} |", "",
             f"Ratio `agpis batch` / `agpis generate --batch`: **{shared['steady'] / g:.2f}x** after "
             f"start-up, {r['generate_s'] / shared['s']:.2f}x end to end (Ray's start and one model load per actor "
             f"cost `agpis batch` a fixed ~20-40 s). The backbone shared across products against one forward per "
             f"product: {shared['steady'] / alone['steady']:.2f}x after start-up.", "",
             "Mean milliseconds per product inside an actor (`timings_ms` of the output rows; the actors share "
             "the cores, so these are wall times on a contended core; with the backbone shared, `stage1` leaves out "
             "the block's forward, whose share by images is `stage1.backbone`):", "",
             "| step | backbone shared | one forward per product |", "|---|---|---|"]
    lines += [f"| {k} | {shared['steps_ms'][k]:.0f} | {alone['steps_ms'][k]:.0f} |" for k in STEPS]
    core_ms = 1000 * cores / shared["steady"]
    lines += ["", f"What 20 products/s needs: at {shared['steady']:.2f} products/s on {cores} cores a product costs "
                  f"about {core_ms:.0f} ms of core time ({cores} x 1000 / rate); 20 products/s on {cores} cores "
                  f"allows {1000 * cores / 20:.0f} ms. Of a product's time in an actor, stage 1's backbone takes "
                  f"{shared['steps_ms']['stage1.backbone']:.0f} ms, the rest of stage 1 "
                  f"{shared['steps_ms']['stage1']:.0f} ms (EdgeBoxes proposals and duplicate matching most of it, "
                  f"table above) and stage 2 {shared['steps_ms']['stage2']:.0f} ms: the target is "
                  + ("within reach." if core_ms <= 1000 * cores / 20 else
                     f"out of reach on {cores} cores with these models by a factor of about "
                     f"{core_ms / (1000 * cores / 20):.0f}, whatever the engine; sharing the backbone's forward saves "
                     f"calls, not arithmetic. It takes about {20 * core_ms / 1000:.0f} such cores, or less work per product.")]
    if r.get("big_s"):
        samples, trend = r["mem_samples"], r.get("mem_trend") or {}
        rate = r["big_steady"]
        hours_100k = 100_000 / rate / 3600
        store = b.object_store_mb
        lines += ["", f"Large catalogue: {r['catalogue']} products in {r['big_s']:.0f} s "
                      f"({r['catalogue'] / r['big_s']:.2f} products/s end to end, {rate:.2f} after start-up), "
                      f"{r['big_rows']} output rows ({', '.join(f'{k} {v}' for k, v in sorted(r['big_status'].items()))}), "
                      f"`batch.object_store_mb={store}` ("
                      + (f"Ray's object store capped at {store} MiB" if store > 0 else "Ray's default object store, 30% of RAM")
                      + "). Memory of the job and all its Ray processes, sampled every 5 s (reading every process's smaps takes ~0.4 s of CPU): the **footprint**, "
                      "every page counted once (the sum of their PSS outside the object store, plus the store's "
                      "resident pages: its /dev/shm file's allocated pages, those that only the store holds "
                      "included); the sum of their RSS (the store counted once per process that touched its pages: "
                      "an overstatement); the sum of their PSS (each shared page divided among the processes that "
                      "map it; store pages no process maps are missing, and it grows as the processes touch more "
                      "of the store's pages, with no new memory); the sum of their USS (pages only one process maps); "
                      "and the object store: its resident pages and what its objects use (the raylet's own figure, "
                      "every ~10 s).", "",
                  "| | first | median | max | last |", "|---|---|---|---|---|"]
        for key, name in (("footprint", "footprint (MiB)"), ("rss", "RSS, sum (MiB)"), ("pss", "PSS, sum (MiB)"), ("uss", "USS, sum (MiB)"),
                          ("driver_pss", "PSS of the driver (MiB)"), ("store_resident", "object store, resident (MiB)"),
                          ("store_used", "object store, used by objects (MiB)")):
            values = _mem(samples, key).split(" / ")
            lines.append(f"| {name} | " + " | ".join(values + [""] * (4 - len(values))) + " |")
        lines += ["", "| minute | footprint | RSS | PSS | USS | store resident | store used |",
                  "|---|---|---|---|---|---|---|"]
        fmt = lambda v: "" if v is None else f"{v:.0f}"  # noqa: E731
        for s in samples[::max(1, len(samples) // 12)] + samples[-1:]:
            lines.append(f"| {s['t'] / 60:.1f} | " + " | ".join(fmt(s.get(k)) for k in
                         ("footprint", "rss", "pss", "uss", "store_resident", "store_used")) + " |")
        if trend:
            lines += ["", "Slope after warm-up (from the first output file to the last, least squares over the "
                          "samples; MiB/min), each half of that span:", "",
                      "| half | minutes | footprint | RSS | PSS | USS | driver PSS | store resident | store used |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for half, h in trend.items():
                lines.append(f"| {half} | {h['t0'] / 60:.1f}-{h['t1'] / 60:.1f} | "
                             + " | ".join(f"{h[k]['slope']:+.1f}" for k in MEMORY_KEYS) + " |")
        lines += ["", f"Cost per 100,000 products at this rate: {hours_100k:.2f} h on {MACHINE} at "
                      f"${PRICE_PER_HOUR_USD}/h = **${hours_100k * PRICE_PER_HOUR_USD:.2f}** "
                      f"(price assumed as of {PRICE_DATE})."]
        if r["catalogue"] < 100_000:
            lines += ["", f"Not run: the issue's 100,000-product catalogue. At {rate:.2f} products/s it takes "
                          f"{hours_100k:.1f} h of both cores, more than the session that measured this had; memory is "
                          f"sampled over {r['catalogue']} products only."]
    lines += ["", "Targets (issue 14): >= 1.5x `agpis generate --batch`; >= 20 products/s on 2 cores; memory flat "
                  "across 100,000 products."]
    return "\n".join(lines)
