"""What a Redis failure loses of what the ingestor acknowledged, by appendfsync and replica_acks.

Each scenario starts a real group (``tests/integration/redis_group.py``: a
master, a replica and three sentinels, or a lone master), has 8 threads
accept notifications through intake (the ingestor's own code, on a client
built by ``worker.store.connection`` from ``redis.sentinels``) as fast as they
can, SIGKILLs the master after a second of load, keeps sending through the
failover (or the restart), then counts the acknowledged notifications the
surviving master does not hold. Prints one line per scenario and the rate of
acknowledgements before the kill (the cost of WAIT).

Scenarios: ``failover`` (the replica promoted), ``restart`` (a lone master
SIGKILLed and started again on its files: a process crash) and ``power`` (the
same, but its AOF first cut back to what the last fsync had made durable, as
recorded by the ``bench/fsync_log.c`` shim: the worst a power loss or kernel
crash leaves; needs ``cc``).

    python bench/failover_loss.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from producers.sim.patrons import crowd_patron  # noqa: E402
from producers.sim.sender import build_notification  # noqa: E402
from tests.integration.redis_group import MASTER_NAME, RedisGroup, redis_group  # noqa: E402
from worker.config import RedisSettings  # noqa: E402
from worker.errors import StoreError  # noqa: E402
from worker.notification import decode_body, parse_notification  # noqa: E402
from worker.store import keys  # noqa: E402
from worker.store.connection import connect  # noqa: E402
from worker.store.intake import Intake  # noqa: E402

PREFIX = "loss"
THREADS = 8


@dataclass
class Tally:
    """What the senders saw."""

    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _send(intake: Intake, worker: int, stop: threading.Event, tally: Tally) -> None:
    i = 0
    while not stop.is_set():
        tx = f"loss{worker:02d}x{i:07d}"
        raw = json.dumps(build_notification(crowd_patron(i % 10_000), "deposit", Decimal("60.00"),
                                            transaction_id=tx)).encode()
        note = parse_notification(decode_body(raw), "deposit")
        try:
            intake.accept("deposit", raw, note, None)
        except StoreError:
            with tally.lock:
                tally.refused += 1
            time.sleep(0.05)  # a refused delivery is not retried here: the figure counts acknowledged ones
        else:
            with tally.lock:
                tally.acknowledged.append(tx)
        i += 1


def _missing(group: RedisGroup, settings: RedisSettings, acknowledged: list[str]) -> int:
    client = connect(settings)
    try:
        pipe = client.pipeline(transaction=False)
        for tx in acknowledged:
            pipe.exists(keys.seen(PREFIX, "deposit", tx))
        return sum(1 for found in pipe.execute() if not found)
    finally:
        client.close()


def build_shim(folder: Path) -> Path | None:
    """bench/fsync_log.c compiled into ``folder``; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    out = folder / "fsync_log.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(ROOT / "bench" / "fsync_log.c"), "-ldl"],
                   check=True, capture_output=True)
    return out


def cut_to_last_fsync(group: RedisGroup, name: str, log: Path) -> int:
    """Truncate the server's AOF increment files to their size at their last fsync; the bytes cut."""
    synced: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            size, _, path = line.partition(" ")
            synced[path] = int(size)
    cut = 0
    for file in (group.workdir / name / "appendonlydir").glob("*.incr.aof"):
        keep = synced.get(str(file), 0)
        size = file.stat().st_size
        if size > keep:
            os.truncate(file, keep)
            cut += size - keep
    return cut


def scenario(appendfsync: str, replica_acks: int, kind: str, shim: Path | None = None) -> tuple[int, int, float, int]:
    """(acknowledged, lost, acknowledgements per second before the kill, refused) for one round."""
    failover = kind == "failover"
    replicas, sentinels = (1, 3) if failover else (0, 0)
    log = Path(tempfile.mkdtemp(prefix="vipflow-fsync-")) / "fsync.log"
    prefix = ["env", f"LD_PRELOAD={shim}", f"FSYNC_LOG={log}"] if kind == "power" and shim else None
    with redis_group(appendfsync=appendfsync, replicas=replicas, sentinels=sentinels, prefix=prefix) as group:
        master = group.master() if failover else group.data[0]
        assert master is not None
        settings = (RedisSettings(sentinels=group.addresses, master_name=MASTER_NAME) if failover
                    else RedisSettings(url=f"redis://{master.host}:{master.port}/0"))
        intakes = [Intake(connect(settings), PREFIX, queue=PREFIX, replica_acks=replica_acks,
                          replica_ack_timeout_ms=500) for _ in range(THREADS)]
        tally, stop = Tally(), threading.Event()
        threads = [threading.Thread(target=_send, args=(intakes[n], n, stop, tally)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # a second of steady load before the kill
        before = len(tally.acknowledged)
        master.kill()
        if failover:
            group.wait_failover(master)
        else:
            if kind == "power":
                cut_to_last_fsync(group, master.name, log)
            master.start(group.binary, group.prefix)  # a supervisor's restart: the same files, the AOF replayed
        time.sleep(0.5)  # and half a second of load on the survivor
        stop.set()
        for thread in threads:
            thread.join(30)
        lost = _missing(group, settings, tally.acknowledged)
        shutil.rmtree(log.parent, ignore_errors=True)
        return len(tally.acknowledged), lost, before / 1.0, tally.refused


def main() -> int:
    """Run every scenario ``--rounds`` times and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("failover", "everysec", 0), ("failover", "always", 0),
        ("failover", "everysec", 1), ("failover", "always", 1),
        ("restart", "everysec", 0), ("restart", "always", 0),
        ("power", "everysec", 0), ("power", "always", 0),
    ]
    shim_dir = Path(tempfile.mkdtemp(prefix="vipflow-shim-"))
    shim = build_shim(shim_dir)
    for kind, fsync, acks in cases:
        if kind == "power" and shim is None:
            print(f"power    appendfsync {fsync}: skipped, no C compiler for bench/fsync_log.c", flush=True)
            continue
        total = lost = refused = 0
        rates: list[float] = []
        for _ in range(args.rounds):
            acked, missing, rate, no = scenario(fsync, acks, kind, shim)
            total, lost, refused = total + acked, lost + missing, refused + no
            rates.append(rate)
        print(f"{kind:8s} appendfsync {fsync:8s} replica_acks {acks}: {lost} of {total} acknowledged lost "
              f"over {args.rounds} kills ({refused} refused with 503); {min(rates):.0f}-{max(rates):.0f} "
              "acknowledgements/s before the kill", flush=True)
    shutil.rmtree(shim_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
