"""``vipflow sim``: run the VIP Connect and wallet simulators, or send notifications."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from producers.commands.numbers import number, whole
from worker.errors import ConfigError, InputError


def add_options(parser: argparse.ArgumentParser) -> None:
    """The sim command's options (shared by ``vipflow sim`` and ``python -m producers.sim``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--vip-port",
        type=whole(0, 65535),
        default=None,
        help="VIP API port (default: the port of vip.base_url, else 8090; 0 = any)",
    )
    parser.add_argument(
        "--wallet-port",
        type=whole(0, 65535),
        default=None,
        help="wallet port (default: the port of wallet.url, else 8091; 0 = any)",
    )
    parser.add_argument("--latency-ms", type=number(0), default=None, help="latency added to every answer")
    parser.add_argument("--error-rate", type=number(0, 1), default=None, help="share of calls answered 500")
    parser.add_argument("--timeout-ms", type=number(0), default=None, help="sleep before every answer")
    parser.add_argument("--faults", type=Path, default=None, help="JSON faults document to start with")
    parser.add_argument("--seed", type=int, default=None, help="random seed (faults, sending)")
    parser.add_argument(
        "--send",
        type=whole(1),
        nargs="?",
        const=1,
        default=None,
        metavar="N",
        help="send N signed notifications to --target instead of serving (N defaults to 1)",
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help="with --send: send the notification in this JSON file, as it is, and print the answer",
    )
    parser.add_argument(
        "--kind",
        choices=("deposit", "withdraw", "error"),
        default=None,
        help="with --file: the route to post to (default: the body's TransactionType)",
    )
    parser.add_argument("--rate", type=number(0, above=True), default=50.0, help="notifications per second (--send)")
    parser.add_argument("--target", default=None, help="ingestor base URL (default from ingest.*)")
    parser.add_argument("--rich", action="store_true",
                        help="with --send N: withdrawals carry the PatronId too (by default they have VIP's "
                             "documented shape, without it: the worker finds the patron)")
    parser.add_argument("--for-sessions", action="store_true",
                        help="with --send: one notification per patron session the simulator at vip.base_url "
                             "opened (their transaction ids, patrons, cards and amounts)")
    parser.add_argument("--labels", type=Path, default=None, metavar="FILE",
                        help="write a labels CSV (transaction_id,label,date) for the settled transactions in the "
                             "ledger (database.url): plausible ACH returns, chargebacks, confirmed fraud and good, "
                             "the same for the same --seed; for `vipflow labels import`")
    parser.set_defaults(func=run)


def add_parser(subparsers: Any) -> None:
    """Register ``sim`` on the vipflow command line."""
    parser = subparsers.add_parser(
        "sim", help="run the VIP Connect simulator or send notifications", description=__doc__
    )
    add_options(parser)


def _port(url: str, default: int) -> int:
    return urlparse(url).port or default


def _faults(args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if args.faults is not None:
        try:
            doc = json.loads(args.faults.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError("--faults", f"cannot read a JSON faults document ({exc})") from None
    for name in ("latency_ms", "error_rate", "timeout_ms"):
        if getattr(args, name) is not None:
            doc[name] = getattr(args, name)
    return doc


def run(args: argparse.Namespace) -> int:
    """Serve the simulators (or send notifications with --send); the exit code. A taken port is a
    ListenError naming it, reported by the caller (``producers.exits``)."""
    from worker.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    if args.labels is not None:
        return _write_labels(args, settings)
    if args.file is not None and args.send is None:
        raise InputError("--file goes with --send: vipflow sim --send --file FILE")
    if args.rich and (args.send is None or args.file is not None):
        raise InputError("--rich goes with --send N (random notifications): vipflow sim --send 10 --rich")
    if args.send is not None:
        return _send(args, settings)
    from producers.sim.server import run_simulator

    vip_port = args.vip_port if args.vip_port is not None else _port(settings.vip.base_url, 8090)
    wallet_port = args.wallet_port if args.wallet_port is not None else _port(settings.wallet.url, 8091)
    run_simulator(
        settings, host=args.host, vip_port=vip_port, wallet_port=wallet_port, faults=_faults(args), seed=args.seed
    )
    return 0


def _write_labels(args: argparse.Namespace, settings: Any) -> int:
    """Write the simulator's labels CSV for the ledger's settled transactions; say how many of each."""
    from producers.sim.labels import write_labels
    from worker.ledger import Ledger

    if args.send is not None:
        raise InputError("--labels writes a file from the ledger; it does not go with --send")
    with Ledger.open(settings.database.url, create=False) as ledger:
        text, counts = write_labels(ledger.engine, seed=args.seed or 0)
    try:
        args.labels.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--labels: cannot write {args.labels} ({exc.strerror})") from None
    summary = ", ".join(f"{label} {n}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    print(f"{args.labels}: {sum(counts.values())} labels ({summary or 'no settled transactions'})")
    return 0


def _sessions(vip_url: str) -> list[dict[str, Any]]:
    """The patron sessions the running simulator opened; ConfigError when it does not answer."""
    import requests

    try:
        answer = requests.get(vip_url.rstrip("/") + "/sim/sessions", timeout=5)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise ConfigError("vip.base_url", f"no simulator answers /sim/sessions there ({type(exc).__name__})") from None
    return found


def _signing(settings: Any) -> dict[str, Any]:
    """How the sender signs, as VIP Connect would: the callback key (else SecretKey1), issuer, audience."""
    import base64

    auth = settings.ingest.auth
    secret = auth.callback_key or settings.vip.secret_key1
    if secret is None:
        raise ConfigError("vip.secret_key1", "needed to sign notifications (or ingest.auth.callback_key)")
    return {"key": base64.b64decode(secret.get_secret_value()), "issuer": auth.issuer or settings.vip.operator_id,
            "audience": auth.audience}


def _send(args: argparse.Namespace, settings: Any) -> int:
    from producers.sim.sender import send_notifications

    target = args.target or f"http://{settings.ingest.host}:{settings.ingest.port}"
    paths = {"deposit": settings.ingest.paths.deposit, "withdraw": settings.ingest.paths.withdraw,
             "error": settings.ingest.paths.error}
    if args.file is not None:
        return _send_file(args, target, paths, settings)
    if args.kind is not None:
        raise InputError("--kind goes with --file (random notifications are deposits and withdrawals)")
    if args.rich and args.for_sessions:
        raise InputError("--rich goes with random notifications, not --for-sessions (those are VIP's shapes)")
    sessions = _sessions(settings.vip.base_url) if args.for_sessions else None
    report = send_notifications(
        target, sessions=sessions, count=args.send, rate=args.rate, seed=args.seed, paths=paths, rich=args.rich,
        **_signing(settings)
    )
    print(json.dumps(report.to_dict()))
    if report.ok != report.sent:
        print(f"vipflow: {_why_not_accepted(target, report)}", file=sys.stderr)
    return 0 if report.ok == report.sent else 1


def _why_not_accepted(target: str, report: Any) -> str:
    """One line naming the target and why not every notification got 200: a bad URL, nothing answering,
    or the statuses it answered."""
    unanswered = report.statuses.get(0, 0)
    if unanswered:
        parsed = urlparse(target)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return (f"--target {target} is not an http:// or https:// URL (e.g. http://127.0.0.1:8080); "
                    f"{unanswered} of {report.sent} not sent")
        return (f"nothing answered at {target} ({report.no_answer or 'no answer'}) for {unanswered} of "
                f"{report.sent}; is `vipflow ingest` running there? (--target URL)")
    refused = ", ".join(f"{n} answered {status}" for status, n in sorted(report.statuses.items()) if status != 200)
    return f"{target} did not accept every notification: {refused} (see the ingestor's log)"


def _send_file(args: argparse.Namespace, target: str, paths: dict[str, str], settings: Any) -> int:
    """Send the one notification in ``--file``, signed, and print the answer; 0 when it was accepted (200)."""
    from producers.sim.sender import kind_of, send_one

    if args.send != 1:
        raise InputError(f"--send {args.send} with --file: the file holds one notification; use --send --file FILE")
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise InputError(f"--file: cannot read {args.file} ({exc.strerror})") from None
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"--file: {args.file} is not JSON ({exc}); it must hold one notification") from None
    if not isinstance(body, dict):
        raise InputError(f"--file: {args.file} must hold one JSON object, a notification")
    kind = args.kind or kind_of(body)
    if kind not in paths:
        raise InputError(f"--file: {args.file} has no TransactionType deposit or withdraw to choose the route "
                         "by; add it, or give --kind deposit|withdraw|error")
    answer = send_one(target, paths[kind], raw, **_signing(settings))
    if answer.status == 0:
        print(f"vipflow: no answer from {answer.url} ({answer.body}); is `vipflow ingest` running there? "
              "(--target URL)", file=sys.stderr)
        return 1
    print(f"{answer.status} from {answer.url}")
    if answer.body:
        print(answer.body)
    return 0 if answer.status == 200 else 1
