"""``python -m producers.sim``: the simulator without the vipflow dispatcher (tests start it so)."""

from __future__ import annotations

import argparse
import sys

from producers.exits import run_command
from producers.sim.command import add_options, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config`` and the sim options, then run."""
    parser = argparse.ArgumentParser(prog="python -m producers.sim", description=__doc__)
    parser.add_argument("--config", default=None, help="configuration file (or $VIPFLOW_CONFIG)")
    add_options(parser)
    return run_command(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
