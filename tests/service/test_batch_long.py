"""The long-catalogue report (`agpis bench batch --work-dir`, agpis/batchlong.py): rows per run from
the output files' names, and the exactly-once check against the catalogue and a real review queue
(the embedded Valkey of the work directory, stopped and started again as between sessions)."""
from __future__ import annotations

import dataclasses
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq

from agpis.batchlong import report
from agpis.config import Config
from agpis.queue import ReviewQueue
from agpis.redisconn import RedisHandle


def _part(out, t: float, rows: list[tuple[str, str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{"product_id": p, "status": s} for p, s in rows])
    pq.write_table(table, out / f"part-{int(t * 1e9)}-abcdef12.parquet")


def test_report_counts_each_run_and_checks_every_product_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "catalogue.json").write_text(json.dumps({"products": 6}))
    t0 = time.time() - 3600
    runs = [{"run": 0, "start": t0, "nice": 19}, {"run": 1, "start": t0 + 600, "nice": 19},
            {"run": 1, "end": t0 + 1200}]
    (work / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    samples = [{"run": k, "t": t, "wall": t0 + 600 * k + t, "footprint": 1000.0 + t, "queue_pss": 5.0,
                "driver_own": 150.0} for k in (0, 1) for t in (15.0, 30.0, 45.0, 60.0)]
    # run 1 after its last file: Ray and the queue stopped, the output summed up
    samples.append({"run": 1, "t": 90.0, "wall": t0 + 690, "footprint": 500.0, "queue_pss": 0.0, "driver_own": 150.0})
    (work / "memory.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"cut by a kill')
    out = work / "out"
    _part(out, t0 + 30, [("big-000000", "QUEUED"), ("big-000001", "REJECTED")])  # run 0, then killed
    _part(out, t0 + 630, [("big-000002", "QUEUED"), ("big-000003", "QUEUED")])  # run 1
    _part(out, t0 + 660, [("big-000003", "QUEUED"), ("big-000004", "TERMINATED")])  # big-000003 again

    cfg = Config()
    qcfg = dataclasses.replace(cfg.queue, data_dir=str(work / "redis"), redis_url=None)
    with RedisHandle(qcfg) as h:  # stopped on leaving, as a killed session's queue would be
        q = ReviewQueue(h.client, qcfg)
        for pid in ("big-000000", "big-000002", "big-000003", "big-000005"):  # 000005: queued, row not written
            q.enqueue(pid, "seq", {"title": pid})
        assert q.enqueue("big-000002", "seq", {"title": "again"})[0] is False  # the producer's own dedup

    text = report(work, cfg)
    runs_table = [line for line in text.splitlines() if "| killed " in line or "| done " in line]
    assert len(runs_table) == 2
    assert runs_table[0].startswith("| 0 |") and "| killed " in runs_table[0] and "| 2 |" in runs_table[0]
    assert runs_table[1].startswith("| 1 |") and "| done " in runs_table[1] and "| 4 |" in runs_table[1]
    # footprint, then without the queue's 5 MiB: first / median / max / last of its samples
    assert "| 1015 / 1045 / 1060 / 1060 | 1010 / 1040 / 1055 / 1055 |" in runs_table[0]
    # run 1 ended by itself: its samples after its last file (t0 + 660: the job summing up) left out
    assert "| 1015 / 1045 / 1060 / 1060 | 1010 / 1040 / 1055 / 1055 |" in runs_table[1]
    assert ("6 output rows, 5 distinct products of the catalogue's 6 (1 written twice, 1 not yet written, "
            "0 not in the catalogue)") in text
    assert "4 entries for 3 QUEUED rows; products with more than one entry: 0; QUEUED rows without an " \
           "entry: 0; entries without a QUEUED row: 1" in text
    assert "Not finished: 1 of 6 products still to do" in text
    # the driver by products written: the first sample at or after each tenth (here each product)
    table = text.split("| products written | run |")[1].splitlines()[2:6]
    assert [row.split(" | ")[:2] for row in table] == [["| 0", "0"], ["| 2", "0"], ["| 4", "1"], ["| 6", "1"]]
    assert all(" | 150 | " in row for row in table)


def test_a_work_dir_keeps_its_mode(tmp_path):
    """A work directory of the pipeline's catalogue is not reused for replayed decisions, nor the reverse."""
    import pytest

    from agpis.batchlong import prepare

    (tmp_path / "catalogue.json").write_text(json.dumps({"products": 6}))
    with pytest.raises(SystemExit, match="not 6 \\(replay\\)"):
        prepare(tmp_path, 6, replay=True)
    assert prepare(tmp_path, 6).name == "catalogue.jsonl"
