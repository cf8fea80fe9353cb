"""`agpis batch INPUT --out DIR`: a whole catalogue on Ray Data, resumable, each product queued once.

    INPUT (JSONL, CSV, Parquet), batch.chunk_products rows   this process: each chunk one Ray Data
      at a time, products already in DIR left out            job (from_arrow, blocks of batch_size)
      -> parse a row, fetch its images' bytes                 map_batches: tasks (batch.read_cpus)
      -> decode, stage 1's backbone over the block's          map_batches: actor pool, models loaded
         products' images, then Pipeline.run per product      once per actor (batch.actors)
         (the service's pipeline)
      -> this process: review queue (idempotent producer),
         Parquet files, progress bar, summary                 iter_batches

Why the driver writes the output rather than `Dataset.write_parquet`: it queues a product before
it writes its row, and writes each file atomically (temporary name, then rename). A job killed
anywhere leaves only whole files, every written product is already queued, and a product queued
but not written is computed again and found in the queue by the idempotent producer
(ALREADY_ENQUEUED). The driver also keeps every product id (on disk: Ledger), so no product is
written twice: not after a restarted actor redid a batch, not when the input repeats a product.

A bad row or an unreadable image becomes an output row with status ERROR and its error; the job
goes on. Plain paths and file:// URIs are read as they are (the operator's own catalogue, as in
`agpis generate --batch`), http(s):// only from `images.allowed_hosts`, anything else (s3://,
gs://, ...) through fsspec when its package is installed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from agpis import images, malloc
from agpis.config import Config

log = logging.getLogger("agpis.batch")

ERROR = "ERROR"  # an output status beside QUEUED, REJECTED and TERMINATED
WRITTEN_BEFORE, TAKEN, WRITTEN = 0, 1, 2  # a product id's state in run_batch

# What the read tasks hand to the pipeline actors: one row per product.
READ_SCHEMA = pa.schema([
    ("product_id", pa.string()), ("title", pa.string()), ("category", pa.string()),
    ("image_ids", pa.list_(pa.string())), ("image_uris", pa.list_(pa.string())),
    ("image_data", pa.list_(pa.binary())), ("fetch_ms", pa.float64()), ("error", pa.string()),
])

# One output row per product (the Parquet files in --out).
OUTPUT_SCHEMA = pa.schema([
    ("product_id", pa.string()),
    ("status", pa.string()),  # QUEUED | REJECTED | TERMINATED | ERROR
    ("p_qualified", pa.float64()), ("threshold", pa.float64()),
    ("sequence", pa.list_(pa.string())),
    ("removed", pa.list_(pa.struct([("id", pa.string()), ("rule", pa.string()), ("reason", pa.string())]))),
    ("terminated_reason", pa.string()), ("predicted_rule", pa.string()), ("feedback", pa.string()),
    ("model_versions", pa.map_(pa.string(), pa.string())),
    ("timings_ms", pa.map_(pa.string(), pa.float64())),
    ("review_state", pa.string()), ("review_entry_id", pa.string()),
    ("error", pa.string()),
    ("node_id", pa.string()),  # the Ray node whose actor decided (where the work landed)
])
# The actors add the review entry of a QUEUED product; the driver sends it and drops the column.
WORK_SCHEMA = OUTPUT_SCHEMA.append(pa.field("review_entry", pa.string()))


class BadRow(ValueError):
    def __init__(self, product_id: str, message: str):
        super().__init__(message)
        self.product_id = product_id


# -- reading the catalogue (this process, in chunks) ------------------------------------------------
# Why not ray.data.read_*: Ray Data keeps state for every block of a dataset until the dataset is
# done (its metadata, stats, queued references), and a catalogue read as one dataset of blocks of
# batch_size products made the driver grow all job long (~8 MiB/min, docs/benchmarks.md). The
# catalogue's rows are small; read here, batch.chunk_products at a time, each chunk is one Ray Data
# job of a bounded number of blocks, freed when it is done.
CATALOGUE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")


def catalogue_files(path: str) -> list[tuple[Any, str]]:
    """INPUT -> [(fsspec filesystem, file path)]: the file, or a directory's catalogue files in
    name order. Plain paths and any fsspec URL (s3://, gs://, ...) whose package is installed."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(root):
        files = sorted(f for f in fs.find(root) if f.lower().endswith(CATALOGUE_SUFFIXES))
        if not files:
            raise ValueError(f"{path}: a directory without .jsonl, .csv or .parquet files")
        return [(fs, f) for f in files]
    if not root.lower().endswith(CATALOGUE_SUFFIXES):
        raise ValueError(f"{path}: INPUT must be .jsonl, .csv or .parquet (or a directory of them)")
    if not fs.exists(root):
        raise FileNotFoundError(f"{path}: no such catalogue")
    return [(fs, root)]


def _text_rows(f, name: str) -> Iterable[dict[str, Any]]:
    """A JSONL or CSV file's raw rows: a JSONL line as {"text": line} (parsed in the read tasks, so
    that a malformed line is one ERROR row), a CSV row as strings."""
    if name.lower().endswith(".csv"):
        import csv
        import io

        yield from csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline=""))
        return
    # blank lines skipped and line ends dropped, as ray.data.read_text did (a malformed line's
    # made-up id is a hash of its text: the same in a job resumed across versions)
    yield from ({"text": line.decode("utf-8", errors="replace").rstrip("\r\n")} for line in f if line.strip())


def _file_rows(fs, name: str, chunk: int) -> Iterable[pa.Table]:
    """One file's raw rows (_text_rows; a Parquet row as it is) in tables of at most `chunk` rows."""
    with fs.open(name, "rb") as f:
        if name.lower().endswith(".parquet"):
            for batch in pq.ParquetFile(f).iter_batches(batch_size=chunk):
                yield pa.Table.from_batches([batch])
            return
        part = []
        for row in _text_rows(f, name):
            part.append(row)
            if len(part) == chunk:
                yield pa.Table.from_pylist(part)
                part = []
        if part:
            yield pa.Table.from_pylist(part)


def catalogue_chunks(path: str, chunk: int) -> Iterable[pa.Table]:
    """INPUT's raw rows in order, in tables of at most `chunk` rows (a file's last may be smaller)."""
    for fs, name in catalogue_files(path):
        yield from _file_rows(fs, name, chunk)


def count_rows(path: str) -> int:
    """Products in INPUT, for the progress bar's ETA: Parquet from its footers, else one pass."""
    total = 0
    for fs, name in catalogue_files(path):
        with fs.open(name, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows if name.lower().endswith(".parquet") \
                else sum(1 for _ in _text_rows(f, name))
    return total


def _stable_id(raw: Any) -> str:
    """An id for a row that has none: the same row gets the same id in a re-run (so resume skips it)."""
    return "row-" + hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_row(raw: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    """A raw row (a {"text": line} of JSONL, or a CSV/Parquet row) -> (product_id, title, category,
    image sources). Raises BadRow naming the product (or a stable made-up id)."""
    if set(raw) == {"text"}:  # a JSONL line
        try:
            raw = json.loads(raw["text"])
        except json.JSONDecodeError as e:
            raise BadRow(_stable_id(raw["text"]), f"malformed JSON line: {e}") from None
        if not isinstance(raw, dict):
            raise BadRow(_stable_id(raw), "a line must be a JSON object")
    pid = raw.get("product_id")
    pid = str(pid).strip() if pid is not None else ""
    if not pid:
        raise BadRow(_stable_id(raw), "product_id is missing")
    title, category, imgs = raw.get("title"), raw.get("category") or "", raw.get("images")
    if not isinstance(title, str) or not title.strip():
        raise BadRow(pid, "title is missing or empty")
    if isinstance(imgs, str):  # CSV: a JSON list, or sources separated by '|'
        try:
            imgs = json.loads(imgs) if imgs.strip().startswith("[") else [s for s in imgs.split("|") if s.strip()]
        except json.JSONDecodeError as e:
            raise BadRow(pid, f"images is not a JSON list: {e}") from None
    if hasattr(imgs, "tolist"):  # a Parquet list column arrives as a numpy array
        imgs = imgs.tolist()
    if not isinstance(imgs, list) or not imgs or not all(isinstance(s, str) and s.strip() for s in imgs):
        raise BadRow(pid, "images must be a non-empty list of paths or URIs")
    return pid, title, str(category), [s.strip() for s in imgs]


def candidate_id(source: str) -> str:
    """The file name without extension, as `agpis generate` names candidates."""
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).stem or source


def fetch_image(cid: str, source: str, base: Path | None, cfg) -> tuple[bytes, str]:
    """The encoded bytes of one candidate and its URI (for reviewers)."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme in ("http", "https"):
        return images.fetch(cid, source, cfg), source
    if parsed.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else Path(source)
        if not path.is_absolute():
            if base is None:
                raise images.ImageError(cid, f"relative path {source} needs a local INPUT file beside it")
            path = base / path
        try:
            with open(path, "rb") as f:
                data = f.read(cfg.max_bytes + 1)
        except OSError as e:
            raise images.ImageError(cid, f"cannot read {path}: {e.strerror or e}") from None
        uri = path.resolve().as_uri()
    else:
        import fsspec

        try:
            with fsspec.open(source, "rb") as f:
                data = f.read(cfg.max_bytes + 1)
        except ImportError as e:  # e.g. s3:// without s3fs installed
            raise images.ImageError(cid, f"no filesystem for {parsed.scheme}:// is installed ({e})") from None
        except (OSError, ValueError) as e:
            raise images.ImageError(cid, f"cannot read {source}: {e}") from None
        uri = source
    if len(data) > cfg.max_bytes:
        raise images.ImageError(cid, f"{source} is larger than images.max_bytes ({cfg.max_bytes})")
    return data, uri


def row_id(raw: dict[str, Any]) -> str:
    """The product id a raw row will be written under (a bad row's made-up one included)."""
    try:
        return parse_row(raw)[0]
    except BadRow as e:
        return e.product_id


def read_images(batch: pa.Table, base: str | None, cfg: Config) -> pa.Table:
    """Ray Data task: raw rows -> products with their images' bytes."""
    rows = []
    for raw in batch.to_pylist():
        t0 = time.perf_counter()
        row = {"product_id": "", "title": "", "category": "", "image_ids": [], "image_uris": [],
               "image_data": [], "fetch_ms": 0.0, "error": None}
        try:
            pid, title, category, sources = parse_row(raw)
            row.update(product_id=pid, title=title, category=category)
            for source in sources:
                cid = candidate_id(source)
                data, uri = fetch_image(cid, source, Path(base) if base else None, cfg.images)
                row["image_ids"].append(cid)
                row["image_uris"].append(uri)
                row["image_data"].append(data)
        except BadRow as e:
            row.update(product_id=e.product_id, error=f"BadRow: {e}")
        except images.ImageError as e:
            row.update(image_ids=[], image_uris=[], image_data=[], error=f"{type(e).__name__}: {e}")
        row["fetch_ms"] = (time.perf_counter() - t0) * 1000
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=READ_SCHEMA)


# -- deciding (the actor pool) ----------------------------------------------------------------------
def error_row(product_id: str, error: str, node_id: str = "") -> dict[str, Any]:
    return {"product_id": product_id, "status": ERROR, "p_qualified": None, "threshold": None, "sequence": [],
            "removed": [], "terminated_reason": "", "predicted_rule": "", "feedback": "", "model_versions": None,
            "timings_ms": None, "review_state": "NOT_SENT", "review_entry_id": "", "error": error,
            "node_id": node_id, "review_entry": None}


class Decide:
    """Ray Data actor: loads the models once, then decides on batches of products.

    A batch's products are decoded first, then their images go through stage 1's backbone together
    (Pipeline.backbone_many: ONNX calls of stage1.backbone_batch images across the products; on
    CPU small calls are the cheapest per image, docs/benchmarks.md), then each product runs the
    rest of the pipeline with its share of the maps. The decision is the one Pipeline.run makes
    alone (tests/service/test_batch.py compares)."""

    def __init__(self, cfg: Config):
        import ray

        from agpis.pipeline import Pipeline

        # The actors share the cores between them: each computes with few threads, and with one,
        # without stage 1's side thread (the other actors already keep the cores busy).
        n = cfg.batch.threads_per_actor
        cfg.pipeline.threads, cfg.stage1.threads, cfg.stage2.onnx_threads = n, n, n
        cfg.stage1.side_thread = cfg.stage1.side_thread and n > 1
        self.cfg = cfg
        self.pipeline = Pipeline.load(config=cfg)
        # Outside Ray (a test calling the actor directly) there is no node, and asking would start Ray.
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        decoded = [self.decode(row) for row in rows]  # (images, timings), or an error row
        todo = [i for i, d in enumerate(decoded) if isinstance(d, tuple)]
        features = dict(zip(todo, self.backbone([decoded[i] for i in todo])))
        out = [d if isinstance(d, dict) else self.decide(row, *d, features.get(i))
               for i, (row, d) in enumerate(zip(rows, decoded))]
        return pa.Table.from_pylist(out, schema=WORK_SCHEMA)

    def decode(self, row: dict[str, Any]) -> tuple[list, dict[str, float]] | dict[str, Any]:
        """A product's images decoded, with its timings so far; or its ERROR row."""
        if row["error"]:
            return error_row(row["product_id"], row["error"], self.node_id)
        t0 = time.perf_counter()
        try:
            decoded = [images.decode(cid, data, self.cfg.images, uri)
                       for cid, uri, data in zip(row["image_ids"], row["image_uris"], row["image_data"])]
        except images.ImageError as e:
            return error_row(row["product_id"], f"{type(e).__name__}: {e}", self.node_id)
        return decoded, {"fetch": row["fetch_ms"], "decode": (time.perf_counter() - t0) * 1000}

    def backbone(self, products: list[tuple[list, dict[str, float]]]) -> list[Any]:
        """Stage 1's backbone for all `products` together -> per product its `features`
        for Pipeline.run; None for each when switched off (batch.backbone_across_products), when
        stage 1 has no batched path (the placeholder) or when the forward fails: each product then
        runs its own and a bad one gets its own ERROR row. A single product has nothing to share."""
        none = [None] * len(products)
        if not self.cfg.batch.backbone_across_products or len(products) < 2:
            return none
        t0 = time.perf_counter()
        try:
            features = self.pipeline.backbone_many([ims for ims, _ in products])
        except Exception:  # noqa: BLE001 - the products are run one by one, each with its own error
            log.warning("the batch's backbone forward failed; products run one by one", exc_info=True)
            return none
        if features is None:
            return none
        # Each product's share of the forward, by its number of images, where a product run
        # alone reports its own forward: "stage1.backbone".
        ms, n = (time.perf_counter() - t0) * 1000, sum(len(ims) for ims, _ in products)
        for ims, timings in products:
            timings["stage1.backbone"] = ms * len(ims) / n
        return features

    def decide(self, row: dict[str, Any], decoded: list, timings: dict[str, float], features: Any) -> dict[str, Any]:
        from agpis.pipeline import QUEUED, PipelineError
        from agpis.review import entry_for

        pid = row["product_id"]
        try:
            d = self.pipeline.run(pid, row["title"], decoded, category=row["category"], explain=False,
                                  timings=timings, features=features)
        except (images.ImageError, PipelineError) as e:
            return error_row(pid, f"{type(e).__name__}: {e}", self.node_id)
        except Exception as e:  # noqa: BLE001 - one product's bug must not stop the catalogue
            log.exception("internal error", extra={"product_id": pid})
            return error_row(pid, f"internal error: {type(e).__name__}: {e}", self.node_id)
        uris = dict(zip(row["image_ids"], row["image_uris"]))
        entry = entry_for(d, row["title"], row["category"], uris) if d.status == QUEUED else None
        return {"product_id": pid, "status": d.status, "p_qualified": d.p_qualified, "threshold": d.threshold,
                "sequence": d.sequence, "removed": [{"id": r.id, "rule": r.rule, "reason": r.reason} for r in d.removed],
                "terminated_reason": d.terminated_reason, "predicted_rule": d.predicted_rule, "feedback": d.feedback,
                "model_versions": d.model_versions, "timings_ms": d.timings_ms, "review_state": "NOT_SENT",
                "review_entry_id": "", "error": None, "node_id": self.node_id,
                "review_entry": json.dumps(entry, ensure_ascii=False) if entry else None}


# -- the output directory ---------------------------------------------------------------------------
class Writer:
    """Rows -> Parquet files part-*.parquet in `out`, each written whole under a temporary name and
    renamed, so a reader (or a resumed job) never sees half a file."""

    def __init__(self, out: Path, rows_per_file: int, flush_s: float):
        self.out, self.rows_per_file, self.flush_s = out, rows_per_file, flush_s
        self.rows: list[dict] = []
        self.last = time.monotonic()
        self.files = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_file or time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.rows:
            return
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.out / f".{name}.tmp"
        pq.write_table(pa.Table.from_pylist(self.rows, schema=OUTPUT_SCHEMA), tmp)
        os.replace(tmp, self.out / name)
        self.rows, self.files = [], self.files + 1


def output_files(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


class LedgerError(RuntimeError):
    """The ledger could not be made in --out (agpis batch exits with its message)."""


class Ledger:
    """Every product id of the job and its state (WRITTEN_BEFORE, TAKEN, WRITTEN), on disk: a SQLite
    file in --out that each run builds again from the output files, so it never disagrees with them.

    Exactly-once needs every id of the catalogue; held in the driver's memory they grew it ~10 MiB
    per 100,000 products (a dict; two sets before it: twice that), the one part of the job that
    grew with the catalogue by design (docs/benchmarks.md). Here they take 1.8 MB of disk per
    100,000 (built in ~0.5 s; 100,000 lookups ~0.2 s) and the driver a page cache of at most
    `cache_mib`. No durability asked of SQLite (no journal, no sync): the file is rebuilt by the
    next run. Temporary files of a killed job are removed (their rows are redone), as is the
    ledger it left."""

    def __init__(self, out: Path, cache_mib: int = 4):
        for stale in [*out.glob(".part-*.tmp"), *out.glob(".ids-*.sqlite")]:
            stale.unlink()
        self.path = out / f".ids-{uuid.uuid4().hex[:8]}.sqlite"
        self.db = None
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            # One process, one connection: the file lock is taken once and kept (fewer lock calls,
            # which some network filesystems get wrong).
            for pragma in ("locking_mode=EXCLUSIVE", "journal_mode=OFF", "synchronous=OFF",
                           f"cache_size=-{cache_mib * 1024}"):
                self.db.execute(f"PRAGMA {pragma}")
            self.db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, state INTEGER NOT NULL) WITHOUT ROWID")
        except sqlite3.Error as e:
            self.close()
            raise LedgerError(f"{self.path}: the job's ledger of product ids could not be made there ({e}); "
                               "--out must be on a filesystem SQLite can lock (a local disk or a block volume)") from e
        self.db.execute("BEGIN")
        for path in output_files(out):
            ids = pq.read_table(path, columns=["product_id"]).column(0).to_pylist()
            self.db.executemany("INSERT OR IGNORE INTO ids VALUES (?, ?)", ((i, WRITTEN_BEFORE) for i in ids))
        self.written_before = self.db.execute("SELECT count(*) FROM ids").fetchone()[0]
        self.commit()

    def get(self, pid: str) -> int | None:
        row = self.db.execute("SELECT state FROM ids WHERE id = ?", (pid,)).fetchone()
        return row[0] if row else None

    def set(self, pid: str, state: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO ids VALUES (?, ?)", (pid, state))

    def commit(self) -> None:
        """End the open transaction (one per chunk: single statements would each be one) and start the next."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        self.path.unlink(missing_ok=True)


def summarize(out: Path) -> dict[str, Any]:
    """Counts over the whole output: by status, by rule (rejections by predicted rule, terminations by
    reason, removed images by rule), and errors by kind."""
    status, rejected, terminated, removed, errors = Counter(), Counter(), Counter(), Counter(), Counter()
    for path in output_files(out):
        t = pq.read_table(path, columns=["status", "predicted_rule", "terminated_reason", "removed", "error"])
        for r in t.to_pylist():
            status[r["status"]] += 1
            if r["status"] == "REJECTED":
                rejected[r["predicted_rule"]] += 1
            elif r["status"] == "TERMINATED":
                terminated[r["terminated_reason"]] += 1
            elif r["status"] == ERROR:
                errors[r["error"].split(":", 1)[0]] += 1
            removed.update(x["rule"] for x in r["removed"] or [])
    return {"products": sum(status.values()), "status": dict(status), "rejected_by_rule": dict(rejected),
            "terminated_by_reason": dict(terminated), "removed_images_by_rule": dict(removed),
            "errors_by_kind": dict(errors)}


# -- the job ----------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    out: Path
    new: int = 0  # rows written by this run
    skipped: int = 0  # already in --out before this run
    repeated: int = 0  # input rows whose product was already written (repeats in INPUT)
    wall_s: float = 0.0
    # Seconds from the start to the first and to the last product written: their rate leaves out
    # the start-up (Ray, models), which a catalogue pays once.
    first_s: float = 0.0
    last_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def products_per_s(self) -> float:
        return self.new / self.wall_s if self.wall_s else 0.0

    @property
    def steady_per_s(self) -> float:
        """0 when the rows came in one burst (a small job: one block per actor), which gives no rate."""
        return (self.new - 1) / (self.last_s - self.first_s) if self.new > 1 and self.last_s - self.first_s >= 1 else 0.0

    def run_stats(self) -> dict[str, float]:
        return {"new": self.new, "skipped": self.skipped, "repeated": self.repeated, "wall_s": round(self.wall_s, 2),
                "products_per_s": round(self.products_per_s, 3), "steady_per_s": round(self.steady_per_s, 3)}


def _init_ray(address: str, object_store_mb: int = 0) -> bool:
    """Connect to `address`, or start Ray in-process with an object store of `object_store_mb` MiB
    (0: Ray's default, 30% of RAM). -> True when we started it (and must stop it).

    The store is capped because its shared pages (/dev/shm) stay resident once touched: with Ray's
    default the job's memory grows while the store's allocator still finds untouched pages; with a
    small store it levels off once the store has been used through (docs/benchmarks.md). A cluster's
    store is the cluster's own setting (`ray start --object-store-memory`), never set from here:
    ray.init refuses object_store_memory when it connects."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        store = {"object_store_memory": object_store_mb * 2**20} if object_store_mb > 0 else {}
        # Ray keeps at most as many idle workers as there are unclaimed CPUs; with the actor pool
        # holding most of them, the read tasks' workers were killed after every block (1 s idle)
        # and started again (imports: ~2 s of a core each). Keeping a few idle workers stops that.
        system = {"num_workers_soft_limit": max(4, 2 * (os.cpu_count() or 1)),
                  # No task events: the GCS keeps ~10 KB of them per task (up to 100,000 tasks), ~0.7 MiB
                  # a minute here, ~350 MiB over 100,000 products, and with no dashboard in this Ray
                  # nothing reads them (docs/benchmarks.md, the job's memory by process).
                  "task_events_report_interval_ms": 0}
        # "local": a new Ray for this job even when `ray start` left one running on this machine
        # (without it ray.init joins that one, which refuses object_store_memory).
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                 _system_config=system, **store)
    return True


def run_batch(cfg: Config, input_path: str, out: str | Path, address: str = "", review: bool = True,
              progress: bool = True, decider: type = Decide, decider_args: tuple = ()) -> BatchResult:
    """The job (module docstring). `decider` is the actor class, built with (cfg, *decider_args):
    `Decide`, the pipeline; the driver's replay benchmark (agpis/batchreplay.py) gives another."""
    import ray
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Every product id of the job, once, on disk (Ledger). WRITTEN_BEFORE: in --out when the run
    # started; TAKEN: sent to the pipeline in this run; WRITTEN: written by this run (a block redone
    # by a restarted actor is not written twice).
    result = BatchResult(out)
    local = "://" not in input_path or input_path.startswith("file://")
    base = str(Path(urllib.parse.urlsplit(input_path).path).resolve().parent) if local else None
    ids, sender, started = None, None, False
    if cfg.batch.malloc_arenas > 0:
        malloc.limit_arenas(cfg.batch.malloc_arenas)  # before Ray's threads (agpis/malloc.py)
    try:
        ids = Ledger(out)
        result.skipped = ids.written_before
        started = _init_ray(address or cfg.batch.address or os.environ.get("RAY_ADDRESS", ""), cfg.batch.object_store_mb)
        t0 = time.perf_counter()
        # Ray Data's own bars count blocks per operator; ours below counts products (products/s, ETA).
        ray.data.DataContext.get_current().enable_progress_bars = False
        total = count_rows(input_path)
        if review:
            from agpis.review import ReviewSender

            sender = ReviewSender(cfg.queue).start()
        writer = Writer(out, cfg.batch.rows_per_file, cfg.batch.flush_s)
        bs = cfg.batch.batch_size
        with tqdm(total=total, initial=min(result.skipped, total), unit="product", desc="agpis batch",
                  disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
            for chunk in catalogue_chunks(input_path, cfg.batch.chunk_products):
                # Products already written (a resumed job) or already taken in this run (a repeat in
                # INPUT) are left out here, so that a chunk of them starts no Ray Data job at all.
                todo = []
                for i, raw in enumerate(chunk.to_pylist()):
                    pid = row_id(raw)
                    state = ids.get(pid)
                    if state == WRITTEN_BEFORE:
                        continue
                    if state is not None:  # a repeat in INPUT
                        result.repeated += 1
                        bar.update(1)
                        continue
                    ids.set(pid, TAKEN)
                    todo.append(i)
                if not todo:
                    continue
                chunk = chunk.take(todo)
                # Blocks of batch_size products: the image reads run as many tasks, and every actor
                # gets work as soon as it is free.
                ds = ray.data.from_arrow([chunk.slice(i, bs) for i in range(0, chunk.num_rows, bs)])
                ds = ds.map_batches(read_images, fn_kwargs={"base": base, "cfg": cfg},
                                    batch_size=bs, batch_format="pyarrow", num_cpus=cfg.batch.read_cpus)
                ds = ds.map_batches(decider, fn_constructor_args=(cfg, *decider_args), batch_size=bs, batch_format="pyarrow",
                                    num_cpus=cfg.batch.actor_cpus,
                                    compute=ray.data.ActorPoolStrategy(size=cfg.batch.actors))
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for row in batch.to_pylist():
                        bar.update(1)
                        if ids.get(row["product_id"]) in (WRITTEN_BEFORE, WRITTEN):
                            result.repeated += 1
                            continue
                        ids.set(row["product_id"], WRITTEN)
                        entry = row.pop("review_entry")
                        if entry and sender is not None:
                            # Queued before written: a written product is always in the queue.
                            info = sender.send_entry(json.loads(entry))
                            row["review_state"], row["review_entry_id"] = info.state, info.entry_id
                        writer.add(row)
                        result.new += 1
                        result.last_s = time.perf_counter() - t0
                        result.first_s = result.first_s or result.last_s
                ids.commit()
            writer.flush()
    finally:
        if ids is not None:
            ids.close()
        if sender is not None:
            sender.close()
        if started:
            ray.shutdown()
    result.wall_s = time.perf_counter() - t0
    result.summary = summarize(out)
    (out / "_summary.json").write_text(json.dumps({**result.summary, "last_run": result.run_stats()}, indent=2))
    return result


def format_summary(result: BatchResult) -> str:
    s = result.summary
    steady = f", {result.steady_per_s:.2f} after start-up" if result.steady_per_s else ""
    lines = [f"{result.out}: {s['products']} products ({result.new} new in {result.wall_s:.1f} s, "
             f"{result.products_per_s:.2f} products/s{steady}; {result.skipped} already written"
             + (f"; {result.repeated} repeated in INPUT, written once" if result.repeated else "") + ")"]
    lines.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["status"].items())))
    for key, title in (("rejected_by_rule", "rejected by rule"), ("terminated_by_reason", "terminated by reason"),
                       ("removed_images_by_rule", "removed images by rule"), ("errors_by_kind", "errors by kind")):
        if s[key]:
            lines.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(s[key].items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def iter_rows(out: Path, columns: Iterable[str] | None = None) -> Iterable[dict]:
    """Every output row (for tests and tools)."""
    for path in output_files(out):
        yield from pq.read_table(path, columns=list(columns) if columns else None).to_pylist()
