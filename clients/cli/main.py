"""The `pruneserve` command: local prune, the api/worker processes and the remote client."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module registers its subcommands with `register(subparsers)`; imported lazily
# so `pruneserve api` never imports torch.
COMMAND_MODULES = ("clients.cli.prune", "clients.cli.serve", "clients.cli.remote")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pruneserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("clients.cli"):
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
