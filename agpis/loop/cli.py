"""Commands of the reviewers' loop: review-ui, reviewers, retrain."""
from __future__ import annotations

import sys

from agpis.cli import add_config_flags, load_config


def register(sub) -> None:
    p = sub.add_parser("review-ui", help="the reviewers' web app (same queue as `agpis review`)")
    add_config_flags(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_review_ui)

    p = sub.add_parser("reviewers", help="manage reviewer tokens for the web app")
    add_config_flags(p)
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = rsub.add_parser("add", help="create a token for a reviewer (printed once)")
    r.add_argument("name")
    rsub.add_parser("list", help="reviewers who have a token")
    r = rsub.add_parser("remove", help="revoke a reviewer's tokens")
    r.add_argument("name")
    p.set_defaults(func=cmd_reviewers)

    p = sub.add_parser("retrain", help="train a challenger MUIsC on recent reviews; promote it if it beats the champion")
    add_config_flags(p)
    p.add_argument("--since", default="90d", help="review window: 90d, 12h, or an ISO date (default 90d)")
    p.add_argument("--registry", default=None, help="model registry directory (default pipeline.registry or var/models)")
    p.add_argument("--base-data", default="", help="an AGPIS-data dataset directory added to the training data")
    p.add_argument("--margin", type=float, default=0.005, help="AUC gain the challenger needs (default 0.005)")
    p.add_argument("--heldout-fraction", type=float, default=0.25)
    p.add_argument("--min-heldout", type=int, default=10)
    p.add_argument("--epochs", type=int, default=None, help="stage 2 training epochs (default: stage 2's)")
    p.add_argument("--train-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other stage 2 TrainConfig field, e.g. --train-set batch_size=32")
    p.add_argument("--work-dir", default="var/retrain")
    p.set_defaults(func=cmd_retrain)


def cmd_review_ui(args) -> int:
    cfg = load_config(args)
    from agpis import logs
    from agpis.loop.webapp import ReviewServer

    logs.setup(cfg.log.level, json_lines=cfg.log.json)
    server = ReviewServer(cfg, args.host, args.port).start()
    print(f"review web app on {server.url} (queue: {cfg.queue.redis_url or 'embedded Valkey in ' + cfg.queue.data_dir})",
          flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_reviewers(args) -> int:
    cfg = load_config(args)
    import redis

    from agpis.loop import tokens
    from agpis.redisconn import RedisHandle, RedisUnavailable

    try:
        with RedisHandle(cfg.queue) as handle:
            if args.action == "add":
                token = tokens.add_reviewer(handle.client, args.name)
                print(f"token for {args.name} (shown once; give it to them privately):\n{token}")
            elif args.action == "list":
                print("\n".join(tokens.list_reviewers(handle.client)) or "(no reviewers)")
            else:
                print(f"revoked {tokens.remove_reviewer(handle.client, args.name)} token(s) of {args.name}")
    except ValueError as e:
        print(f"agpis reviewers: {e}", file=sys.stderr)
        return 2
    except (RedisUnavailable, redis.RedisError) as e:
        print(f"agpis reviewers: cannot reach Redis: {e}", file=sys.stderr)
        return 3
    return 0


def cmd_retrain(args) -> int:
    cfg = load_config(args)
    from agpis.loop.retrain import RetrainConfig, RetrainError, retrain

    train = {}
    for item in args.train_set:
        key, _, value = item.partition("=")
        train[key] = _number(value)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    rcfg = RetrainConfig(since=args.since, registry=args.registry or cfg.pipeline.registry or "var/models",
                         base_data=args.base_data, work_dir=args.work_dir, margin=args.margin,
                         heldout_fraction=args.heldout_fraction, min_heldout=args.min_heldout, train=train)
    try:
        report = retrain(cfg, rcfg)
    except (RetrainError, ValueError, FileNotFoundError) as e:
        print(f"agpis retrain: {e}", file=sys.stderr)
        return 2
    return 0 if report["decision"] in ("promoted", "not promoted") else 1


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
