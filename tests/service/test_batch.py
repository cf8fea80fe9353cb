"""`agpis batch` on the real engine: local Ray in-process, a killed-and-resumed run, a two-node cluster
simulated on this machine (ray.cluster_utils.Cluster), and the real review queue (embedded Valkey)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from agpis import batch
from agpis.batchbench import descendants, write_catalogue
from agpis.config import Config
from agpis.version import code_version
from tests.conftest import ROOT

N_GOOD = 20


@pytest.fixture(scope="module")
def products():
    from agpis.data.synth import demo_products

    return demo_products(8, seed=1, size=800)


def _catalogue(directory: Path, products, n: int = N_GOOD) -> tuple[Path, dict[str, str]]:
    """n good products plus bad rows; -> (JSONL path, {product id: what is wrong} for the bad ones)."""
    path = write_catalogue(directory, products, n)
    (directory / "not-an-image.jpg").write_bytes(b"this is text, not a JPEG")
    malformed = '{"product_id": "broken", "title": "no closing brace"'
    bad_lines = [
        malformed,
        json.dumps({"product_id": "missing-file", "title": "Mug", "images": ["images/000/c0.jpg", "nowhere/x.jpg"]}),
        json.dumps({"product_id": "not-an-image", "title": "Mug", "images": ["images/000/c1.jpg", "not-an-image.jpg"]}),
        json.dumps({"product_id": "no-title", "images": ["images/000/c0.jpg"]}),
        json.dumps({"product_id": "p-000003", "title": "the same product id again", "images": ["images/000/c0.jpg"]}),
    ]
    with open(path, "a") as f:
        f.write("\n".join(bad_lines) + "\n")
    bad = {batch._stable_id(malformed): "malformed JSON line", "missing-file": "cannot read",
           "not-an-image": "not a readable image", "no-title": "title is missing"}
    return path, bad


def _cfg(queue_cfg, **batch_settings) -> Config:
    cfg = Config()
    cfg.queue = queue_cfg
    # every decided product is QUEUED (the queue path runs for all of them), except those that
    # stage 1's decisive checks reject whatever the threshold (a title naming another colour)
    cfg.pipeline.threshold = 0.0
    for k, v in batch_settings.items():
        setattr(cfg.batch, k, v)
    return cfg


def _rows(out: Path) -> list[dict]:
    return list(batch.iter_rows(out))


def _queued_products(rclient, stream: str) -> Counter:
    return Counter(f[b"product_id"].decode() for _, f in rclient.xrange(stream))


@pytest.fixture
def local_ray():
    """Ray in-process, kept across the two runs of a test (run_batch leaves a Ray it did not start)."""
    import ray

    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_local_run_decides_every_product_once_with_errors_as_rows_and_queues_each_once(
        tmp_path, products, queue_cfg, rclient, local_ray):
    path, bad = _catalogue(tmp_path / "cat", products)
    out = tmp_path / "out"
    # chunks of 8 rows: four Ray Data jobs, and the repeated p-000003 comes in a later one
    cfg = _cfg(queue_cfg, rows_per_file=7, flush_s=3600, chunk_products=8)
    result = batch.run_batch(cfg, str(path), out, progress=False)

    rows = _rows(out)
    ids = Counter(r["product_id"] for r in rows)
    assert max(ids.values()) == 1, "a product written twice"
    assert set(ids) == {f"p-{i:06d}" for i in range(N_GOOD)} | set(bad)
    assert result.new == len(rows) and result.repeated == 1  # p-000003 appears twice in INPUT
    assert len(batch.output_files(out)) == -(-len(rows) // 7)

    by_id = {r["product_id"]: r for r in rows}
    for pid, what in bad.items():
        assert by_id[pid]["status"] == batch.ERROR and what in by_id[pid]["error"], by_id[pid]
    good = [by_id[f"p-{i:06d}"] for i in range(N_GOOD)]
    assert {r["status"] for r in good} <= {"QUEUED", "TERMINATED", "REJECTED"} and any(r["status"] == "QUEUED" for r in good)
    assert all(r["predicted_rule"] == "title_mismatch" for r in good if r["status"] == "REJECTED")
    for r in good:
        assert r["error"] is None and dict(r["model_versions"])["model"]
        assert dict(r["model_versions"])["code"] == code_version()  # the actors report the driver's code
        assert "stage1" in dict(r["timings_ms"]) and "fetch" in dict(r["timings_ms"])
    queued = [r for r in good if r["status"] == "QUEUED"]
    assert all(r["review_state"] == "ENQUEUED" and r["review_entry_id"] for r in queued)
    assert _queued_products(rclient, queue_cfg.stream) == Counter(r["product_id"] for r in queued)

    # The same Pipeline as the service: the batch's decisions are those of Pipeline.generate.
    from agpis.pipeline import Pipeline

    pipeline = Pipeline.load(config=cfg)
    for r in good[:3]:
        item = json.loads(path.read_text().splitlines()[int(r["product_id"][2:])])
        d = pipeline.generate(item["title"], [path.parent / p for p in item["images"]], product_id=r["product_id"],
                              explain=False)
        assert (d.status, d.sequence) == (r["status"], r["sequence"])
        assert d.p_qualified == pytest.approx(r["p_qualified"], abs=1e-3)

    # A second run with the same --out: nothing to do, nothing queued again.
    again = batch.run_batch(cfg, str(path), out, progress=False)
    assert again.new == 0 and again.skipped == len(rows)
    assert len(_rows(out)) == len(rows)
    assert again.summary["status"] == result.summary["status"] == dict(Counter(r["status"] for r in rows))
    assert _queued_products(rclient, queue_cfg.stream) == Counter(r["product_id"] for r in queued)


@pytest.mark.slow
def test_a_killed_run_resumed_writes_and_queues_every_product_exactly_once(tmp_path, products, queue_cfg, rclient):
    path, bad = _catalogue(tmp_path / "cat", products)
    out = tmp_path / "out"
    env = {**os.environ, "REDIS_URL": queue_cfg.redis_url, "AGPIS_QUEUE__STREAM": queue_cfg.stream,
           "AGPIS_QUEUE__OUTBOX_DIR": queue_cfg.outbox_dir, "AGPIS_PIPELINE__THRESHOLD": "0.0",
           "AGPIS_BATCH__ROWS_PER_FILE": "2", "AGPIS_BATCH__BATCH_SIZE": "2"}
    cmd = [sys.executable, "-m", "agpis.cli", "batch", str(path), "--out", str(out), "--no-progress"]
    # Its own session: the kill takes the job and every Ray process it started, like a lost machine.
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not batch.output_files(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the job ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _rows(out)
    total = N_GOOD + len(bad)
    assert 0 < len(before) < total, "the kill did not land mid-run"
    assert len(list(out.glob(".ids-*.sqlite"))) == 1  # the killed run's ledger, left behind

    result = batch.run_batch(_cfg(queue_cfg, rows_per_file=2, batch_size=2), str(path), out, progress=False)
    rows = _rows(out)
    ids = Counter(r["product_id"] for r in rows)
    assert len(ids) == total and max(ids.values()) == 1
    assert result.skipped == len(before) and result.new == total - len(before)
    queued = Counter(r["product_id"] for r in rows if r["status"] == "QUEUED")
    assert queued and _queued_products(rclient, queue_cfg.stream) == queued  # none twice, none missing
    assert not list(out.glob(".part-*")) and not list(out.glob(".ids-*"))  # the resumed run removed both


def test_the_ledger_starts_from_the_output_files_and_keeps_states_on_disk(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    row = {k: None for k in batch.OUTPUT_SCHEMA.names}
    for name, ids in (("part-1.parquet", ["a", "b"]), ("part-2.parquet", ["c"])):
        pq.write_table(pa.Table.from_pylist([{**row, "product_id": i} for i in ids], schema=batch.OUTPUT_SCHEMA), out / name)
    (out / ".part-3.parquet.tmp").write_bytes(b"half a file")
    (out / ".ids-dead.sqlite").write_bytes(b"a killed run's ledger")
    ledger = batch.Ledger(out)
    try:
        assert ledger.written_before == 3 and not list(out.glob(".part-*")) and ledger.path.exists()
        assert [ledger.get(i) for i in "abcd"] == [batch.WRITTEN_BEFORE] * 3 + [None]
        ledger.set("d", batch.TAKEN)
        ledger.commit()
        ledger.set("d", batch.WRITTEN)
        assert ledger.get("d") == batch.WRITTEN
    finally:
        ledger.close()
    assert sorted(p.name for p in out.iterdir()) == ["part-1.parquet", "part-2.parquet"]


def test_a_ledger_that_cannot_be_made_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import sqlite3

    def refuse(*_, **__):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(batch.sqlite3, "connect", refuse)
    with pytest.raises(batch.LedgerError, match="disk I/O error.*filesystem SQLite can lock"):
        batch.Ledger(tmp_path)
    assert not list(tmp_path.iterdir())


def _actor_pids() -> set[int]:
    """This test process's Decide actors: Ray titles an actor's process "ray::MapWorker(MapBatches(Decide))"
    (the state API would need the dashboard). Only our descendants: another test run may share the machine."""
    found = set()
    for pid in descendants(os.getpid()):
        try:
            if b"MapBatches(Decide)" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)  # a restart that never ends fails here instead of hanging the suite
def test_an_actor_killed_mid_run_is_replaced_and_its_products_are_written_and_queued_once(
        tmp_path, products, queue_cfg, rclient, local_ray):
    import threading

    jsonl = write_catalogue(tmp_path / "cat", products, N_GOOD)
    # This one reads CSV (Ray Data's read_csv), the images as a JSON list in a column.
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for r in rows:
        r["images"] = json.dumps(r["images"])
    path = tmp_path / "cat" / "catalogue.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    out = tmp_path / "out"
    killed, replacements = [], set()

    def kill_one_actor_after_the_first_file_then_watch():
        deadline = time.monotonic() + 240
        while not batch.output_files(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        before = _actor_pids()
        if before:
            killed.append(min(before))
            os.kill(killed[0], signal.SIGKILL)  # mid-run: its block is in flight (batch_size 2, 20 products)
        while killed and time.monotonic() < deadline and not replacements:
            replacements.update(_actor_pids() - before)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_actor_after_the_first_file_then_watch)
    killer.start()
    result = batch.run_batch(_cfg(queue_cfg, rows_per_file=2, batch_size=2, flush_s=3600), str(path), out,
                             progress=False)
    killer.join()
    assert killed, "no actor was killed"
    assert replacements, "Ray Data did not start an actor in place of the killed one"
    rows = _rows(out)
    ids = Counter(r["product_id"] for r in rows)
    assert len(ids) == N_GOOD == result.new and max(ids.values()) == 1
    assert all(r["status"] != batch.ERROR for r in rows)
    queued = Counter(r["product_id"] for r in rows if r["status"] == "QUEUED")
    assert queued and _queued_products(rclient, queue_cfg.stream) == queued


@pytest.mark.slow
def test_two_node_cluster_spreads_the_actors_over_both_nodes(tmp_path, products, queue_cfg):
    import ray
    from ray.cluster_utils import Cluster

    path, _ = _catalogue(tmp_path / "cat", products, n=12)
    # The same catalogue as Parquet (images as a list column), read by Ray Data's read_parquet.
    rows = [json.loads(line) for line in path.read_text().splitlines()[:12]]
    for r in rows:
        r["images"] = [str(path.parent / p) for p in r["images"]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "cat.parquet")

    # Two nodes of 1 CPU: one actor of 0.8 CPU fits on each, never two on one.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        cfg = _cfg(queue_cfg, actors=2, actor_cpus=0.8, read_cpus=0.2, batch_size=2)
        result = batch.run_batch(cfg, str(tmp_path / "cat.parquet"), tmp_path / "out", progress=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
    out_rows = _rows(tmp_path / "out")
    assert result.new == len(out_rows) == 12 and all(r["status"] != batch.ERROR for r in out_rows)
    assert {r["node_id"] for r in out_rows} == nodes


@pytest.mark.slow
def test_the_actor_runs_one_backbone_forward_for_a_block_and_decides_as_product_by_product(tmp_path, products):
    """Called directly (no Ray): a block of products with a bad one among them, decided with the
    backbone shared across the block, then one forward per product, then with the placeholder
    stage 1 (no batched path): the same decisions where the stage 1 is the same, errors as rows."""
    from stage1.placeholder import PlaceholderStage1

    path, _ = _catalogue(tmp_path / "cat", products, n=5)
    lines = path.read_text().splitlines()
    raw = pa.Table.from_pylist([{"text": line} for line in lines[:5] + [lines[7]]])  # 7: not-an-image
    cfg = _cfg(None)  # no review queue: the actor only decides; the driver queues
    block = batch.read_images(raw, str(path.parent), cfg)
    actor = batch.Decide(cfg)

    shared = actor(block).to_pylist()
    actor.cfg.batch.backbone_across_products = False
    alone = actor(block).to_pylist()
    key = [(r["product_id"], r["status"], r["sequence"], r["p_qualified"], r["error"]) for r in alone]
    assert [(r["product_id"], r["status"], r["sequence"], r["p_qualified"], r["error"]) for r in shared] == key
    assert [r["status"] for r in shared].count(batch.ERROR) == 1 and "not a readable image" in shared[-1]["error"]
    # the shared forward's share is the product's "stage1.backbone"; only a product run alone resizes its images
    assert all("stage1.resize" not in dict(r["timings_ms"]) and dict(r["timings_ms"])["stage1.backbone"] > 0
               for r in shared[:5])
    assert all("stage1.resize" in dict(r["timings_ms"]) for r in alone[:5])

    actor.cfg.batch.backbone_across_products = True
    actor.pipeline.stage1 = PlaceholderStage1()
    placeholder = actor(block).to_pylist()
    assert [r["status"] for r in placeholder].count(batch.ERROR) == 1
    assert all("PLACEHOLDER" in dict(r["model_versions"])["stage1"] for r in placeholder[:5])


def test_rows_are_parsed_from_jsonl_csv_and_parquet_forms():
    assert batch.parse_row({"text": '{"product_id": 7, "title": "Mug", "images": ["a.jpg"]}'}) == ("7", "Mug", "", ["a.jpg"])
    assert batch.parse_row({"product_id": "x", "title": "Mug", "category": "kitchen", "images": "a.jpg|s3://b/c.jpg"}) \
        == ("x", "Mug", "kitchen", ["a.jpg", "s3://b/c.jpg"])
    assert batch.parse_row({"product_id": "x", "title": "Mug", "images": '["a.jpg", "b.png"]'})[3] == ["a.jpg", "b.png"]
    with pytest.raises(batch.BadRow, match="images must be"):
        batch.parse_row({"product_id": "x", "title": "Mug", "images": []})
    with pytest.raises(batch.BadRow, match="not a JSON list") as e:
        batch.parse_row({"product_id": "x", "title": "Mug", "images": "[oops"})
    assert e.value.product_id == "x"
    with pytest.raises(batch.BadRow) as e:  # no product id: a made-up one, the same in every run
        batch.parse_row({"text": "[1, 2]"})
    assert e.value.product_id == batch._stable_id([1, 2]) != batch._stable_id([1, 3])


def test_the_catalogue_is_read_in_chunks_from_jsonl_csv_parquet_and_a_directory(tmp_path):
    import pyarrow.parquet as pq

    items = [{"product_id": f"p{i}", "title": f"Mug {i}", "images": [f"{i}a.jpg", f"{i}b.jpg"]} for i in range(7)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(x) for x in items[:5]) + "\n\n" + "{broken\n")
    with open(tmp_path / "b.csv", "w") as f:
        f.write("product_id,title,images\n" + "".join(f'{x["product_id"]},"{x["title"]}",{"|".join(x["images"])}\n'
                                                       for x in items[5:]))
    pq.write_table(pa.Table.from_pylist(items[:3]), tmp_path / "c.parquet")

    jsonl = list(batch.catalogue_chunks(str(tmp_path / "a.jsonl"), 2))
    assert [t.num_rows for t in jsonl] == [2, 2, 2]  # the blank line skipped, the broken one kept
    assert [batch.row_id(r) for t in jsonl for r in t.to_pylist()][:5] == [f"p{i}" for i in range(5)]
    assert batch.row_id(jsonl[-1].to_pylist()[-1]).startswith("row-")  # written as an ERROR row
    csv_rows = [r for t in batch.catalogue_chunks(str(tmp_path / "b.csv"), 10) for r in t.to_pylist()]
    assert [batch.parse_row(r) for r in csv_rows] == [(x["product_id"], x["title"], "", x["images"]) for x in items[5:]]
    parquet = [r for t in batch.catalogue_chunks(str(tmp_path / "c.parquet"), 2) for r in t.to_pylist()]
    assert [batch.parse_row(r)[0] for r in parquet] == ["p0", "p1", "p2"]
    # a directory: its catalogue files in name order, the rows counted as they will be read
    assert [batch.row_id(r) for t in batch.catalogue_chunks(str(tmp_path), 4) for r in t.to_pylist()][-5:] \
        == ["p5", "p6", "p0", "p1", "p2"]
    assert batch.count_rows(str(tmp_path)) == 6 + 2 + 3
    with pytest.raises(ValueError, match="must be .jsonl"):
        batch.catalogue_files(str(tmp_path / "x.txt"))
    with pytest.raises(FileNotFoundError):
        batch.catalogue_files(str(tmp_path / "missing.jsonl"))


def test_fetch_refuses_hosts_not_allowed_and_reports_missing_filesystems(tmp_path):
    from agpis.config import ImagesConfig
    from agpis.images import ImageError

    cfg = ImagesConfig()
    with pytest.raises(ImageError, match="allowed_hosts"):
        batch.fetch_image("a", "http://169.254.169.254/latest", None, cfg)
    with pytest.raises(ImageError, match="cannot read|no filesystem"):
        batch.fetch_image("a", "nosuchscheme://bucket/a.jpg", None, cfg)
    with pytest.raises(ImageError, match="needs a local INPUT"):
        batch.fetch_image("a", "relative/a.jpg", None, cfg)
    (tmp_path / "big.jpg").write_bytes(b"x" * 100)
    with pytest.raises(ImageError, match="larger than"):
        batch.fetch_image("a", "big.jpg", tmp_path, ImagesConfig(max_bytes=10))
    assert batch.fetch_image("a", "big.jpg", tmp_path, ImagesConfig())[1] == (tmp_path / "big.jpg").as_uri()


@pytest.mark.slow
def test_replayed_decisions_run_the_real_driver_and_queue_each_product_once(
        tmp_path, products, queue_cfg, rclient, local_ray):
    """The driver's replay benchmark (agpis/batchreplay.py): the pipeline decides the distinct
    products once; the job's actors answer each catalogue row with its product's decision under the
    row's own id, through the real driver, Ray Data, queue and output."""
    from agpis.batchreplay import Replay, make_templates

    path = write_catalogue(tmp_path / "cat", products[:2], 12, prefix="big")
    with open(path, "a") as f:
        f.write(json.dumps({"product_id": "missing-file", "title": "Mug", "images": ["nowhere/x.jpg"]}) + "\n")
    cfg = _cfg(queue_cfg, chunk_products=5)
    templates = tmp_path / "templates.parquet"
    assert make_templates(cfg, path, templates, 2) == 2
    decided = {r["key"]: r for r in pq.read_table(templates).to_pylist()}

    out = tmp_path / "out"
    result = batch.run_batch(cfg, str(path), out, progress=False, decider=Replay, decider_args=(str(templates),))
    rows = {r["product_id"]: r for r in _rows(out)}
    assert result.new == len(rows) == 13
    assert rows["missing-file"]["status"] == batch.ERROR and "cannot read" in rows["missing-file"]["error"]
    for i in range(12):  # row i is product i % 2, decided once by the pipeline
        tpl = list(decided.values())[i % 2]
        r = rows[f"big-{i:06d}"]
        assert (r["status"], r["sequence"], r["p_qualified"]) == (tpl["status"], tpl["sequence"], tpl["p_qualified"])
    queued = Counter(p for p, r in rows.items() if r["status"] == "QUEUED")
    assert queued and _queued_products(rclient, queue_cfg.stream) == queued
