"""The ``vipflow`` command: one dispatcher, one module per subcommand.

Each subcommand parses its input and calls one function in the package that owns
the work. What goes wrong is mapped to one line and an exit code here, once for
every command (``producers.exits``: 2 for bad configuration or input, 1 when the
work failed or Redis or the ledger did not answer, 130 on Ctrl-C, 141 when the
reader of the output left). Heavy imports happen inside the subcommands, so
``vipflow rules check`` starts fast.

``-v/--verbose`` is one flag, accepted before the subcommand or anywhere after
it: every command then first says on stderr which configuration, Redis and
database, ledger and rules it uses (``worker.config_report``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules with add_parser(subparsers); each imports only argparse-level code at its top.
COMMAND_MODULES = (
    "producers.commands.rules_cmd",
    "producers.ingest.command",
    "worker.command",
    "producers.commands.tx_cmd",
    "producers.sim.command",
    "producers.commands.replay_cmd",
    "producers.commands.review_cmd",
    "producers.commands.run_cmd",
    "producers.commands.db_cmd",
    "producers.web.command",
    "producers.commands.tokens_cmd",
    "producers.commands.lists_cmd",
    "producers.commands.labels_cmd",
    "producers.commands.status_cmd",
    "producers.commands.users_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="vipflow",
        description="Approve VIP Connect deposits and withdrawals with business rules.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="configuration file (default: $VIPFLOW_CONFIG, else built-in defaults)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a subcommand not built yet
        module.add_parser(sub)
    _add_verbose_everywhere(parser)
    return parser


VERBOSE_HELP = "first say on stderr which configuration, Redis and database, ledger and rules are used"


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    # The same flag after any (sub)command; SUPPRESS keeps a flag given earlier from being reset.
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if "--verbose" not in child._option_string_actions:
                flags = ["--verbose"] if "-v" in child._option_string_actions else ["-v", "--verbose"]
                child.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
            _add_verbose_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vipflow``; return the process exit code (see ``producers.exits``)."""
    from producers.exits import run_command

    args = build_parser().parse_args(argv)
    return run_command(_verbose_then_run, args)


def _verbose_then_run(args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        from worker.config_report import describe

        for line in describe(args.config):
            print(f"vipflow: {line}", file=sys.stderr)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
