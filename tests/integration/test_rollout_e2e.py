"""Percentage rollout and rollback end to end: the ingestor, a real Celery worker, the simulator over HTTP.

The current rules are the shipped ones (a deposit of 50.00 from a patron in good standing is approved);
the candidate adds a rule sending every deposit above 40.00 to review. So which side decided a deposit is
plain both from its decision (``side``, version) and from what was done (approved at VIP, or queued).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from tests.conftest import ROOT
from tests.integration.harness import Stack, free_port, running_stack, wait_until
from tests.integration.vipflow_worker import scrape, start_vipflow_worker, total
from worker.ledger.rule_history import RuleHistory
from worker.rollout import CANDIDATE, CURRENT, side_for
from worker.tokens import mint

pytestmark = pytest.mark.integration

N = 2000
SHARE = Decimal(30)
CANDIDATE_RULE = """\
  - id: candidate-review-above-40
    description: the candidate reviews every deposit above 40.00
    when: {amount: {gt: 40}}
    outcome: review

"""
CANDIDATE_CASE = """\
  - name: the candidate reviews a 50.00 deposit from a patron in good standing
    facts: {amount: 50, account: {found: true, is_in_good_standing: true}}
    expect: {outcome: review}
"""
# The current rules' v3: the same rule, so that rolling back to v2 is a change of decisions to see.
REVIEW_ALL_TESTS = """\
ruleset: deposit
cases:
  - name: a 50.00 deposit is reviewed
    facts: {amount: 50, account: {found: true, is_in_good_standing: true}}
    expect: {outcome: review}
"""


def _with_candidate_rule(folder: Path, version: int, tests: str | None = None) -> None:
    path = folder / "deposit.yaml"
    body = path.read_text()
    body = body.replace("rules:\n", "rules:\n" + CANDIDATE_RULE, 1)
    body = body.replace("version: 2\n", f"version: {version}\n", 1)
    path.write_text(body)
    tests_path = folder / "deposit_test.yaml"
    if tests is not None:
        tests_path.write_text(tests)
        return
    # The shipped cases that expect a 50+ deposit approved no longer hold: keep the others, add the candidate's.
    tests_path.write_text(REVIEW_ALL_TESTS.replace("cases:\n", "cases:\n" + CANDIDATE_CASE, 1))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("rollout")
    current, candidate = base / "current", base / "candidate"
    shutil.copytree(ROOT / "rules" / "default", current)
    shutil.copytree(ROOT / "rules" / "default", candidate)
    _with_candidate_rule(candidate, 30)
    return current, candidate


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stack(folders: tuple[Path, Path], metrics_port: int) -> Iterator[Stack]:
    """A stack whose worker (``vipflow worker``, metrics on ``metrics_port``) decides SHARE % of transactions
    with the candidate; its ledger on PostgreSQL when one answers (always under CI), else SQLite."""
    import redis

    from tests.conftest import TEST_REDIS_URL, stack_database

    redis.Redis.from_url(TEST_REDIS_URL).ping()
    current, candidate = folders
    s = Stack(TEST_REDIS_URL, stack_database("_rollout"), VIPFLOW_RULES__PATH=str(current),
              VIPFLOW_RULES__CANDIDATE=str(candidate), VIPFLOW_RULES__CANDIDATE_SHARE=str(SHARE),
              VIPFLOW_RULES__RELOAD_INTERVAL_S="0.5")
    try:
        s.start_sim()
        s.start_ingest()
        s.worker = start_vipflow_worker(s, pool="threads", concurrency=8, metrics_port=metrics_port)
        yield s
    finally:
        s.stop()


def send_deposits(stack: Stack, ids: list[str], first_patron: int = 0) -> None:
    """POST one 50.00 deposit per id, each from a crowd patron of its own (no velocity between them)."""
    token = mint(stack.key, "op-it", "vip-api", 600)
    with requests.Session() as http:
        for i, txid in enumerate(ids):
            body = build_notification(crowd_patron(first_patron + i), "deposit", Decimal("50.00"),
                                      transaction_id=txid)
            answer = http.post(f"{stack.ingest_url}/vip/notify/deposit", json=body,
                               headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert answer.status_code == 200, answer.text


def sides(stack: Stack, ids: list[str], timeout_s: float) -> dict[str, tuple[str, str, int]]:
    """{transaction id: (side, state, ruleset version)} once every one of ``ids`` is settled."""
    wanted = set(ids)

    def settled() -> dict[str, tuple[str, str, int]] | None:
        found = {}
        with stack.ledger.engine.connect() as conn:
            for txid, state, record in conn.execute(text(
                    "SELECT transaction_id, state, record FROM transactions WHERE state IN ('approved', 'review', "
                    "'rejected')")):
                if txid in wanted:
                    rec = record if isinstance(record, dict) else json.loads(record)
                    found[txid] = (rec["decision"]["side"], state, rec["decision"]["version"])
        return found if len(found) == len(wanted) else None

    return wait_until(settled, timeout_s, f"{len(ids)} transactions to be decided and acted on", poll_s=1.0)


def test_a_30_percent_rollout_sends_close_to_30_percent_to_the_candidate(stack: Stack, metrics_port: int) -> None:
    """2,000 deposits: 30 % +- 3.5 points are decided by the candidate (reviewed, no approval at VIP), the
    rest by the current rules (approved once at VIP); each on the side its id's hash says; the worker's
    metrics count them by side."""
    ids = [f"ro{i:06d}" for i in range(N)]
    send_deposits(stack, ids)
    decided = sides(stack, ids, timeout_s=600)
    on_candidate = [t for t in ids if decided[t][0] == CANDIDATE]
    assert 0.265 <= len(on_candidate) / N <= 0.335, len(on_candidate)
    for txid in ids:
        side, state, version = decided[txid]
        assert side == side_for(txid, SHARE)
        assert (state, version) == (("review", 30) if side == CANDIDATE else ("approved", 2)), txid
    assert stack.sim is not None
    approvals = stack.sim.stats().get("approvals", {})
    assert sum(1 for t in ids if approvals.get(t)) == N - len(on_candidate)
    samples = scrape(metrics_port)
    by_side = {side: total(samples, "vipflow_decisions_by_side_total", ruleset="deposit", side=side)
               for side in (CANDIDATE, CURRENT)}
    assert by_side == {CANDIDATE: len(on_candidate), CURRENT: N - len(on_candidate)}
    # Recorded in the history as gone live (the candidate with its share).
    rows = RuleHistory(stack.ledger.engine).rows("deposit")
    assert {(r.role, r.version) for r in rows} == {("current", 2), ("candidate", 30)}
    assert next(r.share for r in rows if r.role == "candidate") == SHARE


def test_a_replay_lands_each_transaction_on_the_same_side(stack: Stack) -> None:
    """The backtest re-deciding every recorded transaction by the rollout (``replay --dry-run --rollout``)
    finds no difference and the same count per side as the worker's decisions."""
    with stack.ledger.engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT state, count(*) FROM transactions GROUP BY state")).all())
    proc = subprocess.run([sys.executable, "-m", "producers", "replay", "--dry-run", "--rollout", "--json"],
                          cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    totals = json.loads(proc.stdout.splitlines()[-1])["totals"]
    assert totals["differences"] == 0, proc.stdout[:2000]
    assert totals["sides"] == {"candidate": counts["review"], "current": counts["approved"]}



def test_vipflow_replay_of_decided_transactions_keeps_their_side(stack: Stack) -> None:
    """``vipflow replay --id`` re-queues 20 decided transactions (both sides) through the worker: each is
    delivered again, keeps its one decided event and its side, and no second approval is made."""
    ids = [f"ro{i:06d}" for i in range(20)]
    before = {t: stack.record(t) for t in ids}
    assert {rec["decision"]["side"] for rec in before.values() if rec} == {CANDIDATE, CURRENT}
    assert stack.sim is not None
    approvals = dict(stack.sim.stats().get("approvals", {}))
    args = [arg for t in ids for arg in ("--id", t)]
    proc = subprocess.run([sys.executable, "-m", "producers", "replay", *args], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def delivered_again() -> bool:
        return all((stack.record(t) or {}).get("deliveries", 0) > before[t]["deliveries"] for t in ids)

    wait_until(delivered_again, 60, "the replayed transactions to be delivered again")
    for txid in ids:
        rec = stack.record(txid)
        assert rec is not None and rec["decision"]["side"] == before[txid]["decision"]["side"] == side_for(txid, SHARE)
        assert [e.kind for e in stack.events(txid)].count("decided") == 1
    after = stack.sim.stats().get("approvals", {})
    assert {t: after.get(t) for t in ids} == {t: approvals.get(t) for t in ids}


def test_the_same_notifications_to_a_fresh_worker_land_on_the_same_sides(stack: Stack,
                                                                          folders: tuple[Path, Path]) -> None:
    """300 of the same notifications sent again to another worker process with a ledger of its own are
    decided on the same side as the first time."""
    from tests.conftest import TEST_REDIS_URL

    ids = [f"ro{i:06d}" for i in range(0, N, N // 300)][:300]
    with stack.ledger.engine.connect() as conn:
        first = {t: json_side(r) for t, r in conn.execute(text(
            "SELECT transaction_id, record FROM transactions"))}
    current, candidate = folders
    with running_stack(TEST_REDIS_URL, None, VIPFLOW_RULES__PATH=str(current),
                       VIPFLOW_RULES__CANDIDATE=str(candidate), VIPFLOW_RULES__CANDIDATE_SHARE=str(SHARE)) as again:
        send_deposits(again, ids)
        second = sides(again, ids, timeout_s=300)
    assert {t: second[t][0] for t in ids} == {t: first[t] for t in ids}
    assert {CANDIDATE, CURRENT} <= {s for s, _, _ in second.values()}


def json_side(record: object) -> str:
    rec = record if isinstance(record, dict) else json.loads(str(record))
    return str(rec["decision"]["side"])


def test_rollback_restores_the_old_decisions(stack: Stack, folders: tuple[Path, Path]) -> None:
    """The current rules edited to v3 (deposits above 40 reviewed) go live and review current-side deposits;
    ``vipflow rules rollback deposit 2`` writes v2 back as v31 (one above the highest version the deposit
    ruleset had here: the candidate's v30), recorded with the CLI's actor, and the running worker approves
    them again."""
    current, _ = folders
    pool = (f"rb{i:06d}" for i in range(10_000))
    ids = [t for t in pool if side_for(t, SHARE) == CURRENT]
    before, during, after = ids[:20], ids[20:40], ids[40:60]
    send_deposits(stack, before, first_patron=3000)
    assert {s[1] for s in sides(stack, before, 120).values()} == {"approved"}

    _with_candidate_rule(current, 3, tests=REVIEW_ALL_TESTS)
    history = RuleHistory(stack.ledger.engine)
    wait_until(lambda: any(r.version == 3 for r in history.rows("deposit", role="current")), 60,
               "the worker to load v3 and record it")
    send_deposits(stack, during, first_patron=3100)
    assert {(s[1], s[2]) for s in sides(stack, during, 120).values()} == {("review", 3)}

    env = {**stack.env, "VIPFLOW_LEDGER__ACTOR": "ops-oncall"}
    proc = subprocess.run([sys.executable, "-m", "producers", "rules", "rollback", "deposit", "2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deposit: v2 (sha256 " in proc.stdout and "written back as v31" in proc.stdout
    rows = history.rows("deposit", role="current")
    assert [(r.version, r.how) for r in rows][-1] == (31, "rollback")
    assert rows[-1].actor == "config:ops-oncall"

    probes = (t for t in (f"rbprobe{i:05d}" for i in range(10_000)) if side_for(t, SHARE) == CURRENT)
    patrons = itertools.count(3300)

    def decided_by_the_rolled_back_version() -> bool:
        txid = next(probes)
        send_deposits(stack, [txid], first_patron=next(patrons))
        return sides(stack, [txid], 60)[txid][2] == 31

    wait_until(decided_by_the_rolled_back_version, 60, "the worker to decide with the rolled-back version",
               poll_s=0.2)
    send_deposits(stack, after, first_patron=3200)
    assert {(s[1], s[2]) for s in sides(stack, after, 120).values()} == {("approved", 31)}
    # The worker found v31 recorded by the rollback: no second row for it.
    assert [r.version for r in history.rows("deposit", role="current")] == [2, 3, 31]


@pytest.mark.timeout(120)
def test_a_worker_whose_candidate_fails_its_tests_refuses_to_start(redis_url: str, tmp_path: Path) -> None:
    """`celery -A worker worker` with a candidate whose own tests fail exits 2 naming rules.candidate, before
    it is ready (no traffic reaches the candidate)."""
    from tests.integration.harness import Proc

    candidate = tmp_path / "candidate"
    shutil.copytree(ROOT / "rules" / "default", candidate)
    _with_candidate_rule(candidate, 30, tests=REVIEW_ALL_TESTS.replace("outcome: review", "outcome: approve"))
    stack = Stack(redis_url)
    try:
        bad = Proc([sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads", "--concurrency",
                    "2", "-Q", stack.prefix, "--without-gossip", "--without-mingle", "--without-heartbeat"],
                   {**stack.env, "VIPFLOW_RULES__CANDIDATE": str(candidate), "VIPFLOW_RULES__CANDIDATE_SHARE": "30"})
        code = wait_until(lambda: bad.process.poll() is not None and (bad.process.returncode,), 60,
                          "the worker to exit")
        bad.stop()
        assert code[0] == 2, "\n".join(bad.lines[-30:])
        refusals = [line for line in bad.lines if "rules.candidate" in line]
        assert refusals and "rule test(s) failed" in refusals[0], "\n".join(bad.lines[-30:])
        assert not bad.saw(" ready.")
    finally:
        stack.stop()
