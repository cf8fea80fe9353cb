"""A tiny procedural dataset built once per session, shared by the data tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    from agpis.data import builder

    out = tmp_path_factory.mktemp("synth") / "ds"
    cfg = builder.BuildConfig(out=str(out), records=48, size=160, seed=3, workers=1)
    summary = builder.build([("procedural", {"n": 30, "seed": 3})], cfg, progress=False)
    return out, summary
