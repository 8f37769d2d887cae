"""vipflow across five hosts (network namespaces on one bridge), one worker host's link cut mid-load.

Hosts: ``data`` (redis-server and a private PostgreSQL cluster, the ledger),
``ingest`` (``vipflow ingest``), ``w1`` and ``w2`` (``vipflow worker`` each)
and ``vip`` (``vipflow sim``, VIP Connect and the wallet). The test's own
namespace is on the bridge too and plays VIP Connect's notifier. Each host
has its own loopback and ports, so the services listen on their usual ports.
Proven: every acknowledged notification is decided once; with ``w1``'s link
down mid-load nothing acknowledged is lost and nothing is approved twice
(``w2`` takes over what ``w1`` held once its locks expire and the broker or
the recovery sweep gives the tasks back); ``w1`` rejoins when the link is
back and approves nothing again.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import create_pg_database
from tests.integration.failover_load import Load
from tests.integration.harness import Proc, wait_until
from tests.integration.netns import Host, Network, network, postgres_binaries, unavailable
from tests.integration.redis_group import redis_server_binary
from worker.config import WorkerSettings
from worker.ledger import tables
from worker.ledger.schema import make_engine, upgrade

pytestmark = pytest.mark.integration

FINAL = ("approved", "rejected", "review", "failed", "expired")
RECOVERY = "recover_after_s" in WorkerSettings.model_fields  # issue 9 item 1 (branch recovery)
OPERATOR = "op-hosts"


@pytest.fixture
def net() -> Iterator[Network]:
    """A bridge for hosts, removed after the test; skipped (failed under CI) where hosts cannot be built."""
    why = unavailable()
    if why is None and redis_server_binary() is None:
        why = "no redis-server binary"
    if why is None and postgres_binaries() is None:
        why = "no PostgreSQL binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin"
    if why is None and os.geteuid() == 0 and not _has_user("postgres"):
        why = "no user postgres to run the private PostgreSQL cluster as (PostgreSQL refuses to run as root)"
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot build hosts in network namespaces: {why}; CI must be able to")
        pytest.skip(f"cannot build hosts in network namespaces: {why}")
    with network() as built:
        yield built


def start_postgres(host: Host, subnet: str, folder: Path) -> Proc:
    """A private PostgreSQL cluster (initdb) inside ``host``, on its address, port 5432, trusting the subnet."""
    binaries = postgres_binaries()
    assert binaries is not None
    data = folder / "pgdata"
    data.mkdir()
    os.chown(folder, _uid("postgres"), -1)
    os.chown(data, _uid("postgres"), -1)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    with open(data / "pg_hba.conf", "a", encoding="utf-8") as hba:
        hba.write(f"host all all {subnet}.0/24 trust\n")
    proc = host.start([*as_postgres, str(binaries / "postgres"), "-D", str(data), "-p", "5432",
                       "-c", f"listen_addresses={host.address}", "-c", f"unix_socket_directories={data}"],
                      dict(os.environ))

    def answers() -> bool:
        try:
            with psycopg.connect(host=host.address, port=5432, user="postgres", dbname="postgres", connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    wait_until(lambda: answers() or proc.process.poll() is not None, 30, "PostgreSQL on the data host")
    assert proc.process.poll() is None, "\n".join(proc.lines[-20:])
    return proc


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def _has_user(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def decided_counts(url: str, ids: list[str]) -> dict[str, int]:
    """Per transaction, how many ``decided`` events the ledger holds."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(tables.events.c.transaction_id, func.count())
                                .where(tables.events.c.kind == "decided", tables.events.c.transaction_id.in_(ids))
                                .group_by(tables.events.c.transaction_id))
            return {str(tx): int(n) for tx, n in rows}
    finally:
        engine.dispose()


def states(url: str, ids: list[str]) -> dict[str, str]:
    """Per transaction in the ledger, its state."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(tables.transactions.c.transaction_id, tables.transactions.c.state)
                                .where(tables.transactions.c.transaction_id.in_(ids)))
            return {str(tx): str(state) for tx, state in rows}
    finally:
        engine.dispose()


@dataclass
class Hosts:
    """The services started on the five hosts: where they answer and their processes."""

    ledger: str
    vip_url: str
    ingest_url: str
    workers: dict[str, Proc]
    procs: list[Proc] = field(default_factory=list)


def _env(net: Network, key: bytes, ledger: str) -> dict[str, str]:
    data, ingest, vip = net.hosts["data"], net.hosts["ingest"], net.hosts["vip"]
    env = {
        **os.environ,
        "VIPFLOW_REDIS__URL": f"redis://{data.address}:6379/0",
        "VIPFLOW_DATABASE__URL": ledger,
        "VIPFLOW_VIP__BASE_URL": f"http://{vip.address}:8090",
        "VIPFLOW_WALLET__URL": f"http://{vip.address}:8091",
        "VIPFLOW_VIP__OPERATOR_ID": OPERATOR,
        "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(key).decode(),
        "VIPFLOW_VIP__TIMEOUT_S": "3",
        "VIPFLOW_VIP__BACKOFF_BASE_S": "0.05",
        "VIPFLOW_VIP__BACKOFF_MAX_S": "0.5",
        "VIPFLOW_INGEST__AUTH__ISSUER": OPERATOR,
        "VIPFLOW_INGEST__HOST": ingest.address,
        "VIPFLOW_INGEST__PORT": "8080",
        "VIPFLOW_WORKER__CONCURRENCY": "4",
        "VIPFLOW_WORKER__LOCK_TTL_S": "5",
        "VIPFLOW_WORKER__RECOVER_AFTER_S": "2",
        "VIPFLOW_WORKER__VISIBILITY_TIMEOUT_S": "60",
        # The cut host keeps trying to reach Redis until its link is back, rather than exit.
        "VIPFLOW_WORKER__BROKER_CONNECT_TIMEOUT_S": "600",
        "VIPFLOW_LOG__LEVEL": "INFO",
    }
    env.pop("VIPFLOW_CONFIG", None)
    return env


def start_hosts(net: Network, folder: str, key: bytes, started: list[Proc]) -> Hosts:
    """Redis and PostgreSQL (the ledger, migrated) on ``data``, then the simulator, the ingestor and a worker
    on each worker host, each waited for; every process is appended to ``started`` as it starts."""
    data, ingest, vip = net.hosts["data"], net.hosts["ingest"], net.hosts["vip"]
    redis_binary = redis_server_binary()
    assert redis_binary is not None
    started.append(data.start([redis_binary, "--port", "6379", "--bind", data.address, "--protected-mode", "no",
                               "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", folder],
                              dict(os.environ)))
    started.append(start_postgres(data, net.subnet, Path(folder)))
    ledger = create_pg_database(f"postgresql+psycopg://postgres@{data.address}:5432/vipflow")
    engine = make_engine(ledger)
    upgrade(engine)
    engine.dispose()
    env = _env(net, key, ledger)
    started.append(vip.start([sys.executable, "-m", "producers.sim", "--host", vip.address, "--vip-port", "8090",
                              "--wallet-port", "8091"], env))
    vip_url = f"http://{vip.address}:8090"
    wait_until(lambda: requests.get(f"{vip_url}/sim/stats", timeout=1).ok, 30, "the simulator on its host")
    started.append(ingest.start([sys.executable, "-m", "producers", "ingest"], env))
    ingest_url = f"http://{ingest.address}:8080"
    wait_until(lambda: requests.get(f"{ingest_url}/readyz", timeout=1).ok, 30, "the ingestor on its host")
    workers = {}
    for role in ("w1", "w2"):
        workers[role] = net.hosts[role].start([sys.executable, "-m", "producers", "worker"], env)
        started.append(workers[role])
    for worker in workers.values():
        wait_until(lambda w=worker: w.saw(" ready.") or w.process.poll() is not None, 60,  # type: ignore[misc]
                   "a worker to be ready on its host")
        assert worker.process.poll() is None, "\n".join(worker.lines[-30:])
    return Hosts(ledger, vip_url, ingest_url, workers, started)


def decided_lines(worker: Proc) -> int:
    """How many decisions the worker has logged."""
    return sum(1 for line in list(worker.lines) if '"msg": "decided"' in line)


@pytest.mark.timeout(240)
def test_five_hosts_decide_once_and_a_cut_worker_link_loses_nothing(net: Network) -> None:
    """Across five hosts, every acknowledged notification is decided once, and one worker host's link cut
    mid-load loses nothing and approves nothing twice."""
    for role in ("data", "ingest", "w1", "w2", "vip"):
        net.add(role)
    procs: list[Proc] = []
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="vipflow-hosts-") as folder:
        try:
            hosts = start_hosts(net, folder, key, procs)
            first, second, ledger = hosts.workers["w1"], hosts.workers["w2"], hosts.ledger
            load = Load(hosts.ingest_url, key, OPERATOR, count=160, rate=30, prefix="nethosts")
            ids = load.transaction_ids()
            sender = load.start(deadline_s=60)
            wait_until(lambda: len(load.acknowledged) >= 50 and decided_lines(first) > 0, 30,
                       "50 notifications acknowledged and w1 deciding")
            net.cut("w1")
            cut_at = time.monotonic()
            by_w2_at_cut = decided_lines(second)

            def finished() -> int:
                return len([s for s in states(ledger, ids).values() if s in FINAL])

            def report() -> str:
                now = states(ledger, ids)
                left = {tx: now.get(tx) for tx in ids if now.get(tx) not in FINAL}
                return (f"{len(left)} not final: {dict(list(left.items())[:8])}\nw1:\n" + "\n".join(first.lines[-25:])
                        + "\nw2:\n" + "\n".join(second.lines[-25:]))

            sender.join(70)
            assert not sender.is_alive()
            assert load.acknowledged == set(ids), load.statuses()  # the ingestor and Redis were never cut
            by_w1 = decided_lines(first)
            try:
                if RECOVERY:
                    # w2 finishes everything, w1's share included: the tasks w1 held are queued again by the
                    # recovery sweep once their locks expire.
                    wait_until(lambda: finished() == len(ids), 60, "every notification decided with w1 cut off")
                    by_w2_during_cut = decided_lines(second) - by_w2_at_cut
                    net.restore("w1")
                else:
                    # Without the recovery sweep (issue 9 item 1) the tasks w1 held wait for it; w2 goes on with
                    # the rest meanwhile, then w1's link comes back.
                    wait_until(lambda: finished() >= len(ids) - 12, 60, "w2 to decide all but what w1 held")
                    by_w2_during_cut = decided_lines(second) - by_w2_at_cut
                    net.restore("w1")
                    wait_until(lambda: finished() == len(ids), 100, "every notification decided once w1 is back")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{report()}") from None
            took_s = time.monotonic() - cut_at
            assert first.process.poll() is None, "\n".join(first.lines[-30:])
            assert by_w1 > 0 and by_w2_during_cut > 0  # both worked; w2 carried on while w1 was cut off

            decided = decided_counts(ledger, ids)
            assert decided == dict.fromkeys(ids, 1), {tx: n for tx, n in decided.items() if n != 1}
            final = states(ledger, ids)
            approvals = requests.get(f"{hosts.vip_url}/sim/stats", timeout=5).json()["approvals"]
            assert not {tx: n for tx, n in approvals.items() if n > 1}
            approved = {tx for tx, state in final.items() if state == "approved"}
            assert approved == {tx for tx in ids if approvals.get(tx) == 1}
            print(f"several hosts: {len(ids)} acknowledged, {len(approved)} approved once; w1 decided {by_w1} "
                  f"before its link was cut, w2 {by_w2_during_cut} while it was; all final {took_s:.0f} s after "
                  "the cut")
        finally:
            for proc in reversed(procs):
                proc.kill()
