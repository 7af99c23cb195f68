"""The `pruneserve` command: local prune, the api/worker processes and the remote client.

A user never sees a traceback: every error ends as one `error: <Type>: <message>` line and an
exit status from exits.py (PRUNESERVE_DEBUG=1 or --debug also prints the traceback).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys
import traceback

from clients.cli.exits import FAILED, INTERRUPTED, USAGE, CliError

# Each module registers its subcommands with `register(subparsers)`; imported lazily
# so `pruneserve api` never imports torch.
COMMAND_MODULES = (
    "clients.cli.prune",
    "clients.cli.serve",
    "clients.cli.remote",
    "clients.cli.report_cmd",
)


class DefaultsFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless the help already states it."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _has_default(action):  # argparse skips an empty help
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not _has_default(action) or "default" in text or f"({action.default})" in text:
            return text
        return f"{text} (default: %(default)s)"


def _has_default(action: argparse.Action) -> bool:
    d = action.default
    unset = d is None or d is False or d == [] or d is argparse.SUPPRESS
    return bool(action.option_strings) and action.help is not argparse.SUPPRESS and not unset


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and every subcommand's) shows the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pruneserve", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--debug", action="store_true", help="print tracebacks (also PRUNESERVE_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("PRUNESERVE_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        _traceback(debug)
        print(exc.line(), file=sys.stderr)
        return exc.code
    except SystemExit as exc:  # a command refusing its input or settings: `error: ...`
        if not isinstance(exc.code, str):
            raise
        print(exc.code, file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # nobody typed it: one line, the traceback only when asked for
        _traceback(debug)
        first = (str(exc).strip().splitlines() or [""])[0]
        hint = "" if debug else " (unexpected; PRUNESERVE_DEBUG=1 shows the traceback)"
        print(f"error: {type(exc).__name__}: {first}{hint}", file=sys.stderr)
        return FAILED


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
