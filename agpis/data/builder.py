"""`agpis data build` / `agpis data synth`: listings rendered in parallel into an AGPIS-data
directory.

    var/datasets/<name>/
        train.jsonl, val.jsonl, test.jsonl   records (split by product group, never shared)
        images/<product_id>/<k>.jpg          candidate images, referenced by relative path
        CARD.md                              the dataset card: sources, licences, mix, counts
        build.json                           the exact build settings and the measured speed

Every listing is a pure function of (seed, listing index, sources), so the output is the same
for any number of worker processes; workers only change how fast it comes.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agpis.data import format as fmt
from agpis.data import listing as L
from agpis.data import render, splits

CARD_VERSION = "agpis-data-1"


@dataclass
class BuildConfig:
    out: str  # dataset directory
    records: int = 2000  # sequences (records) to write
    size: int = 512  # candidate images, longest side in px (low-resolution violations are smaller)
    seed: int = 0
    records_per_product: int = 4  # sequences sharing one listing's candidate set
    mix: dict[str, float] = field(default_factory=lambda: dict(L.DEFAULT_MIX))
    workers: int = 2
    quality: int = 90  # JPEG quality of the candidates
    heldout_fraction: float = 0.5  # share of val/test products drawn with held-out styles
    extra_problems: bool = True  # an unused problem image among the candidates, half the time
    name: str = ""


# --- sources, rebuilt in each worker from a picklable spec ---------------------------------------

def make_sources(spec: list[tuple[str, dict]]):
    from agpis.data import catalogue_source, real, synth

    kinds = {"procedural": synth.ProceduralSource, "grocery": real.GrocerySource, "abo": real.AboSource,
             "jd": real.JdSource, "magento": catalogue_source.CatalogueSource}
    return [kinds[name](**kwargs) for name, kwargs in spec]


_W: dict = {}


def _init_worker(spec, cfg_dict):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)  # the pool is the parallelism
    except Exception:
        pass
    sources = make_sources(spec)
    _W["cfg"] = BuildConfig(**cfg_dict)
    _W["by_group"] = {g: s for s in sources for g in s.groups()}
    _W["cache"] = {}


def _product(group: str):
    cache = _W["cache"]
    if group not in cache:
        if len(cache) > 64:
            cache.pop(next(iter(cache)))
        cache[group] = _W["by_group"][group].product(group)
    return cache[group]


def _render(task) -> tuple[list[dict], int, int]:
    """One listing: render, write its JPEGs, return its records (with URIs), images, bytes."""
    i, product_id, group, others, labels, split, style_split = task
    cfg: BuildConfig = _W["cfg"]
    source = _W["by_group"][group]
    if hasattr(source, "listing"):  # a real catalogue makes its own listings from real views
        lst = source.listing(group, product_id, labels, cfg.size, style_split, seed=hash_seed(cfg.seed, i),
                             extra_problems=cfg.extra_problems)
    else:
        lst = L.make_listing(_product(group), product_id, labels, cfg.size, style_split,
                             seed=hash_seed(cfg.seed, i), others=[_product(g) for g in others],
                             extra_problems=cfg.extra_problems)
    out = Path(cfg.out)
    rel = Path("images") / product_id
    (out / rel).mkdir(parents=True, exist_ok=True)
    uris, nbytes = [], 0
    for k, img in enumerate(lst.images):
        data = render.jpeg(img, cfg.quality)
        (out / rel / f"{k}.jpg").write_bytes(data)
        nbytes += len(data)
        uris.append(f"{rel.as_posix()}/{k}.jpg")
    # Synthetic "review" times spread over a quarter, deterministic per listing.
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=int(splits.unit_hash(cfg.seed, i) * 90 * 86400))
    recs = []
    for j, r in enumerate(lst.records):
        rec = {"product_id": product_id, "title": r["title"], "category": lst.category, "candidates": uris,
               "sequence": r["sequence"], "label": r["label"], "feedback": r["feedback"], "source": "synthetic",
               "reviewed_at": (t0 + timedelta(minutes=7 * j)).isoformat(), "model_version": "",
               "split": split, "style_split": style_split, "group": group}
        if "violation" in r:
            rec["violation"] = r["violation"]
        rec["candidate_meta"] = lst.metas
        recs.append(rec)
    return recs, len(lst.images), nbytes


def hash_seed(seed: int, i: int) -> int:
    return int(splits.unit_hash("listing", seed, i) * 2**62)


# --- planning ----------------------------------------------------------------------------------

def plan(sources, cfg: BuildConfig, prefix: str) -> list[tuple]:
    """Which group, labels, split and style split each listing gets (cheap; no images)."""
    strata = {}
    weight = {}
    fixed: dict[str, str] = {}  # sources with splits of their own (a catalogue's style splits)
    for s in sources:
        for g, stratum in s.groups().items():
            strata[g] = stratum
            weight[g] = getattr(s, "weight", 1.0)
        if hasattr(s, "splits"):
            fixed.update(s.splits())
    # Catalogue sources pick their own other products; the rest borrow products of one another.
    lends = {g for s in sources if not hasattr(s, "listing") for g in s.groups()}
    split_of = splits.assign_splits({g: st for g, st in strata.items() if g not in fixed}) | fixed
    by_split: dict[str, list[str]] = {}
    for g in sorted(strata):
        by_split.setdefault(split_of[g], []).append(g)
    n_listings = math.ceil(cfg.records / cfg.records_per_product)
    rng = random.Random(f"plan-{cfg.seed}")
    # Groups in a seeded order, each repeated in proportion to its source weight, cycled.
    groups = sorted(strata)
    rng.shuffle(groups)
    cycle = [g for g in groups for _ in range(max(1, round(weight[g] * 4)))]
    rng.shuffle(cycle)
    tasks = []
    left = cfg.records
    for i in range(n_listings):
        g = cycle[i % len(cycle)]
        split = split_of[g]
        n = min(cfg.records_per_product, left)
        left -= n
        labels = [L.sample_label(rng, cfg.mix) for _ in range(n)]
        pool = [o for o in by_split[split] if o != g and o in lends]
        same = [o for o in pool if strata[o] == strata[g]]
        others = sorted(set(rng.sample(same, min(2, len(same))) + rng.sample(pool, min(2, len(pool)))))
        pid = f"{prefix}-{i:06d}"
        tasks.append((i, pid, g, others, labels, split, splits.style_split_for(pid, split, cfg.heldout_fraction)))
    return tasks


def parse_mix(text: str | None) -> dict[str, float]:
    """"qualified=0.71,single=0.085,..." -> normalised dict (categories of DEFAULT_MIX)."""
    if not text:
        return dict(L.DEFAULT_MIX)
    mix = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in L.DEFAULT_MIX:
            raise ValueError(f"unknown mix category {key!r}; expected {', '.join(L.DEFAULT_MIX)}")
        mix[key] = float(value)
    if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix weights must be >= 0 with a positive sum, got {mix}")
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items()}


# --- the build ---------------------------------------------------------------------------------

def build(spec: list[tuple[str, dict]], cfg: BuildConfig, progress: bool = True) -> dict:
    """Render the dataset into cfg.out (replacing what was there); returns the build summary."""
    from tqdm import tqdm

    final = Path(cfg.out)
    # Build beside the old dataset and swap at the end, so readers never see half a dataset
    # (listing i is the same in a bigger build with the same seed: a running job that reads
    # an old record's images still finds the same pixels).
    out = final.with_name(final.name + ".building")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sources = make_sources(spec)
    prefix = cfg.name or final.name
    tasks = plan(sources, cfg, prefix)
    files = {s: open(out / f"{s}.jsonl", "w", encoding="utf-8") for s in fmt.SPLITS}
    counts: dict[str, dict[str, int]] = {}
    n_images = n_bytes = n_records = 0
    t0 = time.perf_counter()
    cfg_dict = asdict(cfg)
    cfg_dict["out"] = str(out)  # workers write into the build directory
    try:
        if cfg.workers > 1:
            ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
            pool = ctx.Pool(cfg.workers, _init_worker, (spec, cfg_dict))
            results = pool.imap(_render, tasks, chunksize=4)
        else:
            _init_worker(spec, cfg_dict)
            pool, results = None, map(_render, tasks)
        bar = tqdm(results, total=len(tasks), unit="listing", disable=not progress, desc=f"build {final.name}")
        for recs, n_img, nb in bar:
            n_images += n_img
            n_bytes += nb
            for r in recs:
                files[r["split"]].write(fmt.dumps(r) + "\n")
                c = counts.setdefault(r["split"], {})
                c[r["label"]] = c.get(r["label"], 0) + 1
                n_records += 1
            bar.set_postfix(img_s=f"{n_images / max(1e-9, time.perf_counter() - t0):.0f}")
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        for f in files.values():
            f.close()
    elapsed = time.perf_counter() - t0
    for s in fmt.SPLITS:  # no empty files: a split without records does not exist
        if (out / f"{s}.jsonl").stat().st_size == 0:
            (out / f"{s}.jsonl").unlink()
    summary = {"version": CARD_VERSION, "config": asdict(cfg), "sources": spec, "listings": len(tasks),
               "records": n_records, "images": n_images, "megabytes": round(n_bytes / 1e6, 1),
               "seconds": round(elapsed, 1), "images_per_s": round(n_images / elapsed, 1),
               "records_per_s": round(n_records / elapsed, 1), "labels_by_split": counts,
               "groups_by_split": _groups_by_split(tasks)}
    (out / "build.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    from agpis.data import card

    (out / "CARD.md").write_text(card.dataset_card(summary, sources))
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    out.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return summary


def _groups_by_split(tasks) -> dict[str, int]:
    seen: dict[str, set] = {}
    for t in tasks:
        seen.setdefault(t[5], set()).add(t[2])
    return {k: len(v) for k, v in sorted(seen.items())}
