"""Exit codes of the `pruneserve` command, and the typed error that ends a command with one."""

from __future__ import annotations

import argparse

OK = 0
REQUEST_FAILED = 1  # a call to the service failed (the server's status and message are shown)
USAGE = 2  # bad flags or input, refused before any work started
FAILED = 3  # the pruning failed: a job failed, a local engine error, or an unexpected error
CANCELLED = 4
TIMEOUT = 5  # --timeout reached while waiting
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """Ends the command with `error: <kind>: <message>` on stderr and exit status `code`."""

    def __init__(self, code: int, kind: str, message: str):
        super().__init__(message)
        self.code, self.kind, self.message = code, kind, message

    def line(self) -> str:
        return f"error: {self.kind}: {self.message}"


def validated_spec(args: argparse.Namespace):
    """The PruneSpec the flags describe; bad flags end with USAGE and every bad field named."""
    from pydantic import ValidationError

    from clients.cli.spec_args import spec_from_args

    try:
        return spec_from_args(args)
    except ValidationError as exc:
        raise CliError(USAGE, "ValidationError", describe(exc)) from None


def describe(exc) -> str:
    """A pydantic ValidationError as one line: 'field: message; ...'."""
    from service.schemas import describe_errors

    return "; ".join(f"{name or 'spec'}: {msg}" for name, msg in describe_errors(exc.errors()))
