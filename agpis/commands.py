"""The service's commands: serve, generate, review, demo, bench (see `agpis <command> --help`)."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from agpis.cli import add_config_flags, load_config


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the gRPC server (health, reflection, metrics, review queue)")
    add_config_flags(p)
    p.add_argument("--host", help="listen address (server.host)")
    p.add_argument("--port", type=int, help="listen port (server.port)")
    p.add_argument("--model", help="model version: a name under weights/ or a directory (pipeline.model)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", help="run the pipeline in-process on local image files")
    add_config_flags(p)
    p.add_argument("images", nargs="*", type=Path, help="candidate image files (the first is not assumed primary)")
    p.add_argument("--title", help="product title")
    p.add_argument("--product-id", default=None)
    p.add_argument("--category", default="")
    p.add_argument("--batch", type=Path, metavar="FILE.jsonl",
                   help='many products: one JSON object per line, {"product_id", "title", "category", '
                        '"images": [path, ...]}; writes one JSON response per line')
    p.add_argument("--k", type=int, default=None, help="sequence length (default 3)")
    p.add_argument("--threshold", type=float, default=None, help="review threshold on p_qualified")
    p.add_argument("--model", help="model version (pipeline.model)")
    p.add_argument("--json", action="store_true", help="print the gRPC response's JSON form")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("batch", help="a whole catalogue on Ray Data: resumable, Parquet out, QUEUED to review")
    add_config_flags(p)
    p.add_argument("input", metavar="INPUT",
                   help="JSONL, CSV or Parquet: product_id, title, optional category, images (paths or URIs)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output directory of Parquet files; a re-run with the same DIR skips what is written")
    p.add_argument("--address", default="",
                   help="Ray cluster address (else $RAY_ADDRESS, batch.address; none: Ray in-process)")
    p.add_argument("--skip-review", action="store_true", help="a dry run: nothing is added to the review queue")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("review", help="review queued sequences from the terminal")
    add_config_flags(p)
    p.add_argument("--reviewer", default=None, help="your reviewer name (default: $AGPIS_REVIEWER or $USER)")
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = rsub.add_parser("next", help="show the next sequence to review (yours if you hold one)")
    r.add_argument("--json", action="store_true")
    r = rsub.add_parser("approve", help="approve a sequence")
    r.add_argument("entry_id")
    r = rsub.add_parser("reject", help="reject a sequence with a rule and a sentence of feedback")
    r.add_argument("entry_id")
    r.add_argument("--rule", required=True, help="rule id from the catalogue (docs/rules.md)")
    r.add_argument("--feedback", required=True, help="one sentence, e.g. 'image 2 has a price sticker'")
    rsub.add_parser("stats", help="queue depth, entries in review, decisions, dead letters")
    rsub.add_parser("janitor", help="hand back entries left idle by reviewers now (the server does it periodically)")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("config", help="print the effective configuration (defaults < file < env < --set)")
    add_config_flags(p)
    p.add_argument("--markdown", action="store_true", help="the table of every setting, for the README")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("demo", help="end-to-end demo: embedded Redis + gRPC server + several products")
    add_config_flags(p)
    p.add_argument("--products", type=int, default=8)
    p.add_argument("--keep", action="store_true", help="keep the demo's data directory (var/demo)")
    p.set_defaults(func=cmd_demo)


def register_bench(sub) -> None:
    p = sub.add_parser("server", help="drive a running server (default for plain `agpis bench`)")
    add_bench_args(p)
    p = sub.add_parser("memory", help="peak RSS of `agpis serve` under the worst requests the limits allow")
    add_config_flags(p)
    p.add_argument("--clients", type=int, default=0, help="concurrent clients (default: server.max_concurrent_rpcs)")
    p.add_argument("--rounds", type=int, default=2, help="requests per client")
    p.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=cmd_bench_memory)


    p = sub.add_parser("batch", help="`agpis batch` (Ray Data) against `agpis generate --batch`; a large catalogue")
    add_config_flags(p)
    p.add_argument("--products", type=int, default=200, help="products for the comparison of the two commands")
    p.add_argument("--catalogue", type=int, default=0,
                   help="then a catalogue of this many products (100000 in the issue) with memory sampled; 0: skip")
    p.add_argument("--work-dir", help="only the catalogue, kept in this directory: run the command again after a "
                                      "stop and it resumes; the report covers every run (agpis/batchlong.py)")
    p.add_argument("--report-only", action="store_true", help="with --work-dir: rebuild the report, run nothing")
    p.add_argument("--replay", action="store_true",
                   help="with --work-dir: the driver over the whole catalogue, its actors replaying the pipeline's "
                        "decisions on the distinct products (~20x the pipeline's rate; agpis/batchreplay.py)")
    p.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=cmd_bench_batch)


def add_bench_args(p: argparse.ArgumentParser) -> None:
    add_config_flags(p)
    p.add_argument("--address", help="host:port of a running server")
    p.add_argument("--token-file", help="the running server's tokens file (its first token is sent)")
    p.add_argument("--spawn-server", action="store_true",
                   help="start a server in-process on a free port (embedded Redis) and benchmark it")
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated client concurrency levels")
    p.add_argument("--products", type=int, default=60, help="products per concurrency level")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    p.set_defaults(func=cmd_bench)


def _setup_logs(cfg, quiet: bool = False) -> None:
    from agpis import logs

    logs.setup("WARNING" if quiet else cfg.log.level, json_lines=cfg.log.json)


# -- serve ---------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    cfg = load_config(args)
    for name, dotted in (("host", "server.host"), ("port", "server.port"), ("model", "pipeline.model")):
        if getattr(args, name) is not None:
            from agpis.config import set_value

            set_value(cfg, dotted, getattr(args, name), "flag")
    _setup_logs(cfg)
    from agpis.service import AgpisServer

    server = AgpisServer(cfg)
    stop = server.handle_signals()  # before the port opens: a SIGTERM from then on drains
    server.start().serve_forever(stop)
    return 0


# -- generate ------------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    cfg = load_config(args)
    if args.model:
        cfg.pipeline.model = args.model
    _setup_logs(cfg, quiet=True)
    if bool(args.batch) == bool(args.images):
        raise SystemExit("agpis generate: give image files with --title, or --batch FILE.jsonl")
    if args.images and not args.title:
        raise SystemExit("agpis generate: --title is required with image files")
    from agpis.images import ImageError
    from agpis.pipeline import Pipeline, PipelineError

    pipeline = Pipeline.load(config=cfg)
    if args.images:
        try:
            d = pipeline.generate(args.title, args.images, product_id=args.product_id, category=args.category,
                                  k=args.k, threshold=args.threshold, explain=True)
        except (ImageError, PipelineError) as e:
            print(f"agpis generate: {e}", file=sys.stderr)
            return 2
        print(d.to_json() if args.json else summary(d))
        return 0
    return _generate_batch(pipeline, args)


def _generate_batch(pipeline, args) -> int:
    from tqdm import tqdm

    from agpis.images import ImageError
    from agpis.pipeline import PipelineError

    lines = args.batch.read_text().splitlines()
    failures = 0
    for n, line in enumerate(tqdm(lines, desc="products", unit="product", file=sys.stderr), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            base = args.batch.parent
            paths = [p if os.path.isabs(p) else base / p for p in item["images"]]
            d = pipeline.generate(item["title"], paths, product_id=item.get("product_id"),
                                  category=item.get("category", ""), k=args.k, threshold=args.threshold)
            print(d.to_json(indent=None) if args.json else summary(d), flush=True)
        except (ImageError, PipelineError, KeyError, TypeError, json.JSONDecodeError) as e:
            failures += 1
            err = {"line": n, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(err) if args.json else f"line {n}: {err['error']}", flush=True)
    return 1 if failures else 0


def summary(d) -> str:
    """A few lines a person can read."""
    from agpis.convert import decision_to_proto, describe

    head = f"{d.product_id}: {d.status}  p_qualified={d.p_qualified:.3f} (threshold {d.threshold})"
    return "\n".join([head] + describe(decision_to_proto(d)))


# -- batch ---------------------------------------------------------------------------------------
def cmd_batch(args) -> int:
    cfg = load_config(args)
    _setup_logs(cfg, quiet=True)
    from agpis.batch import LedgerError, format_summary, run_batch

    try:
        result = run_batch(cfg, args.input, args.out, address=args.address, review=not args.skip_review,
                           progress=not args.no_progress)
    except LedgerError as e:
        print(f"agpis batch: {e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


# -- review --------------------------------------------------------------------------------------
def cmd_review(args) -> int:
    cfg = load_config(args)
    _setup_logs(cfg, quiet=True)
    from agpis.queue import NotPending, QueueError, ReviewQueue
    from agpis.redisconn import RedisHandle, RedisUnavailable
    import redis

    reviewer = args.reviewer or os.environ.get("AGPIS_REVIEWER") or getpass.getuser()
    try:
        with RedisHandle(cfg.queue) as handle:
            q = ReviewQueue(handle.client, cfg.queue)
            if args.action == "next":
                item = q.next(reviewer)
                if item is None:
                    print("the review queue is empty")
                    return 0
                print(json.dumps({"entry_id": item.entry_id, "deliveries": item.deliveries, **item.payload},
                                 indent=2, ensure_ascii=False) if args.json else format_item(item))
            elif args.action == "approve":
                print(f"approved {args.entry_id} (decision {q.verdict(args.entry_id, reviewer, True)})")
            elif args.action == "reject":
                decision = q.verdict(args.entry_id, reviewer, False, args.rule, args.feedback)
                print(f"rejected {args.entry_id}: {args.rule} (decision {decision})")
            elif args.action == "stats":
                print(json.dumps(q.stats(), indent=2))
            elif args.action == "janitor":
                print(json.dumps(q.janitor()))
    except (NotPending, QueueError) as e:
        print(f"agpis review: {e}", file=sys.stderr)
        return 1
    except (RedisUnavailable, redis.ConnectionError, redis.TimeoutError) as e:
        where = cfg.queue.redis_url or f"the embedded Valkey in {cfg.queue.data_dir}"
        print(f"agpis review: cannot reach Redis ({where}): {e}", file=sys.stderr)
        return 3
    return 0


def format_item(item) -> str:
    p = item.payload
    lines = [f"entry {item.entry_id}  product {item.product_id}" +
             (f"  (delivered {item.deliveries + 1} times)" if item.deliveries else ""),
             f"title: {p.get('title', '')}",
             f"model: p_qualified={p.get('p_qualified')} predicted rule={p.get('predicted_rule')}",
             "sequence:"]
    uris = {c["id"]: c.get("uri", "") for c in p.get("candidates", [])}
    for n, cid in enumerate(p.get("sequence", []), 1):
        lines.append(f"  {n}. {cid}  {uris.get(cid, '')}")
    for r in p.get("removed", []):
        lines.append(f"removed {r['id']}: {r['rule']} - {r['reason']}")
    lines.append(f"approve: agpis review approve {item.entry_id}")
    lines.append(f"reject:  agpis review reject {item.entry_id} --rule RULE --feedback '...'")
    return "\n".join(lines)


# -- config ----------------------------------------------------------------------------------------
def cmd_config(args) -> int:
    from agpis import config

    if args.markdown:
        print(config_markdown())
        return 0
    cfg = load_config(args)
    section = None
    for dotted, _type, value in config.describe(cfg):
        name, field = dotted.split(".")
        if name != section:
            print(f"{'' if section is None else chr(10)}[{name}]")
            section = name
        print(f"{field} = {_toml(value)}")
    return 0


def _toml(value) -> str:
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def config_markdown() -> str:
    from agpis import config

    docs = config.field_docs()
    rows = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    for dotted, tp, default in config.describe():
        rows.append(f"| `{dotted}` | {tp.replace(' | ', ' or ')} | `{default!r}` | {docs.get(dotted, '')} |")
    return "\n".join(rows)


# -- demo ------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from agpis.demo import run_demo

    return run_demo(load_config(args), n_products=args.products, keep=args.keep)


# -- bench -----------------------------------------------------------------------------------------
def cmd_bench_batch(args) -> int:
    if args.work_dir:
        from agpis.batchlong import run_long

        if not args.catalogue:
            raise SystemExit("--work-dir needs --catalogue N")
        return run_long(load_config(args), args)
    if args.replay or args.report_only:
        raise SystemExit("--replay and --report-only need --work-dir DIR")
    from agpis.batchbench import run_bench

    return run_bench(load_config(args), args)


def cmd_bench(args) -> int:
    from agpis.bench import run_bench

    return run_bench(load_config(args), args)


def cmd_bench_memory(args) -> int:
    from agpis.bench import run_memory_bench

    return run_memory_bench(load_config(args), args)
