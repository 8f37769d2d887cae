"""What commands print with: one rich console, and counted nouns (``worker.wording.plural``, ``noun_for``).

The console ends a command quietly when the reader of its output leaves
(``| head``): rich's own handling would exit 1 from inside the print, so the
broken pipe is raised on to ``producers.exits``, which ends every command the
same way.
"""

from __future__ import annotations

import errno
from typing import Any

from worker.wording import noun_for, plural

__all__ = ["console", "noun_for", "plural", "print_table"]


def console(**options: Any) -> Any:
    """A ``rich.console.Console`` on stdout (``highlight=False`` unless given) whose broken pipe is raised
    as ``BrokenPipeError``."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "the reader of the output left")

    options.setdefault("highlight", False)
    return _Console(**options)


def print_table(table: Any) -> None:
    """Print a rich ``table`` whole: into a file or a pipe each row on one line; on a terminal too narrow
    for its columns that must not wrap (ids, amounts), wider than the terminal, which then wraps the
    lines (the text stays whole when copied) rather than rich cutting them with an ellipsis."""
    out, needs = console(), console(width=100_000).measure(table)
    out = console(width=max(80, needs.maximum) if not out.is_terminal else max(out.width, needs.minimum))
    out.print(table)
