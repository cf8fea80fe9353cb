"""The driver's replay benchmark: `agpis batch`'s engine over a whole catalogue with decisions replayed.

A 100,000-product catalogue takes ~7 h of the pipeline on 2 cores, longer than a working session
(and the 100,000-product runs of 2026-11-30 were lost with their machine). What grows with a
catalogue is the job's long-lived part: the driver (its Ray Data jobs, one per chunk; the
writer; the review sender), Ray's GCS and raylet, the read workers, the review queue. The pipeline
actors start again with each chunk. So this runs the driver's code as it is, `agpis.batch.run_batch`,
with the real read tasks (every image file read into the object store), the real Ray, the real
review queue and Parquet output, and one thing changed: the actors replay decisions instead of
computing them.

The decisions are real: `make_templates` runs the pipeline (`Decide`, the shipped models) once on
each distinct product of the catalogue (the demo's 16, repeated under new ids) and keeps its WORK
row, review entry included. `Replay` answers a catalogue row with its product's row under the
row's own id (and a review entry carrying that id), so the driver converts, queues and writes rows
of the real size and content at ~20x the pipeline's rate (~170 against ~9 products/s on 2 cores).

    python -m agpis.batchreplay TEMPLATES batch INPUT --out DIR [--no-progress]

is `agpis batch INPUT --out DIR` with the replaying actors (the form `agpis bench batch --replay`
runs and samples; agpis/batchlong.py). Its numbers say nothing of the pipeline's speed or memory.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from agpis import batch
from agpis.config import Config


def _key(row: dict) -> str:
    """A read row's product as the catalogue repeats it: its image files."""
    return "\n".join(row["image_uris"])


def make_templates(cfg: Config, catalogue: Path, out: Path, distinct: int) -> int:
    """The pipeline's WORK rows for the first `distinct` rows of `catalogue` (its distinct products)
    -> `out` (Parquet, with each row's `key`). Loads the models in this process. -> rows written."""
    first = next(batch.catalogue_chunks(str(catalogue), distinct))
    read = batch.read_images(first, str(catalogue.resolve().parent), cfg)
    rows = read.to_pylist()
    if any(r["error"] for r in rows):
        raise RuntimeError(f"{catalogue}: its first rows do not read: {[r['error'] for r in rows if r['error']]}")
    decided = batch.Decide(cfg)(read).to_pylist()
    table = pa.Table.from_pylist(decided, schema=batch.WORK_SCHEMA)
    table = table.append_column("key", pa.array([_key(r) for r in rows], pa.string()))
    pq.write_table(table, out)
    return table.num_rows


class Replay:
    """Ray Data actor in place of `batch.Decide`: a read row -> its product's decided row under the
    row's product id. A read error stays the row's ERROR row, as in Decide; a product without a
    template (not one of the catalogue's distinct products) is an ERROR row saying so."""

    def __init__(self, cfg: Config, templates: str):
        import ray

        rows = pq.read_table(templates).to_pylist()
        self.templates = {r.pop("key"): r for r in rows}
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def __call__(self, table: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.replay(r) for r in table.to_pylist()], schema=batch.WORK_SCHEMA)

    def replay(self, row: dict) -> dict:
        pid = row["product_id"]
        if row["error"]:
            return batch.error_row(pid, row["error"], self.node_id)
        tpl = self.templates.get(_key(row))
        if tpl is None:
            return batch.error_row(pid, "Replay: no template for this product's images", self.node_id)
        # a shallow copy: only top-level values change, and the table is serialised before the driver sees it
        out = {**tpl, "product_id": pid, "node_id": self.node_id}
        if out["review_entry"]:
            entry = json.loads(out["review_entry"])
            entry["product_id"] = entry["payload"]["product_id"] = pid
            out["review_entry"] = json.dumps(entry, ensure_ascii=False)
        return out


def main(argv: list[str] | None = None) -> int:
    from agpis.cli import add_config_flags, load_config

    p = argparse.ArgumentParser(prog="python -m agpis.batchreplay", description=__doc__.split("\n")[0])
    p.add_argument("templates", help="Parquet of decided rows (make_templates)")
    p.add_argument("command", choices=["batch"])
    add_config_flags(p)
    p.add_argument("input")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = load_config(args)
    result = batch.run_batch(cfg, args.input, args.out, progress=not args.no_progress,
                             decider=Replay, decider_args=(args.templates,))
    print("REPLAYED DECISIONS (the driver's benchmark, not the pipeline):")
    print(batch.format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
