"""The ``vipflow`` console command as a process: a taken port is named, a reader that leaves ends it
quietly, and an unreachable Redis is one line; nothing reaches stderr as a traceback or as Python's
"Exception ignored" at exit."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from worker.ledger import Ledger

pytestmark = pytest.mark.integration
VIPFLOW = [sys.executable, "-m", "producers"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: a ledger file, a VIP key and operator id, the shipped rules; no VIPFLOW_*
    from the developer's shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}
    Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}").close()  # reading commands never create one
    return {**clean, "VIPFLOW_DATABASE__URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(os.urandom(32)).decode(),
            "VIPFLOW_VIP__OPERATOR_ID": "op-test", "VIPFLOW_RULES__PATH": str(ROOT / "rules" / "default")}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on for the length of the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _vipflow(env: dict[str, str], *args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIPFLOW, *args], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=60, check=False)


def _last_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("option", ["--vip-port", "--wallet-port"])
def test_sim_on_a_taken_port_names_the_port_and_the_option(option: str, env: dict[str, str],
                                                           taken_port: int) -> None:
    """`vipflow sim` whose port is taken: one line naming host:port, why, and the option to change; exit 1."""
    other = "--wallet-port" if option == "--vip-port" else "--vip-port"
    result = _vipflow(env, "sim", option, str(taken_port), other, "0")
    assert result.returncode == 1
    line = _last_line(result.stderr)
    assert line == (f"vipflow: cannot listen on 127.0.0.1:{taken_port}: the port is taken by another process; "
                    f"stop what uses it, or choose another port with {option} (0 = any free port)")


def test_ingest_on_a_taken_port_names_the_port(env: dict[str, str], taken_port: int) -> None:
    """`vipflow ingest` whose port is taken: the same one line (bound before uvicorn starts), exit 1."""
    result = _vipflow(env, "ingest", "--port", str(taken_port))
    assert result.returncode == 1
    assert _last_line(result.stderr).startswith(f"vipflow: cannot listen on 127.0.0.1:{taken_port}: the port is "
                                                "taken by another process; stop what uses it, or choose another "
                                                "port with --port")


def test_web_on_a_taken_port_names_the_port(env: dict[str, str], taken_port: int) -> None:
    """`vipflow web` whose port is taken: one line naming host:port and --port (bound before uvicorn starts,
    so none of uvicorn's own lines), exit 1."""
    result = _vipflow(env, "web", "--port", str(taken_port))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"vipflow: cannot listen on 127.0.0.1:{taken_port}: the port is taken by "
                                     "another process; stop what uses it, or choose another port with --port "
                                     "(or web.port) (0 = any free port)"), result.stderr


def test_a_closed_pipe_ends_the_process_quietly(env: dict[str, str]) -> None:
    """`vipflow rules check | head -0`: exit 141, nothing on stderr (not even at interpreter exit)."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = _vipflow(env, "rules", "check", stdout=write)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def test_an_unreachable_redis_is_one_line_from_the_process(env: dict[str, str]) -> None:
    """`vipflow review approve` with Redis on a closed port: one line naming it, exit 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    result = _vipflow({**env, "VIPFLOW_REDIS__URL": f"redis://127.0.0.1:{port}/0"}, "review", "approve", "tx1")
    assert result.returncode == 1
    assert _last_line(result.stderr) == (f"vipflow: cannot reach Redis at redis://127.0.0.1:{port}/0 (Connection "
                                         "refused); check redis.url (VIPFLOW_REDIS__URL) and that Redis is running")
