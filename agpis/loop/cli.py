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
