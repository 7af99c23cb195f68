"""`--help` of every `pruneserve` command shows every flag's default."""

from __future__ import annotations

import argparse

import pytest

from clients.cli.main import build_parser


def commands(parser: argparse.ArgumentParser, prefix: str = "pruneserve"):
    """(name, parser) of the command and of every subcommand, nested ones too."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{prefix} {name}")


ALL = dict(commands(build_parser()))


def shown_default(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """The default's value is in the lines --help prints for this flag."""
    return str(action.default) in parser._get_formatter()._format_action(action)


def test_every_command_is_covered():
    assert {
        "pruneserve prune",
        "pruneserve submit",
        "pruneserve api",
        "pruneserve worker",
        "pruneserve datasets upload",
        "pruneserve list",
    } <= set(ALL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_help_shows_every_default(name):
    parser = ALL[name]
    missing = [
        "/".join(a.option_strings)
        for a in parser._actions
        if a.option_strings
        and a.help is not argparse.SUPPRESS
        and a.default not in (None, False, [], argparse.SUPPRESS)
        and not shown_default(parser, a)
    ]
    assert not missing, f"{name} --help hides the default of {missing}"
    parser.format_help()  # renders (a % in a help text would raise here)


def test_defaults_appear_in_the_rendered_help():
    text = " ".join(ALL["pruneserve api"].format_help().split())
    assert "--log-level LOG_LEVEL (default: info)" in text
    text = " ".join(ALL["pruneserve prune"].format_help().split())
    assert "(default: auto)" in text and "(default: PRUNESERVE_DATA_DIR" in text
