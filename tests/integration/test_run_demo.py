"""``vipflow run`` as a newcomer runs it: the real processes (simulator, ingestor, worker, sender) on free
ports, a Redis of the tests, the ledger in a ``var/`` of the test's own."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import ROOT, free_port, wait_until
from worker.ledger import Ledger
from worker.ledger.states import State

pytestmark = pytest.mark.integration
VIPFLOW = str(Path(sys.executable).parent / "vipflow")
_SUMMARY = re.compile(r"^  (approved|review|rejected|failed)\s+(\d+)  ", re.MULTILINE)


def clean_env() -> dict[str, str]:
    """This environment without any VIPFLOW_ variable: the demo must not need the developer's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def demo(var: Path, redis_url: str, *extra: str, ports: list[int] | None = None) -> list[str]:
    """The command line of ``vipflow run`` on free ports (or ``ports``: ingest, VIP, wallet; the web's free)."""
    ingest, vip, wallet = ports or free_ports(3)
    return [sys.executable, "-m", "producers", "run", "--var", str(var), "--redis-url", redis_url,
            "--ingest-port", str(ingest), "--vip-port", str(vip), "--wallet-port", str(wallet),
            "--web-port", str(free_port()),
            "--metrics-port", "0", "--rate", "60", *extra]


def run_demo(var: Path, redis_url: str, *extra: str) -> str:
    result = subprocess.run(demo(var, redis_url, *extra), cwd=ROOT, env=clean_env(), capture_output=True,
                            text=True, timeout=150, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def mix(output: str) -> dict[str, int]:
    """The counts per final state from the summary the demo prints at the end."""
    return {state: int(n) for state, n in _SUMMARY.findall(output)}


def ledger_size(var: Path) -> int:
    with Ledger.open(f"sqlite:///{(var / 'vipflow.db').resolve()}") as ledger:
        return len(ledger.created_since(0, 10_000))


@pytest.mark.timeout(400)
def test_two_runs_in_a_row_show_the_same_healthy_mix(redis_url: str, tmp_path: Path) -> None:
    """Two runs in a row of the default burst (60, not a whole number of decks) each decide it with a
    majority of approvals, some reviews and rejects, exactly alike (a clean start sends the same traffic),
    and no velocity rule: the second starts clean. A third with --keep keeps the earlier transactions."""
    var = tmp_path / "var"
    outputs = [run_demo(var, redis_url, "--exit-after", "0") for _ in range(2)]
    mixes = [mix(out) for out in outputs]
    for out, counts in zip(outputs, mixes, strict=True):
        assert sum(counts.values()) == 60, out[-2000:]
        assert counts.get("approved", 0) > 30 and counts.get("review", 0) >= 2 and counts.get("rejected", 0) >= 2, \
            out[-2000:]
        assert "frequent-" not in out, out[-3000:]  # velocity carried over from the first run would show here
    assert mixes[0] == mixes[1]
    assert re.search(r"a clean start \(removed logs/, vipflow\.db from ", outputs[1]), outputs[1][:1000]
    assert re.search(r"deleted the demo's [1-9]\d* earlier keys", outputs[1]), outputs[1][:1000]
    assert ledger_size(var) == 60
    kept = run_demo(var, redis_url, "--count", "12", "--exit-after", "0", "--keep")
    assert "kept from earlier runs (--keep)" in kept and ledger_size(var) == 72


@pytest.mark.timeout(240)
def test_the_demos_review_queue_is_worked_from_another_terminal(redis_url: str, tmp_path: Path) -> None:
    """While the demo runs, a shell that sources var/demo.env (as the demo prints) approves a queued withdrawal."""
    var = tmp_path / "var"
    ingest, vip, wallet = free_ports(3)
    with open(tmp_path / "run.out", "w") as out:
        run = subprocess.Popen(demo(var, redis_url, "--count", "24", ports=[ingest, vip, wallet]), cwd=ROOT,
                               env=clean_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    env_file = var / "demo.env"
    try:
        wait_until(lambda: env_file.exists() or run.poll() is not None, 60, "var/demo.env")
        assert run.poll() is None, (tmp_path / "run.out").read_text()
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        printed = wait_until(lambda: "set -a; . " in (tmp_path / "run.out").read_text(), 10, "the instructions")
        assert printed and f"set -a; . {env_file}; set +a" in (tmp_path / "run.out").read_text()
        # The review workspace runs too, and the demo login it prints lets one in.
        told = (tmp_path / "run.out").read_text()
        shown = re.search(r"review workspace: (http://\S+)/  log in as (\S+) \(a senior reviewer\) with the "
                          r"password in (\S+) while", told)
        assert shown is not None, (tmp_path / "run.out").read_text()
        web, user, where = shown.groups()
        assert where == str(env_file)
        found = re.search(rf"log in as {user} with password (\S+)", env_file.read_text())
        assert found is not None
        password = found.group(1)
        assert password not in told  # the output may be kept in a file: the password is only in the 0600 one
        browser = requests.Session()
        page = browser.get(f"{web}/login", timeout=10)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        answer = browser.post(f"{web}/login", data={"username": user, "password": password, "csrf": token[1],
                                                    "next": "/queue"}, timeout=10)
        assert answer.status_code == 200 and "Review queue" in answer.text, answer.text[:2000]
        with Ledger.open(f"sqlite:///{(var / 'vipflow.db').resolve()}") as ledger:
            def queued() -> str | None:
                return next((r.transaction_id for r in ledger.created_since(0) if r.state == State.REVIEW
                             and "large-withdrawal" in [m["id"] for m in (r.decision or {}).get("matched", [])]),
                            None)

            txid = wait_until(queued, 90, "a large withdrawal in review")
            shell = f"set -a; . {env_file}; set +a; {VIPFLOW} review approve {txid} --reason 'called the patron'"
            result = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                    env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")},
                                    check=False)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"{txid}: approved by" in result.stdout
            stored = ledger.load(txid)
            assert stored is not None and stored.record.state == State.APPROVED
        stats: dict[str, Any] = requests.get(f"http://127.0.0.1:{vip}/sim/stats", timeout=5).json()
        assert stats["approvals"].get(txid) == 1
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
        code = run.wait(30)
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
    assert not env_file.exists()  # it describes a running demo only


class _Impostor(BaseHTTPRequestHandler):
    """Someone else's server: answers 200 to every health check the demo might make."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("which", ["--ingest-port", "--vip-port", "--wallet-port"])
def test_a_taken_port_stops_the_demo_in_one_line_before_it_starts(redis_url: str, tmp_path: Path, impostor: int,
                                                                   which: str) -> None:
    """A port held by another server that answers health checks: the demo starts nothing and says in one line
    which port is taken and which flag moves it; exit code 2."""
    var = tmp_path / "var"
    ports = free_ports(3)
    ports[["--ingest-port", "--vip-port", "--wallet-port"].index(which)] = impostor
    result = subprocess.run(demo(var, redis_url, "--count", "5", ports=ports), cwd=ROOT, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {impostor} " in lines[0] and f"{which} PORT" in lines[0], result.stderr
    assert not (var / "logs").exists()  # nothing started, nothing cleaned
