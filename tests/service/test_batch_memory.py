"""`agpis batch`'s memory bound (batch.object_store_mb reaches Ray in local mode, never a cluster) and the
bench's memory sampler (PSS/USS beside RSS, the object store counted once), on the real Ray."""
from __future__ import annotations

import os
import time

import pytest

from agpis import batch
from agpis.batchbench import memory_trend, slope, tree_memory


@pytest.mark.slow
def test_local_ray_gets_the_capped_object_store_and_the_sampler_counts_its_pages_once():
    import numpy as np
    import ray

    assert not ray.is_initialized()
    assert batch._init_ray("", object_store_mb=100)
    try:
        assert not batch._init_ray("", object_store_mb=100)  # already up: left as it is
        assert ray.cluster_resources()["object_store_memory"] == 100 * 2**20
        # no task events kept by the GCS (they grew it ~0.7 MiB a minute on a long catalogue)
        assert ray._private.worker._global_node._ray_params._system_config["task_events_report_interval_ms"] == 0
        ref = ray.put(np.ones(20 * 2**20 // 8))  # 20 MiB in the store, touched once
        deadline = time.monotonic() + 30
        while True:  # the raylet reports the store's use every ~10 s
            m = tree_memory(os.getpid())
            if m["store_used"] is not None and m["store_used"] >= 20 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert m["store_capacity"] == pytest.approx(100)
        assert 20 <= m["store_used"] <= 25
        assert 20 <= m["store_resident"] <= 30  # the pages of the /dev/shm file, counted once
        assert m["uss"] <= m["pss"] <= m["rss"] and m["driver_pss"] > 0
        # every page once: the store's pages no process maps added, those mapped not counted twice
        assert m["pss"] - 1 <= m["footprint"] <= m["pss"] + m["store_resident"]
        del ref
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_the_cap_is_not_passed_to_an_existing_cluster(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    # The cluster's own store (80 MiB); ray.init refuses object_store_memory when connecting.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 80 * 2**20})
    try:
        assert batch._init_ray(cluster.address, object_store_mb=100)
        assert ray.cluster_resources()["object_store_memory"] == 80 * 2**20
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_trend_is_a_least_squares_slope_per_half_after_warm_up():
    # 2 s samples over 10 minutes: a warm-up, then +10 MiB/min for 4 minutes, then flat.
    samples = []
    for i in range(300):
        t = 2.0 * i
        v = 100 + 5 * t if t < 60 else (400 + 10 * (t - 60) / 60 if t < 300 else 440)
        samples.append({"t": t, "rss": 2 * v, "pss": v, "uss": v, "driver_pss": 50.0,
                        "store_resident": v / 2, "store_used": None})
    assert slope([{"t": 30.0 * i, "x": 3 + 7 * i / 2} for i in range(5)], "x") == pytest.approx(7)
    trend = memory_trend(samples, 60, 540)
    assert trend["first"]["pss"]["slope"] == pytest.approx(10, abs=0.01)
    assert trend["first"]["rss"]["slope"] == pytest.approx(20, abs=0.01)
    assert trend["second"]["pss"]["slope"] == pytest.approx(0, abs=1e-9)
    assert trend["second"]["driver_pss"]["slope"] == pytest.approx(0, abs=1e-9)
    assert trend["first"]["store_used"]["slope"] != trend["first"]["store_used"]["slope"]  # nan: not sampled
    assert trend["first"]["pss"]["first"] == 400 and trend["second"]["pss"]["last"] == 440
