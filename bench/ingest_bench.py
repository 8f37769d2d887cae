"""Ingestor benchmark: a paced 1,000 req/s load of signed, valid, unique notifications.

Starts ``vipflow ingest`` as a subprocess on a free loopback port, with its own
Redis database (flushed before and after), and drives it from this process over
keep-alive connections. Latency is measured from each request's *scheduled*
send time to its complete response, so a stalled server cannot hide its
backlog (no coordinated omission). Prints achieved req/s, p50, p99 and whether
the targets (1,000 req/s, p99 < 10 ms) are met.

Then, saturated (each connection sends its next request as soon as the last is
answered), side by side in the same run: the ingestor, and a bare Starlette
endpoint under the same uvicorn settings that only pushes the body to Redis
(LPUSH, on the event loop, as the ingestor calls intake). Prints both rates and
their ratio (target: the ingestor at least 0.35 of the bare endpoint; issue 9).

    python bench/ingest_bench.py [--rate 1000] [--seconds 8] [--redis redis://127.0.0.1:6379/12]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.tokens import mint  # noqa: E402

KEY = b"bench-secret-key-32-bytes-long!!"
TARGET_RATE, TARGET_P99_MS = 1000, 10.0
TARGET_RATIO = 0.35  # the ingestor's saturated rate over the bare push endpoint's
BARE_KEY = "bench:bare"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIPFLOW_REDIS__URL": redis_url, "VIPFLOW_INGEST__PORT": str(port),
           "VIPFLOW_VIP__SECRET_KEY1": base64.b64encode(KEY).decode(),
           "VIPFLOW_LOG__LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    env.pop("VIPFLOW_CONFIG", None)
    code = "from producers.ingest.server import serve; from worker.config import load_settings; serve(load_settings())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the ingestor did not start within 20 s")


def bare_server(port: int, redis_url: str) -> None:
    """The baseline: a Starlette endpoint that reads the body and LPUSHes it to Redis, nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    client = redis.Redis.from_url(redis_url)

    async def push(request: Request) -> Response:
        client.lpush(BARE_KEY, await request.body())
        return JSONResponse({"status": "accepted"})

    app = Starlette(routes=[Route("/vip/notify/deposit", push, methods=["POST"])])
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_config=None,
                                  server_header=False, proxy_headers=False)).run()


def start_bare(port: int, redis_url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port),
                             "--redis", redis_url], cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the bare endpoint did not start within 20 s")


async def saturate(port: int, requests: list[bytes], conns: int, seconds: float) -> tuple[int, int, float]:
    """Closed loop: each connection sends its next request when the last was answered, for ``seconds``;
    (answers, 200s, elapsed seconds)."""
    answered, ok = 0, 0
    it = iter(requests)
    start = time.perf_counter()
    stop_at = start + seconds

    async def conn() -> None:
        nonlocal answered, ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for payload in it:
                if time.perf_counter() >= stop_at:
                    return
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                answered += 1
                ok += head.split(b" ", 2)[1] == b"200"
        finally:
            writer.close()

    await asyncio.gather(*(conn() for _ in range(conns)))
    return answered, ok, time.perf_counter() - start


def saturated_rates(redis_url: str, seconds: float, conns: int) -> tuple[float, float]:
    """The bare endpoint's and the ingestor's saturated req/s, measured in turns (bare, ingest, bare,
    ingest): each the mean of its two turns."""
    db = redis.Redis.from_url(redis_url)
    rates: dict[str, list[float]] = {"bare": [], "ingest": []}
    for turn in ("bare", "ingest", "bare", "ingest"):
        db.flushdb()
        port = free_port()
        server = start_bare(port, redis_url) if turn == "bare" else start_server(port, redis_url)
        try:
            asyncio.run(drive(port, build_requests(200, port), 500, 8))  # warm up
            answered, ok, elapsed = asyncio.run(saturate(port, build_requests(60_000, port), conns, seconds))
            if ok != answered:
                raise SystemExit(f"{turn}: {answered - ok} of {answered} answers were not 200")
            rates[turn].append(answered / elapsed)
        finally:
            server.terminate()
            server.wait(10)
            db.flushdb()
    return sum(rates["bare"]) / 2, sum(rates["ingest"]) / 2


def build_requests(n: int, port: int) -> list[bytes]:
    token = mint(KEY, "", "vip-api", 900)
    run = int(time.time()) % 100000
    out = []
    for i in range(n):
        body = json.dumps({
            "TransactionId": f"b{run:05d}{i:08d}", "Amount": "89.76", "VipCardNumber": "7210642759",
            "PatronId": "1234567890", "TransactionType": "deposit", "ProductType": "Preferred",
            "OperatorLimits": {"MinDeposit": 10.00, "MaxDeposit": 99999.99},
        }).encode()
        head = (f"POST /vip/notify/deposit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def drive(port: int, requests: list[bytes], rate: float, conns: int) -> tuple[list[float], list[int], float]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: list[int] = []

    async def one(payload: bytes, scheduled: float) -> None:
        reader, writer = await pool.get()
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        statuses.append(int(head.split(b" ", 2)[1]))
        pool.put_nowait((reader, writer))

    tasks = []
    start = time.perf_counter()
    for i, payload in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payload, scheduled)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies, statuses, elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--saturate-seconds", type=float, default=5.0)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server, args.redis)
        return 0
    n = min(int(args.rate * args.seconds), 20000)
    db = redis.Redis.from_url(args.redis)
    db.flushdb()
    port = free_port()
    server = start_server(port, args.redis)
    try:
        warm = build_requests(200, port)
        asyncio.run(drive(port, warm, 500, 8))  # first publish, Lua script load, imports
        db.flushdb()
        cpu_before = cpu_seconds(server.pid)
        latencies, statuses, elapsed = asyncio.run(drive(port, build_requests(n, port), args.rate, args.connections))
        queued = db.llen("vipflow")
        server_cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(10)
        db.flushdb()
    latencies.sort()
    achieved = len(latencies) / elapsed
    p50, p99 = pct(latencies, 0.50), pct(latencies, 0.99)
    ok = sum(1 for s in statuses if s == 200)
    print(f"requests   {len(latencies)} in {elapsed:.2f} s over {args.connections} connections")
    print(f"achieved   {achieved:.0f} req/s (target {TARGET_RATE})")
    print(f"latency    p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {latencies[-1] * 1000:.2f} ms"
          f" (p99 target < {TARGET_P99_MS} ms)")
    print(f"server CPU {server_cpu / elapsed * 100:.0f}% of one core,"
          f" {server_cpu / max(len(latencies), 1) * 1e6:.0f} us per request")
    print(f"answers    {ok} x 200, {len(statuses) - ok} other; task messages queued: {queued}")
    bare, ingest = saturated_rates(args.redis, args.saturate_seconds, args.connections)
    ratio = ingest / bare
    print(f"saturated  bare push endpoint {bare:.0f} req/s, ingestor {ingest:.0f} req/s")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"ratio      ingestor / bare {ratio:.2f}  target >= {TARGET_RATIO}: {verdict}")
    met = (achieved >= TARGET_RATE * 0.98 and p99 < TARGET_P99_MS and ok == n and queued == n
           and ratio >= TARGET_RATIO)
    print("targets    MET" if met else "targets    NOT MET")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
