"""`agpis data build|synth|stats|validate|preview|rules-doc` and `agpis bench data`.

Handlers import the data modules lazily so that `agpis --help` stays cheap.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _build_flags(p: argparse.ArgumentParser, default_out: str, default_records: int) -> None:
    p.add_argument("--out", default=default_out, help=f"dataset directory (default {default_out})")
    p.add_argument("--records", type=int, default=default_records, help="sequences to write")
    p.add_argument("--size", type=int, default=512, help="candidate images' side in px (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-product", type=int, default=4, dest="per_product",
                   help="sequences per listing (they share its candidates)")
    p.add_argument("--mix", default=None,
                   help="label mix by category, e.g. qualified=0.71,single=0.085,primary=0.035,pair=0.07,multi=0.10")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="rendering processes")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--heldout-fraction", type=float, default=0.5, dest="heldout_fraction",
                   help="share of val/test products drawn with held-out styles")
    p.add_argument("--no-progress", action="store_true")


def _config(args):
    from agpis.data import builder

    if args.records < 1:
        raise SystemExit("agpis data: --records must be >= 1")
    return builder.BuildConfig(out=args.out, records=args.records, size=args.size, seed=args.seed,
                               records_per_product=args.per_product, mix=builder.parse_mix(args.mix),
                               workers=args.workers, quality=args.quality, heldout_fraction=args.heldout_fraction)


def _report(summary: dict) -> None:
    print(f"wrote {summary['records']} records, {summary['listings']} listings, {summary['images']} images "
          f"({summary['megabytes']} MB) to {summary['config']['out']} in {summary['seconds']} s: "
          f"{summary['images_per_s']} images/s, {summary['records_per_s']} records/s")


def _check_shared(shared) -> None:
    from agpis.data import real

    try:
        real.data_dir(shared)
    except FileNotFoundError as e:
        raise SystemExit(f"agpis data: {e}")


def cmd_build(args) -> int:
    from agpis.data import builder, real

    _check_shared(args.shared)  # fail early with a clear message
    summary = builder.build(real.real_spec(args.shared), _config(args), progress=not args.no_progress)
    _report(summary)
    return 0


def cmd_synth(args) -> int:
    from agpis.data import builder

    spec = [("procedural", {"n": args.products, "seed": args.seed})]
    summary = builder.build(spec, _config(args), progress=not args.no_progress)
    _report(summary)
    return 0


def cmd_validate(args) -> int:
    from agpis.data import format as fmt

    paths = []
    for p in map(Path, args.paths):
        paths += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not paths:
        raise SystemExit("agpis data validate: no .jsonl files given")
    bad = 0
    records = []
    for p in paths:
        n, errors = fmt.validate_file(p, check_images=args.images)
        for e in errors[: args.max_errors]:
            print(e)
        if len(errors) > args.max_errors:
            print(f"{p}: ... and {len(errors) - args.max_errors} more errors")
        print(f"{p}: {n} records, {len(errors)} errors")
        bad += len(errors)
        if not errors:
            records += fmt.load_records(p, validate=False)
    leaks = fmt.check_leakage(records)
    for leak in leaks:
        print(f"split leakage across files: {leak}")
    return 1 if bad or leaks else 0


def cmd_stats(args) -> int:
    from agpis.data import stats

    s = stats.stats(stats.load_any(args.path))
    print(stats.format_stats(s, args.path))
    return 1 if s["leakage"] else 0


def cmd_preview(args) -> int:
    from agpis.data import preview, stats

    records = stats.load_any(args.path)
    if args.split:
        records = [r for r in records if r.split == args.split]
    if args.style_split:
        records = [r for r in records if r.style_split == args.style_split]
    if not records:
        raise SystemExit(f"agpis data preview: no records in {args.path}")
    chosen = preview.pick(records, args.n, seed=args.seed, per_label=args.per_label)
    out = preview.contact_sheet(chosen, args.out, columns=args.columns)
    print(f"wrote {out} ({len(chosen)} sequences)")
    return 0


def cmd_rules_doc(args) -> int:
    from agpis.data import rulesdoc

    text = rulesdoc.render_markdown()
    out = Path(args.out)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date: run `agpis data rules-doc`", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="AGPIS-data: build, validate, inspect datasets",
                          description="AGPIS-data: the dataset format, builders and tools (docs/data.md).")
    dsub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = dsub.add_parser("build", help="build a dataset from the real photos in ../shared/data")
    _build_flags(p, "var/datasets/real", 20000)
    p.add_argument("--shared", default=None, help="the data folder (default ../shared/data or $AGPIS_SHARED/data)")
    p.set_defaults(func=cmd_build)

    p = dsub.add_parser("synth", help="build a dataset from drawn products (needs no external photos)")
    _build_flags(p, "var/datasets/synth", 2000)
    p.add_argument("--products", type=int, default=240, help="distinct drawn products (split groups)")
    p.set_defaults(func=cmd_synth)

    p = dsub.add_parser("validate", help="check AGPIS-data files; errors name the line")
    p.add_argument("paths", nargs="+", help="JSONL files or dataset directories")
    p.add_argument("--images", action="store_true", help="also check that every candidate file exists")
    p.add_argument("--max-errors", type=int, default=50, dest="max_errors")
    p.set_defaults(func=cmd_validate)

    p = dsub.add_parser("stats", help="counts by split, label, category and style")
    p.add_argument("path", help="dataset directory or JSONL file")
    p.set_defaults(func=cmd_stats)

    p = dsub.add_parser("preview", help="contact sheet PNG of sequences with label and feedback")
    p.add_argument("path", help="dataset directory or JSONL file")
    p.add_argument("--out", default="var/preview.png")
    p.add_argument("--n", type=int, default=24, help="sequences on the sheet")
    p.add_argument("--per-label", type=int, default=0, dest="per_label",
                   help="instead: up to this many of every label")
    p.add_argument("--split", default=None)
    p.add_argument("--style-split", default=None, dest="style_split", choices=("train", "heldout"),
                   help="only records drawn with training or held-out styles")
    p.add_argument("--columns", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_preview)

    p = dsub.add_parser("rules-doc", help="write docs/rules.md from the rule catalogue")
    p.add_argument("--out", default=str(REPO / "docs" / "rules.md"))
    p.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    p.set_defaults(func=cmd_rules_doc)

    from agpis.cli import add_config_flags

    p = dsub.add_parser("export", help="reviewers' verdicts from the decisions stream as AGPIS-data (source=review)")
    add_config_flags(p)
    p.add_argument("--since", default="90d", help="window: 90d, 12h, 30m or an ISO date (default 90d)")
    p.add_argument("--out", default="var/datasets/reviews.jsonl", help="JSONL file to write")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    """Each stored verdict becomes one record: the reviewer's rule and feedback, images by URI."""
    import redis

    from agpis.cli import load_config
    from agpis.loop.export import export_reviews, parse_since, write_jsonl
    from agpis.queue import ReviewQueue
    from agpis.redisconn import RedisHandle, RedisUnavailable

    cfg = load_config(args)
    try:
        since = parse_since(args.since)
        with RedisHandle(cfg.queue) as handle:
            records, problems = export_reviews(ReviewQueue(handle.client, cfg.queue), since)
    except ValueError as e:
        raise SystemExit(f"agpis data export: {e}")
    except (RedisUnavailable, redis.RedisError) as e:
        raise SystemExit(f"agpis data export: cannot reach Redis: {e}")
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    path = write_jsonl(records, args.out)
    print(f"wrote {len(records)} reviewed records since {since.isoformat(timespec='seconds')} to {path}")
    return 0


def cmd_bench(args) -> int:
    """Build the real dataset once at full size and record its speed in docs/benchmarks.md."""
    import platform

    from agpis.data import builder, real
    from agpis.docsections import write_section

    _check_shared(args.shared)
    cfg = _config(args)
    load_before = os.getloadavg()[0]
    summary = builder.build(real.real_spec(args.shared), cfg, progress=not args.no_progress)
    load_after = os.getloadavg()[0]
    _report(summary)
    ok = summary["records"] >= 20000 and summary["seconds"] < 900
    md = (f"## Data build (`agpis bench data`)\n\n"
          f"`agpis bench data --records {cfg.records} --workers {cfg.workers}` on {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), machine shared with other work (1-min load "
          f"average {load_before:.1f} at the start, {load_after:.1f} at the end); candidates "
          f"{cfg.size} px JPEG q{cfg.quality}, {summary['images'] / max(1, summary['listings']):.1f} "
          f"candidates per listing.\n\n"
          f"| records | listings | images | seconds | images/s | records/s | MB |\n|---|---|---|---|---|---|---|\n"
          f"| {summary['records']} | {summary['listings']} | {summary['images']} | {summary['seconds']} | "
          f"{summary['images_per_s']} | {summary['records_per_s']} | {summary['megabytes']} |\n\n"
          f"Targets (issue 3): >= 20,000 sequences in < 15 min, >= 50 images/s: "
          f"{'met' if ok and summary['images_per_s'] >= 50 else 'NOT met'}.")
    write_section(REPO / "docs" / "benchmarks.md", "data-build", md)
    print("wrote docs/benchmarks.md section data-build")
    return 0


def register_bench(sub) -> None:
    p = sub.add_parser("data", help="time `agpis data build` (20,000 sequences) and record it")
    _build_flags(p, "var/datasets/real", 20000)
    p.add_argument("--shared", default=None)
    p.set_defaults(func=cmd_bench)
