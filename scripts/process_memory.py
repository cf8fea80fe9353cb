"""The memory of a running job by process kind: which of its processes grows.

`agpis bench batch` samples the job's memory as a whole (docs/benchmarks.md); when the whole
grows, this names the process. Linux only (/proc).

    python scripts/process_memory.py sample PID LOG [--every 60]   # until PID's tree is gone
    python scripts/process_memory.py summary LOG                    # per kind: first/median/max/last, slopes

PID: the job's top process (`agpis bench batch` or `agpis batch`); every descendant is sampled,
Ray's workers too (they are the raylet's children, in their own process groups). Each sample is a
JSON line {"wall": s, "procs": [[pid, kind, PSS MiB], ...]}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

# Command-line words that name a process better than its executable (python3.11 for most of them).
# Within one argument the first word found wins (log_monitor.py before monitor.py).
_NAMED = ("gcs_server", "raylet", "log_monitor.py", "monitor.py", "dashboard.py", "valkey-server", "agpis.cli",
          "bin/agpis")
_KINDS = {"ray::MapWorker(MapBatches(Decide))": "pipeline actors", "ray::IDLE": "idle workers",
          "ray::MapBatches(read_images)": "image reads", "monitor.py": "autoscaler monitor",
          "agpis.cli": "agpis batch (the driver)", "bin/agpis": "agpis (top process)"}


def kind(pid: int) -> str:
    args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if not args:
        return "?"
    if args[0].startswith("ray::"):
        name = args[0].split(".")[0]  # ray::MapWorker(...).submit -> ray::MapWorker(...)
    else:
        name = next((w for a in args[:4] for w in _NAMED if w in a), os.path.basename(args[0]))
    return _KINDS.get(name, name)


def sample(pid: int, log: Path, every: float) -> None:
    from agpis.batchbench import descendants, smaps_rollup  # the bench's own /proc readers

    while True:
        procs = []
        for p in descendants(pid):
            try:
                mem = smaps_rollup(p)
                if mem:  # {} once gone
                    procs.append([p, kind(p), round(mem.get("Pss", 0) / 1024, 1)])
            except OSError:
                pass
        if not procs:
            return
        with log.open("a") as f:
            f.write(json.dumps({"wall": time.time(), "procs": procs}) + "\n")
        time.sleep(every)


def summary(log: Path) -> str:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if len(rows) < 2:
        return f"{log}: {len(rows)} sample(s), too few"
    t0 = rows[0]["wall"]
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by_kind: dict[str, float] = {}
        for _, k, p in r["procs"]:
            by_kind[k] = by_kind.get(k, 0.0) + p
        by_kind["all"] = sum(by_kind.values())
        for k, v in by_kind.items():
            series.setdefault(k, []).append(((r["wall"] - t0) / 60, v))
    end = (rows[-1]["wall"] - t0) / 60
    lines = [f"{len(rows)} samples over {end:.0f} min; PSS MiB (shared pages divided among their processes)",
             "", "| process kind | first | median | max | last | slope, 1st half (MiB/min) | 2nd half |",
             "|---|---|---|---|---|---|---|"]
    for k, pts in sorted(series.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        vals = sorted(v for _, v in pts)
        halves = [[p for p in pts if p[0] < end / 2], [p for p in pts if p[0] >= end / 2]]
        lines.append(f"| {k} | {pts[0][1]:.0f} | {vals[len(vals) // 2]:.0f} | {vals[-1]:.0f} | {pts[-1][1]:.0f} | "
                     + " | ".join(_slope(h) for h in halves) + " |")
    return "\n".join(lines)


def _slope(pts: list[tuple[float, float]]) -> str:
    """Least squares, MiB/min; a kind seen in fewer than 3 samples of the half (a short-lived worker): –."""
    from agpis.batchbench import slope

    v = slope([{"t": t * 60, "mib": m} for t, m in pts], "mib") if len(pts) >= 3 else float("nan")
    return "–" if math.isnan(v) else f"{v:+.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("pid", type=int)
    s.add_argument("log", type=Path)
    s.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    m = sub.add_parser("summary")
    m.add_argument("log", type=Path)
    a = ap.parse_args()
    if a.cmd == "sample":
        sample(a.pid, a.log, a.every)
    else:
        print(summary(a.log))


if __name__ == "__main__":
    main()
