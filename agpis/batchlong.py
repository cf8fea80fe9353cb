"""`agpis bench batch --catalogue N --work-dir DIR`: a catalogue too long for one sitting, kept in DIR.

The catalogue (the demo's products repeated under new ids), `agpis batch`'s output, its review
queue (embedded Valkey) and the memory samples all live in DIR. Run the same command again after
it was stopped (killed, a machine going away) and `agpis batch` resumes: the products already
written are skipped. Every run appends to DIR/runs.jsonl and DIR/memory.jsonl (samples tagged with
the run), and the report is rebuilt from DIR after each run (`--report-only`: without running):

- each run: when, how many products it wrote (from the output files' names, which carry the time
  they were written), its rate, its memory (first / median / max / last, and the slope over each
  half of its span after warm-up);
- exactly once: output rows against distinct product ids against the catalogue, and the review
  queue's entries per product against the QUEUED rows (no product reaches reviewers twice, none
  written without its entry).

Written into docs/benchmarks.md (section `batch-catalogue`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from agpis.batchbench import MEMORY_KEYS, ROOT, _batch, _mem, memory_trend, write_catalogue
from agpis.config import Config
from agpis.docsections import write_section


# Seconds between memory samples: reading every process's smaps costs ~0.4 s of CPU, and a run of
# hours needs no finer grain than the 5,000-product bench's 5 s.
SAMPLE_S = 15.0


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    return out


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")


DISTINCT = 16  # the catalogue repeats the demo's first 16 products


def prepare(work: Path, n: int, replay: bool = False) -> Path:
    """The catalogue of `n` products in work/catalogue, written once; a different `n`, or the other
    mode (pipeline / replayed decisions) in the same directory, is an error."""
    from agpis.data.synth import demo_products

    meta = work / "catalogue.json"
    cat = work / "catalogue" / "catalogue.jsonl"
    if meta.exists():
        had = json.loads(meta.read_text())
        if had["products"] != n or had.get("replay", False) != replay:
            raise SystemExit(f"{work} holds a catalogue of {had['products']} products"
                             f"{' (replay)' if had.get('replay') else ''}, not {n}{' (replay)' if replay else ''}: "
                             "use another --work-dir")
        return cat
    work.mkdir(parents=True, exist_ok=True)
    write_catalogue(work / "catalogue", demo_products(DISTINCT, seed=1, size=800), n, prefix="big")
    meta.write_text(json.dumps({"products": n, "products_from": f"demo_products({DISTINCT}, seed=1, size=800)",
                                "replay": replay}))
    return cat


def _command(cfg: Config, work: Path, cat: Path, replay: bool) -> list[str]:
    """The job's command before its `batch INPUT --out DIR` arguments: `agpis`, or the replay
    benchmark's driver (agpis/batchreplay.py) with the pipeline's decisions on the distinct products,
    made once here."""
    if not replay:
        return [sys.executable, "-m", "agpis.cli"]
    from agpis.batchreplay import make_templates

    templates = work / "replay-templates.parquet"
    if not templates.exists():
        print(f"deciding the catalogue's {DISTINCT} distinct products with the pipeline (the replayed decisions)",
              flush=True)
        make_templates(cfg, cat, templates, DISTINCT)
    return [sys.executable, "-m", "agpis.batchreplay", str(templates)]


def run_long(cfg: Config, args) -> int:
    work = Path(args.work_dir).resolve()
    replay = getattr(args, "replay", False)
    cat = prepare(work, args.catalogue, replay)
    if not args.report_only:
        env = {**os.environ, "AGPIS_QUEUE__DATA_DIR": str(work / "redis"), "AGPIS_QUEUE__OUTBOX_DIR": str(work / "outbox")}
        env.pop("REDIS_URL", None)
        k = len([r for r in _jsonl(work / "runs.jsonl") if "start" in r])
        start = time.time()
        _append(work / "runs.jsonl", {"run": k, "start": start, "load": os.getloadavg()[1], "nice": os.nice(0)})
        command = _command(cfg, work, cat, replay)
        print(f"run {k}: agpis batch{' (replayed decisions)' if replay else ''} on {args.catalogue} products in "
              f"{work} (resumes what is written)", flush=True)
        r = _batch(command, cat, work / "out", env, sample=True,
                   memory_log=work / "memory.jsonl", tag={"run": k}, interval_s=SAMPLE_S)
        _append(work / "runs.jsonl", {"run": k, "end": time.time(), "new": r["summary"]["last_run"]["new"],
                                      "skipped": r["summary"]["last_run"]["skipped"], "steady_per_s": r["steady"],
                                      "load": os.getloadavg()[1]})
    text = report(work, cfg)
    print(text)
    if not args.no_doc:
        section = "batch-replay" if replay else "batch-catalogue"
        print(f"wrote {write_section(ROOT / 'docs' / 'benchmarks.md', section, text)}")
    return 0


def _files(out: Path) -> list[tuple[float, int]]:
    """(time written, rows) of each output file, oldest first: the name carries time_ns."""
    import pyarrow.parquet as pq

    return sorted((int(p.name.split("-")[1]) / 1e9, pq.read_metadata(p).num_rows) for p in out.glob("part-*.parquet"))


def exactly_once(work: Path, cfg: Config) -> dict:
    """Rows, distinct ids and catalogue ids; queue entries per product against the QUEUED rows."""
    from agpis.batch import iter_rows
    from agpis.redisconn import RedisHandle

    rows = list(iter_rows(work / "out", ["product_id", "status"]))
    ids = Counter(r["product_id"] for r in rows)
    queued = {r["product_id"] for r in rows if r["status"] == "QUEUED"}
    n = json.loads((work / "catalogue.json").read_text())["products"]
    catalogue = {f"big-{i:06d}" for i in range(n)}
    out = {"catalogue": n, "rows": len(rows), "distinct": len(ids), "twice": sum(1 for c in ids.values() if c > 1),
           "missing": len(catalogue - set(ids)), "unknown": len(set(ids) - catalogue),
           "status": dict(Counter(r["status"] for r in rows)), "queued_rows": len(queued)}
    qcfg = dataclasses.replace(cfg.queue, data_dir=str(work / "redis"), redis_url=None)
    with RedisHandle(qcfg) as h:
        entries: Counter = Counter()
        start = "-"
        while True:
            page = h.client.xrange(qcfg.stream, min=start, max="+", count=2000)
            for entry_id, raw in page:
                entries[(raw.get(b"product_id") or b"").decode()] += 1
            if len(page) < 2000:
                break
            start = "(" + page[-1][0].decode()
        out.update(queue_mib=h.client.info("memory")["used_memory"] / 2**20, queue_entries=sum(entries.values()),
                   queue_products_twice=sum(1 for c in entries.values() if c > 1),
                   queued_without_entry=len(queued - set(entries)), entry_without_queued_row=len(set(entries) - queued),
                   queue_stream=qcfg.stream)
    return out


def _run_numbers(k: int, r: dict, starts: list[float], files: list[tuple[float, int]], samples: list[dict]):
    """One run's (k, record, rows written, end time, samples with `job` (the footprint without the
    queue's Valkey), memory trend after warm-up: its first output file to its last). Samples after
    its last file are left out when it ended by itself: it then stopped Ray and the queue and summed up
    its output (a killed run was still working)."""
    nxt = min([s for s in starts if s > r["start"]], default=float("inf"))
    mine = [(t, n) for t, n in files if r["start"] <= t < nxt]
    last = mine[-1][0] if mine and "end" in r else float("inf")
    ss = [{**s, "job": s["footprint"] - s.get("queue_pss", 0.0) if s.get("footprint") is not None else None}
          for s in samples if s.get("run") == k and s["wall"] <= last]
    end = r.get("end") or (ss[-1]["wall"] if ss else r["start"])
    trend = memory_trend(ss, mine[0][0] - r["start"], mine[-1][0] - r["start"], MEMORY_KEYS + ("job",)) \
        if len(mine) > 1 and ss else {}
    return k, r, sum(n for _, n in mine), end, ss, trend


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def by_written(samples: list[dict], files: list[tuple[float, int]], catalogue: int, steps: int = 10) -> list:
    """[(products written when sampled, sample)]: the first sample at or after each `catalogue / steps`
    products written (from the output files' times), and the last one."""
    import bisect

    times = [t for t, _ in files]
    total, cum = 0, []
    for _, n in files:
        total += n
        cum.append(total)
    written = [(cum[i - 1] if (i := bisect.bisect_right(times, s["wall"])) else 0, s)
               for s in sorted(samples, key=lambda s: s["wall"])]
    out, mark = [], 0
    for w, s in written:
        if w >= mark:
            out.append((w, s))
            mark = (w // max(1, catalogue // steps) + 1) * max(1, catalogue // steps)
    if written and (not out or out[-1][1] is not written[-1][1]):
        out.append(written[-1])
    return out


def report(work: Path, cfg: Config) -> str:
    runs: dict[int, dict] = {}
    for r in _jsonl(work / "runs.jsonl"):
        runs.setdefault(r["run"], {}).update(r)
    samples = _jsonl(work / "memory.jsonl")
    files = _files(work / "out")
    once = exactly_once(work, cfg)
    starts = sorted(r["start"] for r in runs.values())
    niced = [k for k, r in runs.items() if r.get("nice", 0) > 0]
    replay = json.loads((work / "catalogue.json").read_text()).get("replay", False)
    if replay:
        title = ("## Catalogue batch with replayed decisions: the driver over a whole catalogue "
                 "(`agpis bench batch --replay --work-dir`)")
        intro = (f"Command: `agpis bench batch --replay --catalogue {once['catalogue']} --work-dir DIR`. "
                 "`agpis batch`'s driver, its Ray Data jobs, the read tasks (every image file read), the review "
                 "queue and the Parquet output as they are; the actors replay the pipeline's decisions on the "
                 "catalogue's 16 distinct products under each row's id instead of computing them "
                 "(agpis/batchreplay.py): the rows queued and written are real ones, ~20x the pipeline's rate. "
                 "It measures what lives as long as the job (the driver, Ray's GCS and raylet, the read workers, "
                 "the queue) over every product of the catalogue; it says nothing of the pipeline's speed or "
                 "memory (the pipeline actors start again with each chunk of `batch.chunk_products`). ")
    else:
        title = "## Catalogue batch: a long catalogue over several runs (`agpis bench batch --work-dir`)"
        intro = (f"Command: `agpis bench batch --catalogue {once['catalogue']} --work-dir DIR`, run again after "
                 "each stop: `agpis batch` resumes from what DIR's output holds. ")
    lines = [title, "", intro + "The demo's 16 products of 7 ~800x800 JPEG "
             "candidates repeated under new ids, review queue included (embedded Valkey in DIR). A run ends "
             "`killed` when it was stopped before the end (the session that ran it ended). "
             + (f"Rates are with the cores shared: runs {', '.join(str(k) for k in sorted(niced))} were started at "
                "a low CPU priority (nice) beside other work, so their rates say nothing of the engine's speed (see "
                "the comparison above); memory is the point here." if niced else
                "Rates include each run's start-up (Ray, the models, the resumed run's skipping)."), "",
             "Memory: the footprint of the job and all its processes (as in the section above), and the same "
             "without the review queue's Valkey, whose data grows with every product queued by design; slopes "
             "by least squares over each half of the run's span after warm-up (its first output file to its last). "
             "The driver's own memory leaves out its share of the object store's pages: the PSS of a process "
             "grows as it maps more of the store (a 512 MiB file) with no new memory.", "",
             "| run | started (UTC) | ended | products written | minutes | products/s | footprint MiB first / median / max / last | "
             "without the queue | slope without the queue, MiB/min, 1st / 2nd half | driver outside the object store "
             "(MiB) | driver's anonymous memory (MiB) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    per_run = [_run_numbers(k, runs[k], starts, files, samples) for k in sorted(runs)]
    for k, r, rows, end, ss, trend in per_run:
        rate = rows / (end - r["start"]) if end > r["start"] else 0.0
        slopes = " / ".join(f"{trend[h]['job']['slope']:+.1f}" for h in ("first", "second") if h in trend) or "–"
        lines.append(f"| {k} | {_utc(r['start'])} | {'done' if 'end' in r else 'killed'} {_utc(end)} | {rows} | "
                     f"{(end - r['start']) / 60:.0f} | {rate:.2f} | {_mem(ss, 'footprint')} | {_mem(ss, 'job')} | "
                     f"{slopes} | {_mem(ss, 'driver_own')} | {_mem(ss, 'driver_anon')} |")
    lines += ["", "Per run, every key of the sampler (MiB/min over each half after warm-up; the keys as in the "
                  "5,000-product section above):", "",
              "| run | half | minutes | " + " | ".join(MEMORY_KEYS) + " |", "|---|---|---|" + "---|" * len(MEMORY_KEYS)]
    for k, _, _, _, _, trend in per_run:
        for half, h in trend.items():
            lines.append(f"| {k} | {half} | {h['t0'] / 60:.0f}-{h['t1'] / 60:.0f} | "
                         + " | ".join(f"{h[key]['slope']:+.1f}" for key in MEMORY_KEYS) + " |")
    lines += ["", "By products written, over all runs (the first sample at or after each tenth of the catalogue; "
                  "MiB): the driver's own memory (outside the object store), of it its anonymous memory (heap and "
                  "other private pages: no library code, no store pages), Ray's GCS, the footprint without the "
                  "review queue, and the queue's Valkey (its data, by design):", "",
              "| products written | run | minute of the run | driver | driver anonymous | GCS | footprint without the queue | queue |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {w} | {s['run']} | {s['t'] / 60:.1f} | {_f(s.get('driver_own'))} | {_f(s.get('driver_anon'))} | "
              f"{_f(s.get('gcs_pss'))} | "
              f"{_f(s.get('footprint') - s.get('queue_pss', 0.0) if s.get('footprint') is not None else None)} | "
              f"{_f(s.get('queue_pss'))} |" for w, s in by_written([s for *_, ss, _ in per_run for s in ss], files,
                                                            once["catalogue"])]
    done = once["distinct"] == once["catalogue"] and once["missing"] == 0
    lines += ["", f"Exactly once, over all runs: {once['rows']} output rows, {once['distinct']} distinct products "
                  f"of the catalogue's {once['catalogue']} ({once['twice']} written twice, {once['missing']} not yet "
                  f"written, {once['unknown']} not in the catalogue); status "
                  + ", ".join(f"{k} {v}" for k, v in sorted(once["status"].items()))
                  + f". Review queue (`{once['queue_stream']}`): {once['queue_entries']} entries for "
                    f"{once['queued_rows']} QUEUED rows; products with more than one entry: "
                    f"{once['queue_products_twice']}; QUEUED rows without an entry: {once['queued_without_entry']}; "
                    f"entries without a QUEUED row: {once['entry_without_queued_row']} (a killed run had queued them, "
                    "it queues before it writes; the run that resumes writes their rows, and the queue's key per "
                    "product and sequence keeps them from being queued again). The queue holds "
                    f"{once['queue_mib']:.0f} MiB now (Valkey's used_memory): it is a child of the job, so its growth "
                    "with every product queued is inside the footprint above (data kept, not a leak).",
              "", ("The whole catalogue is written." if done else
                   f"Not finished: {once['missing']} of {once['catalogue']} products still to do; the next run resumes.")]
    return "\n".join(lines)
