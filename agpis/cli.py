"""The `agpis` command.

Each area of the project registers its own subcommands from its own module, so that this file
stays a table of contents and importing it stays cheap (handlers import heavy modules lazily):

    module.register(sub)         adds top-level commands (`agpis serve`, `agpis data ...`)
    module.register_train(sub)   adds `agpis train <what>`
    module.register_eval(sub)    adds `agpis eval <what>`
    module.register_bench(sub)   adds `agpis bench <what>` (plain `agpis bench` drives a server)
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in help order. A module that does not exist yet is
# skipped; any other import error is a bug and is raised.
COMMAND_MODULES = (
    "agpis.commands",  # serve, generate, review, demo, bench
    "agpis.data.cli",  # data build / synth / stats / validate / preview / export
    "stage1.cli",  # weights import, train stage1, eval stage1
    "stage2.cli",  # train muisc, eval muisc
    "agpis.loop.cli",  # review-ui, retrain
    "agpis.listings_eval",  # eval listings (the real-listing benchmark)
)


def _modules():
    for name in COMMAND_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # that area has not landed yet
            raise


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The flags every command that reads the configuration accepts."""
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (or $AGPIS_CONFIG)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one setting; repeatable (highest precedence)")


def load_config(args: argparse.Namespace):
    from agpis import config

    try:
        return config.load(getattr(args, "config", None), overrides=getattr(args, "overrides", []))
    except config.ConfigError as e:
        raise SystemExit(f"agpis: configuration error: {e}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agpis", description="AGPIS: automatic generation of product-image sequences (stage 1 + MUIsC), "
                                  "its gRPC service, review queue and training tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = sub.add_parser("train", help="train a model").add_subparsers(dest="what", metavar="WHAT", required=True)
    evaluate = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="what", metavar="WHAT", required=True)
    bench = sub.add_parser("bench", help="benchmarks; plain `agpis bench` drives a running server",
                           description="Benchmarks that print their numbers and write docs/benchmarks.md.")
    bench_sub = bench.add_subparsers(dest="what", metavar="WHAT", required=False)
    from agpis.commands import add_bench_args

    add_bench_args(bench)  # plain `agpis bench` = `agpis bench server`
    for module in _modules():
        for hook, target in (("register", sub), ("register_train", train), ("register_eval", evaluate),
                             ("register_bench", bench_sub)):
            if hasattr(module, hook):
                getattr(module, hook)(target)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
