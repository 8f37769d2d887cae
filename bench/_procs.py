"""Shared helpers for the benchmarks: child processes, free ports, Redis URLs, waiting.

Every child runs in its own session with its output in a log file (a pipe that
nobody reads would stall it), and ``Children`` stops them all, SIGTERM then
SIGKILL, whatever happens, Ctrl-C included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_url(url: str, db: int) -> str:
    """``url`` pointing at Redis database ``db`` (benchmarks never touch the developer's db 0)."""
    return urlunparse(urlparse(url)._replace(path=f"/{db}"))


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment for a vipflow child: this checkout on the path, no config file, ``extra`` set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPFLOW_")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "VIPFLOW_REDIS__URL": redis_url})
    env.update(extra)
    return env


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; RuntimeError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (OSError, ConnectionError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc), 0.0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of process ``pid`` and its live children (a prefork pool's processes)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            total += cpu_seconds(int(stat.parent.name))
    return total


def redis_cpu_seconds(client: Any) -> float:
    """CPU seconds (user + system) the Redis server has used so far, from INFO (any Redis, embedded too)."""
    info = client.info("cpu")
    return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Child:
    """One child process, its own session and its own log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        """Everything the child wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def check(self) -> None:
        """RuntimeError with the log's tail when the process has exited."""
        if not self.alive():
            tail = "\n".join(self.output().splitlines()[-20:])
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 10 s; close the log."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


class Children:
    """The children of one benchmark, stopped together on exit (a context manager)."""

    def __init__(self, keep_logs: bool = False):
        self.log_dir = Path(tempfile.mkdtemp(prefix="vipflow-bench-"))
        self.keep_logs = keep_logs
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Start ``python args...`` as child ``name``."""
        child = Child(name, [sys.executable, *args], env, self.log_dir)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        """Stop every child, last started first."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


def sigterm_as_interrupt() -> None:
    """Make SIGTERM stop a benchmark as cleanly as Ctrl-C (the finally blocks run)."""
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


# The simulator binds its listening sockets itself (producers.sim.server._bind) without
# TCP_NODELAY, and sockets handed to uvicorn that way keep Nagle on: every request on a
# kept-alive connection then waits for the client's delayed ACK, about 40 ms (measured:
# 44 ms per wallet call, 1 ms with TCP_NODELAY). Until _bind sets it, the benchmarks start
# the simulator with that one option added, so they measure vipflow and not a stall of the
# simulator. Harmless once _bind sets it itself.
_SIM_NODELAY = """
import socket, sys
import producers.sim.server as server
_bind = server._bind
def _bind_nodelay(host, port):
    sock = _bind(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
server._bind = _bind_nodelay
from producers.sim.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def start_sim(env: dict[str, str], *args: str, timeout_s: float = 20) -> Any:
    """The VIP + wallet simulator on free ports, TCP_NODELAY on (see above); a SimProcess."""
    import json

    from producers.sim.server import SimProcess

    cmd = [sys.executable, "-c", _SIM_NODELAY, "--host", "127.0.0.1", "--vip-port", "0", "--wallet-port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline() if proc.stdout is not None else ""
    if not line:
        proc.wait(5)
        raise RuntimeError(f"the simulator exited with {proc.returncode} before it was ready")
    urls = json.loads(line)
    sim = SimProcess(proc, urls["vip"], urls["wallet"])
    try:
        wait_for(lambda: sim.stats() is not None, timeout_s, "the simulator's /sim/stats", poll_s=0.05)
    except BaseException:
        sim.stop()
        raise
    return sim
