"""Stage 2 fixtures: a tiny procedural AGPIS-data set (no ../shared needed) and tiny MUIsC runs."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """48 drawn listings' sequences (4 per listing) at 160 px, train/val/test splits."""
    from agpis.data import builder

    out = tmp_path_factory.mktemp("s2data") / "ds"
    cfg = builder.BuildConfig(out=str(out), records=96, size=160, seed=5, workers=1)
    builder.build([("procedural", {"n": 40, "seed": 5})], cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("s2cache")


def tiny_train_config(data, out, cache_dir, **kw):
    from stage2.trainconfig import TrainConfig

    base = dict(data=str(data), out=str(out), cache_dir=str(cache_dir), epochs=2, batch_size=8, d_model=32,
                n_head=2, vocab_size=300, max_title=16, max_feedback=16, warmup_steps=2, checkpoint_every=2,
                progress=False, threads=1, lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, cache_dir, tmp_path_factory):
    """A tiny full MUIsC trained for 2 epochs on the tiny data: its best/ checkpoint."""
    from stage2.train import train

    out = tmp_path_factory.mktemp("s2run") / "muisc"
    return train(tiny_train_config(tiny_data, out, cache_dir))
