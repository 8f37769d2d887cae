"""``vipflow ingest`` argument parsing (the command is registered by producers.cli)."""

from __future__ import annotations

import argparse

from producers.ingest.command import add_parser, run


def test_ingest_parser_takes_host_and_port_and_runs_run() -> None:
    """``ingest --host H --port P`` parses to those values with run as its function."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ingest", "--host", "10.0.0.5", "--port", "9000"])
    assert (args.host, args.port, args.func) == ("10.0.0.5", 9000, run)


def test_importing_the_command_does_not_import_the_web_stack() -> None:
    """The command module is cheap to import: no Starlette or uvicorn at its top."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    code = ("import sys, producers.ingest.command; "
            "print(any(m in sys.modules for m in ('starlette', 'uvicorn', 'celery')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    assert out.stdout.strip() == "False"
