"""Ray's GCS memory against Ray Data jobs shaped like `agpis batch`'s chunks: ROWS rows in blocks
of 8, a read map (tasks) and 2 trivial actors, CHUNKS times. Prints the GCS's, the raylet's and
this driver's PSS (MiB) as the chunks go. SYSTEM_CONFIG (JSON) goes to ray.init's _system_config,
e.g. to compare with task events off (docs/benchmarks.md, the job's memory by process):

    python scripts/ray_gcs_growth.py 400 40
    python scripts/ray_gcs_growth.py 400 40 '{"task_events_report_interval_ms": 0}'
"""
import json
import logging
import os
import sys
import time

import pyarrow as pa
import ray

from agpis.batchbench import smaps_rollup  # the bench's own /proc reader


def pss_mib(pid: int) -> float:
    return round(smaps_rollup(pid).get("Pss", 0) / 1024, 1)


def read(batch):
    return batch


class Decide:
    def __call__(self, batch):
        return batch


def main(rows: int, chunks: int, system: dict) -> None:
    system.setdefault("num_workers_soft_limit", 4)  # as agpis batch's local Ray
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             object_store_memory=256 * 2**20, _system_config=system)
    ray.data.DataContext.get_current().enable_progress_bars = False
    procs = ray._private.worker._global_node.all_processes  # this Ray's own, not another job's
    gcs, raylet = (procs[kind][0].process.pid for kind in ("gcs_server", "raylet"))
    t0 = time.time()
    print(f"start: gcs {pss_mib(gcs)} MiB, raylet {pss_mib(raylet)} MiB, driver {pss_mib(os.getpid())} MiB",
          flush=True)
    for c in range(chunks):
        table = pa.table({"x": list(range(rows))})
        ds = ray.data.from_arrow([table.slice(i, 8) for i in range(0, rows, 8)])
        ds = ds.map_batches(read, batch_size=8, batch_format="pyarrow", num_cpus=0.2)
        ds = ds.map_batches(Decide, batch_size=8, batch_format="pyarrow", num_cpus=0.8,
                            compute=ray.data.ActorPoolStrategy(size=2))
        n = sum(len(b["x"]) for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
        if (c + 1) % max(1, chunks // 8) == 0 or c + 1 == chunks:
            print(f"chunk {c + 1} ({n} rows, {time.time() - t0:.0f} s): gcs {pss_mib(gcs)} MiB, "
                  f"raylet {pss_mib(raylet)} MiB, driver {pss_mib(os.getpid())} MiB", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
