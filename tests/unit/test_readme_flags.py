"""The README's command table documents every option of every command: each ``--flag`` argparse knows
appears in the synopsis (first column) of a row for that command."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from producers.cli import build_parser
from tests.conftest import ROOT

# The options every command takes before the subcommand, documented above the table.
GLOBAL = {"--config"}  # beside "--verbose", accepted by every command and documented once
EVERYWHERE = {"--verbose"}


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(command path, long option) for every option of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            for option in action.option_strings:
                if option.startswith("--"):
                    yield path, option


def _synopses() -> list[str]:
    """The code spans of the first column of the README's command table, without the leading ``vipflow``."""
    spans: list[str] = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `vipflow "):
            first = line.split(" | ", 1)[0]
            spans += [s.removeprefix("vipflow ").strip() for s in re.findall(r"`([^`]+)`", first)]
    return spans


def _documented(path: tuple[str, ...], option: str, spans: list[str]) -> bool:
    command = " ".join(path)
    mine = [s for s in spans if s == command or s.startswith(command + " ")]
    return any(re.search(re.escape(option) + r"(?![\w-])", s) for s in mine)


def test_every_option_of_every_command_is_in_the_readme() -> None:
    """No flag is left for a newcomer to find in --help only."""
    spans = _synopses()
    missing = [f"vipflow {' '.join(path)} {option}" for path, option in _options(build_parser())
               if option not in GLOBAL | EVERYWHERE and not _documented(path, option, spans)]
    assert missing == [], "document these in README.md's command table: " + ", ".join(missing)


def test_the_global_options_are_documented_above_the_table() -> None:
    """--config, taken before the subcommand, is described in the Commands section's opening."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{option} FILE`" in text for option in GLOBAL)
    assert all(f"`-v/{option}`" in text for option in EVERYWHERE)
