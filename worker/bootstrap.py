"""The one wiring point: the real adapters built from Settings.

Tests build ``worker.pipeline.Deps`` themselves with fakes; production code
calls :func:`bootstrap` (or :func:`process_deps` in a Celery worker process).
"""

from __future__ import annotations

import threading

from rules.testing import verify_tested_rulebook
from worker.config import Settings
from worker.ledger import Ledger
from worker.ledger.rule_history import CANDIDATE, CURRENT, RuleHistory
from worker.lists.holder import shared_holder
from worker.lists.store import ListStore
from worker.masking import keep_operator_hosts, operator_hosts
from worker.pipeline import Deps, RuleSource
from worker.reload import RuleHolder
from worker.rule_live import LiveRecorder
from worker.shadow import shadow_holder
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.connection import connect
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.protocol import VipApi
from worker.wallet.protocol import Wallet


def bootstrap(settings: Settings, *, vip: VipApi | None = None, wallet: Wallet | None = None,
              rules: RuleSource | None = None, ledger: Ledger | None = None, deciding: bool = False) -> Deps:
    """Deps on the configured Redis, ledger, VIP Connect client, wallet and rules (each replaceable).

    ``deciding``: this process decides traffic (a worker's tasks): the rollout's candidate rules are loaded
    when ``rules.candidate`` is set, and the rule versions it loads are recorded in the ledger's history as
    gone live (``worker.rule_live``). Other processes (a reviewer's command, the expiry) decide nothing, so a
    candidate being worked on never stops them. Raises SchemaOutdated when the
    ledger's PostgreSQL schema is older than the code, and RuleError when the rules (or the candidate) do not
    pass their gate. The configured hosts are the operator's own from here on: error messages name them in
    clear (``worker.masking``).
    """
    keep_operator_hosts(operator_hosts(settings))
    client = connect(settings.redis)
    if ledger is None:
        ledger = Ledger.open(settings.database.url)
    prefix = settings.redis.key_prefix
    if vip is None:
        from worker.vip.client import VipClient
        from worker.vip.timed import TimedVip

        vip = TimedVip(VipClient(settings.vip))
    if wallet is None:
        from worker.wallet import make_wallet

        wallet = make_wallet(settings.wallet)
    lists = shared_holder(settings.database.url, ListStore(ledger.engine, settings.lists.max_entries),
                          settings.lists.reload_interval_s)
    history = RuleHistory(ledger.engine) if deciding else None
    if rules is None:
        holder = RuleHolder(settings.rules.path, accept=lists.require)
        if history is not None:
            holder.listen(LiveRecorder(history, CURRENT))
        holder.start(settings.rules.reload_interval_s, sighup=False)
        rules = holder
    shadow = shadow_holder(settings, accept=lists.require)
    if shadow is not None:
        shadow.start(settings.rules.reload_interval_s, sighup=False)
    candidate = None
    if deciding and settings.rules.candidate is not None:
        candidate = RuleHolder(settings.rules.candidate, verify=verify_tested_rulebook, accept=lists.require)
        if history is not None:
            candidate.listen(LiveRecorder(history, CANDIDATE, share=settings.rules.candidate_share))
        candidate.start(settings.rules.reload_interval_s, sighup=False)
    return Deps(
        settings=settings,
        archive=Archive(client, prefix),
        ledger=ledger,
        locks=Locks(client, prefix, settings.worker.lock_ttl_s, settings.ledger.dedupe_window_s),
        accounts=AccountCache(client, prefix, settings.vip.account_cache_ttl_s),
        velocity=VelocityStore(client, prefix),
        vip=vip,
        wallet=wallet,
        rules=rules,
        shadow=shadow,
        lists=lists,
        candidate=candidate,
    )


_deps: Deps | None = None
_deps_lock = threading.Lock()


def process_deps(settings: Settings) -> Deps:
    """This process's Deps, built once (tasks of a thread pool share them)."""
    global _deps
    with _deps_lock:
        if _deps is None:
            _deps = bootstrap(settings, deciding=True)
        return _deps
