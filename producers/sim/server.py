"""Run the VIP and wallet simulators in one process, and start that process for tests.

Both apps run as uvicorn servers in one asyncio loop on sockets bound before
start (port 0 picks a free port), so the ready line printed on stdout,
``{"vip": "http://...", "wallet": "http://..."}``, always names the real ports.
SIGINT and SIGTERM stop both servers cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from producers.listen import bind
from worker.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def run_simulator(
    settings: Settings,
    *,
    host: str,
    vip_port: int,
    wallet_port: int,
    faults: dict[str, Any] | None = None,
    seed: int | None = None,
) -> None:
    """Serve the VIP app and the wallet app until SIGINT/SIGTERM; ListenError naming the port and its
    option when either port cannot be listened on."""
    import uvicorn

    from producers.sim.state import SimState
    from producers.sim.vip_app import build_vip_app
    from producers.sim.wallet_app import build_wallet_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the loop below owns the signals, for both servers at once

    vip_app = build_vip_app(settings, SimState(faults, seed))
    wallet_app = build_wallet_app(settings)
    # Accepted sockets inherit TCP_NODELAY: without it every answer on a kept-alive connection waits ~40 ms
    # for the client's delayed ACK (Nagle), which dwarfs the latency the simulator is asked to add.
    socks = [bind(host, vip_port, port_option="--vip-port", host_option="--host", nodelay=True)]
    try:
        socks.append(bind(host, wallet_port, port_option="--wallet-port", host_option="--host",
                          nodelay=True))
    except BaseException:
        socks[0].close()
        raise
    servers = [
        _Server(
            uvicorn.Config(
                app, log_level="warning", access_log=False, lifespan="off", backlog=1024, timeout_keep_alive=30
            )
        )
        for app in (vip_app, wallet_app)
    ]

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(s.serve(sockets=[k])) for s, k in zip(servers, socks, strict=True)]
        while not all(s.started for s in servers) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        ports = [k.getsockname()[1] for k in socks]
        print(json.dumps({"vip": f"http://{host}:{ports[0]}", "wallet": f"http://{host}:{ports[1]}"}), flush=True)
        await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
    finally:
        for k in socks:
            k.close()


@dataclass
class SimProcess:
    """A simulator running as a child process (for tests and benchmarks)."""

    process: subprocess.Popen[str]
    vip_url: str
    wallet_url: str

    def stats(self) -> dict[str, Any]:
        """The VIP app's /sim/stats."""
        data: dict[str, Any] = requests.get(f"{self.vip_url}/sim/stats", timeout=5).json()
        return data

    def faults(self, doc: dict[str, Any]) -> None:
        """POST a faults document (see producers.sim.state)."""
        requests.post(f"{self.vip_url}/sim/faults", json=doc, timeout=5).raise_for_status()

    def reset(self) -> None:
        """Reset both apps."""
        for url in (self.vip_url, self.wallet_url):
            requests.post(f"{url}/sim/reset", timeout=5).raise_for_status()

    def stop(self) -> int:
        """SIGTERM the child and wait; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def start_simulator(
    env: dict[str, str],
    *,
    args: tuple[str, ...] = (),
    timeout_s: float = 20,
) -> SimProcess:
    """Start ``python -m producers.sim`` on free ports with ``env`` added; wait until it answers."""
    cmd = [sys.executable, "-m", "producers.sim", "--host", "127.0.0.1", "--vip-port", "0", "--wallet-port", "0", *args]
    # The command is this interpreter running our own module: no untrusted input.
    proc = subprocess.Popen(  # noqa: S603
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout is not None else ""  # the ready line, or EOF if it died
    if not line:
        proc.wait(5)
        raise RuntimeError(f"the simulator exited with {proc.returncode} before it was ready")
    urls = json.loads(line)
    sim = SimProcess(proc, urls["vip"], urls["wallet"])
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sim.stats()
            return sim
        except requests.RequestException:
            if time.monotonic() > deadline:
                sim.stop()
                raise RuntimeError("the simulator did not answer /sim/stats in time") from None
            time.sleep(0.05)
