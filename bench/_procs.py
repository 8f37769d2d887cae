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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


# The simulator starts as `python -m producers.sim`; its listening sockets have TCP_NODELAY on
# (producers.listen.bind, nodelay=True): without it every request on a kept-alive connection waits
# for the client's delayed ACK, about 40 ms (measured: 44 ms per wallet call, 1 ms with it).
_SIM_NODELAY = """
import sys
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


def run_streaming(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
                  prefix: str = "  ", grace_s: float = 90) -> tuple[int, str]:
    """Run ``cmd`` in a session of its own, printing its output as it comes (each line after ``prefix``);
    its exit code and output (124 on timeout). On timeout, Ctrl-C or SIGTERM its process group gets
    SIGTERM (a benchmark stops its own children then, up to 15 s each), SIGKILL ``grace_s`` later."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(prefix + line.rstrip(), flush=True)
            lines.append(line)
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(cmd, timeout_s)
        proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        lines.append(f"(stopped after {timeout_s:.0f} s)\n")
        return 124, "".join(lines)
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
    return proc.returncode, "".join(lines)


# The application_name of the benchmark's own PostgreSQL connections (its reads of the ledger and
# the CPU monitor below): they are never counted as the ledger's work.
BENCH_APP = "vipflow-bench"
STATS_SETTLE_S = 1.5


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _proc_stat(int(stat.parent.name))
        if fields is not None and fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


@dataclass(frozen=True)
class PostgresCpuUse:
    """CPU seconds the PostgreSQL server spent while a run lasted, by whom (see ``PostgresCpu``)."""

    database: str
    backends: float  # the database's own server processes (client backends, autovacuum workers, ...)
    backend_count: int
    rest: float  # the rest of the server: background processes, the postmaster, backends gone between samples
    background: tuple[str, ...]  # the background processes' names (checkpointer, walwriter, ...)
    others: float  # other databases' sessions, sampled (not the ledger's; not counted)
    other_commits: int  # transactions committed in other databases meanwhile (0: the server was ours)
    commits: int = 0  # the database's committed transactions meanwhile (the monitor's own taken out)
    inserted: int = 0  # rows the database inserted meanwhile
    updated: int = 0  # rows the database updated meanwhile

    @property
    def ledger(self) -> float:
        """The ledger's share: its backends plus the rest of the server (all of it ours when others idle)."""
        return self.backends + self.rest


class PostgresCpu:
    """CPU of the PostgreSQL server processes serving ``url``'s database while a run lasts (Linux /proc,
    the server on this machine).

    ``start()`` takes a baseline; a thread then samples ``pg_stat_activity`` (pid, datname, backend_type,
    application_name) every ``period_s`` and reads each server process's /proc/<pid>/stat; ``stop()``
    samples once more (call it before the database's clients stop) and returns a ``PostgresCpuUse``:

    - backends: the database's server processes, each from its first sample (0 for one born during the
      run) to its last;
    - rest: the whole server's CPU (the postmaster, its live children and the children it reaped, from
      /proc's cutime/cstime) minus the backends above, minus the benchmark's own connections
      (``application_name`` = BENCH_APP) and other databases' sessions seen: the background processes
      (checkpointer, background writer, walwriter, launchers), the postmaster's forks, and backends that
      ended between two samples. Work of other databases' short sessions would land here too:
      ``other_commits`` tells whether there was any.

    And the database's own work from ``pg_stat_database`` (read STATS_SETTLE_S after the last sample:
    a backend reports its counts about a second after it goes idle): commits, rows inserted and updated.
    """

    def __init__(self, url: str, period_s: float = 0.2):
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        self.database = parsed.database or ""
        self.conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.period_s = period_s
        self._seen: dict[int, tuple[str, str, float, float]] = {}  # pid -> (kind, name, first, last)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._postmaster = 0
        self._server0 = 0.0
        self._commits0: dict[str, tuple[int, int, int]] = {}
        self._statements = 0  # the monitor's own (autocommit: one commit each)
        self.missed = 0  # samples that failed (a backend gone between the query and /proc, say)

    def _server_cpu(self) -> float:
        """The postmaster, the children it reaped, and its live children: CPU seconds so far."""
        fields = _proc_stat(self._postmaster)
        if fields is None:
            raise RuntimeError(f"PostgreSQL's postmaster (pid {self._postmaster}) is gone")
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        total = ticks / os.sysconf("SC_CLK_TCK")
        return total + sum(cpu_seconds(pid) for pid in _children_of(self._postmaster))

    def _commits(self) -> dict[str, tuple[int, int, int]]:
        """database -> (commits, rows inserted, rows updated) so far."""
        self._statements += 1
        rows = self._conn.execute("SELECT datname, xact_commit, tup_inserted, tup_updated FROM pg_stat_database "
                                  "WHERE datname IS NOT NULL")
        return {name: (int(c), int(i), int(u)) for name, c, i, u in rows.fetchall()}

    def _sample(self, first: bool) -> None:
        self._statements += 1
        rows = self._conn.execute("SELECT pid, datname, backend_type, application_name FROM pg_stat_activity")
        with self._lock:
            for pid, datname, backend_type, app in rows.fetchall():
                kind = ("own" if app == BENCH_APP else "db" if datname == self.database else
                        "background" if datname is None and backend_type != "client backend" else "other")
                now = cpu_seconds(pid)
                if pid in self._seen:
                    k, name, start, _ = self._seen[pid]
                    self._seen[pid] = (k, name, start, max(now, self._seen[pid][3]))
                else:
                    self._seen[pid] = (kind, backend_type or "", now if first else 0.0, now)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self._sample(False)
            except Exception:  # noqa: BLE001 - a missed sample only loses precision; stop() samples again
                self.missed += 1

    def start(self) -> None:
        """Connect (to the same database, as BENCH_APP), find the postmaster, take the baseline."""
        import psycopg

        self._conn = psycopg.connect(self.conninfo, autocommit=True, application_name=BENCH_APP)
        pid = int(self._conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        fields = _proc_stat(pid)
        if fields is None:
            self._conn.close()
            raise RuntimeError("PostgreSQL's processes are not on this machine (no /proc entry for its backend): "
                               "its CPU cannot be measured; run the server locally")
        self._postmaster = int(fields[1])
        self._commits0 = self._commits()
        self._server0 = self._server_cpu()
        self._sample(True)
        self._thread = threading.Thread(target=self._loop, name="pg-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> PostgresCpuUse:
        """The last sample (before the database's clients stop), then the figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._sample(False)
            server = self._server_cpu() - self._server0
            time.sleep(STATS_SETTLE_S)
            commits = self._commits()
        finally:
            self._conn.close()
        by_kind: dict[str, float] = {}
        names: set[str] = set()
        count = 0
        for kind, name, first, last in self._seen.values():
            by_kind[kind] = by_kind.get(kind, 0.0) + last - first
            count += kind == "db"
            if kind == "background":
                names.add(name)
        backends = by_kind.get("db", 0.0)
        rest = max(0.0, server - backends - by_kind.get("own", 0.0) - by_kind.get("other", 0.0))
        # Ours: the samples and the commit counts read in this database (one transaction each).
        other_commits = sum(n[0] - self._commits0.get(db, (0, 0, 0))[0]
                            for db, n in commits.items() if db != self.database)
        ours = [a - b for a, b in zip(commits.get(self.database, (0, 0, 0)),
                                      self._commits0.get(self.database, (0, 0, 0)), strict=True)]
        return PostgresCpuUse(self.database, backends, count, rest, tuple(sorted(names)),
                              by_kind.get("other", 0.0), other_commits,
                              max(0, ours[0] - self._statements + 1), ours[1], ours[2])
