"""``vipflow ingest`` argument parsing (the command is registered by producers.cli)."""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys

import pytest

from producers.ingest.command import add_parser, run
from tests.conftest import ROOT
from worker.config import IngestAuthSettings, IngestSettings, RedisSettings, Settings
from worker.errors import ConfigError


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



def test_the_ingestor_refuses_to_start_without_a_verification_key() -> None:
    """No SecretKey and no callback key: one line naming the variable to set, exit code 2, nothing served."""
    proc = subprocess.run([sys.executable, "-m", "producers", "ingest", "--port", "1"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "VIPFLOW_REDIS__URL": "redis://127.0.0.1:1/0"},
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "vipflow: configuration: vip.secret_key1: the ingestor needs a key to verify VIP Connect's tokens; "
        "set VIPFLOW_VIP__SECRET_KEY1 (or VIPFLOW_INGEST__AUTH__CALLBACK_KEY)"]


def test_the_app_needs_a_key_unless_authentication_is_explicitly_off() -> None:
    """create_app refuses jwt mode without keys; a callback key alone, or mode none, is enough."""
    from producers.ingest.app import create_app

    closed = RedisSettings(url="redis://127.0.0.1:1/0")  # never reached: connections are lazy
    with pytest.raises(ConfigError, match=r"vip\.secret_key1"):
        create_app(Settings(redis=closed))
    key = base64.b64encode(b"k" * 32).decode()
    create_app(Settings(redis=closed, ingest=IngestSettings(auth=IngestAuthSettings(callback_key=key))))
    create_app(Settings(redis=closed, ingest=IngestSettings(auth=IngestAuthSettings(
        mode="none", allow_unauthenticated=True))))
