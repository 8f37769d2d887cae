"""Helpers for tests that run ``vipflow worker`` itself (metrics port, pools) rather than ``celery -A worker``."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Proc, Stack, wait_until


def start_vipflow_worker(stack: Stack, *, pool: str, concurrency: int, metrics_port: int | None,
                         timeout_s: float = 40, **env: str) -> Proc:
    """Start ``vipflow worker`` with the stack's settings; wait for Celery's ready line and the metrics port
    (``metrics_port`` None: metrics off)."""
    proc = Proc([sys.executable, "-m", "producers", "worker", "--pool", pool, "--concurrency", str(concurrency),
                 "--queue", stack.prefix],
                {**stack.env, "VIPFLOW_WORKER__METRICS_PORT": "off" if metrics_port is None else str(metrics_port),
                  **env})
    wait_until(lambda: proc.saw(" ready.") or proc.process.poll() is not None, timeout_s,
               "vipflow worker to be ready")
    assert proc.process.poll() is None, "\n".join(proc.lines[-30:])
    if metrics_port:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).ok, 10,
                   "the worker's metrics port")
    return proc


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample on ``/metrics`` of ``127.0.0.1:port``: name -> sorted label pairs -> value."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for k, v in samples.get(name, {}).items() if set(labels.items()) <= set(k))


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) comes after the parenthesised command name, which may hold spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
