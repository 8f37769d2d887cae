"""Every Redis key vipflow writes, and how long it lives: the one module of key names.

Redis is the hot path only; the ledger (SQL) is the record. Each key below has a
lifetime or a size bound:

=============================  =================================================  ============================
key                            what                                               bound
=============================  =================================================  ============================
``{p}:archive``                the intake buffer (a stream): raw bodies until     entries leave once the ledger
                               the ledger holds them                              holds them (``worker.drain``)
``{p}:archive:pending``        buffer entries whose task has not finished         members leave when it does
``{p}:archive:tx:{id}``        the buffer entries of one transaction              ``ledger.dedupe_window_s``
``{p}:seen:{id}``              dedupe: body hashes seen for a transaction         ``ledger.dedupe_window_s``
``{p}:seen:error:{id}``        dedupe of error notifications                      ``ledger.dedupe_window_s``
``{p}:lock:tx:{id}``           the per-transaction lock                           ``worker.lock_ttl_s``
``{p}:deliveries:{id}``        how often a transaction's tasks started            ``ledger.dedupe_window_s``
``{p}:lock:drain``             the drain's lease (one worker at a time)           a few seconds
``{p}:lock:expiry``            the expiry sweep's lease (one worker at a time)    a few minutes at most
``{p}:lock:recovery``          the recovery sweep's lease (one worker at a time)  3 rounds (5 s at least)
``{p}:recovery:watch``         recovery: pending entries seen idle, and since     pending entries only; expires
                               when (hash of entry id to ``ms:deliveries``)       when no worker sweeps
``{p}:workers``                the workers seen lately (sorted set: worker id     members not seen for
                               by its last heartbeat, epoch seconds)              ``heartbeat.FORGET_AFTER_S``
                                                                                  are dropped at every beat
``{p}:workers:last``           id -> that worker's last heartbeat (a hash)        the same members as above
``{p}:worker:{id}``            one worker's heartbeat (JSON: host, pid, pool,     3 heartbeat intervals
                               queue, rules versions, readiness)
``{p}:velocity:{type}:{card}`` velocity: attempts (sorted set; ``:seen`` hash),    the longest window (7 days)
                               ``:approved`` and ``:pending`` (sorted sets)        plus an hour
``{p}:acct:{product}:{card}``  the account inquiry cache                          ``vip.account_cache_ttl_s``
``{p}:claim:{id}``             a reviewer's claim on a queued transaction          ``review.claim_idle_s``
                                                                                  (renewed while worked on)
``{p}:login:{kind}:{sha}``     failed logins per user name / client address      ``web.login_window_s``
                               (a sha256, never the name or address)
``{queue}`` (no prefix)        Celery's queue                                     drained by the workers
=============================  =================================================  ============================
"""

from __future__ import annotations


def archive(prefix: str) -> str:
    """The intake buffer stream."""
    return f"{prefix}:archive"


def pending(prefix: str) -> str:
    """The set of buffer entries whose task has not finished."""
    return f"{prefix}:archive:pending"


def archive_tx(prefix: str, transaction_id: str) -> str:
    """The buffer entry ids of one transaction (expires with the dedupe window)."""
    return f"{prefix}:archive:tx:{transaction_id}"


def seen(prefix: str, kind: str, transaction_id: str) -> str:
    """The de-duplication hash of one transaction (error notifications apart)."""
    if kind == "error":
        return f"{prefix}:seen:error:{transaction_id}"
    return f"{prefix}:seen:{transaction_id}"


def tx_lock(prefix: str, transaction_id: str) -> str:
    """The lock of one transaction."""
    return f"{prefix}:lock:tx:{transaction_id}"


def deliveries(prefix: str, transaction_id: str) -> str:
    """How many times a task of this transaction started (counted with the lock, before any work)."""
    return f"{prefix}:deliveries:{transaction_id}"


def drain_lease(prefix: str) -> str:
    """The lease of the worker draining the intake buffer into the ledger."""
    return f"{prefix}:lock:drain"


def expiry_lease(prefix: str) -> str:
    """The lease of the worker looking for holds and approvals left waiting too long."""
    return f"{prefix}:lock:expiry"


def recovery_lease(prefix: str) -> str:
    """The lease of the worker looking for pending notifications whose task message was lost."""
    return f"{prefix}:lock:recovery"


def recovery_watch(prefix: str) -> str:
    """The recovery sweep's watch list: pending entries seen idle, since when, at which delivery count."""
    return f"{prefix}:recovery:watch"


def workers(prefix: str) -> str:
    """The sorted set of worker ids seen lately, scored by their last heartbeat (epoch seconds)."""
    return f"{prefix}:workers"


def workers_last(prefix: str) -> str:
    """The hash of each recently seen worker's last heartbeat (JSON), so a missing one is still described."""
    return f"{prefix}:workers:last"


def worker_heartbeat(prefix: str, worker_id: str) -> str:
    """One worker's heartbeat (JSON); it expires when the worker stops beating."""
    return f"{prefix}:worker:{worker_id}"


def velocity(prefix: str, transaction_type: str, vip_card_number: str) -> str:
    """The base of one card's velocity keys."""
    return f"{prefix}:velocity:{transaction_type}:{vip_card_number}"


def account(prefix: str, product_type: str | None, vip_card_number: str) -> str:
    """The cached account inquiry of one card and product."""
    return f"{prefix}:acct:{product_type or '-'}:{vip_card_number}"


def is_velocity(key: str, prefix: str) -> bool:
    """True for a velocity key (the only keys that outlive the dedupe window)."""
    return key.startswith(f"{prefix}:velocity:")


def claim(prefix: str, transaction_id: str) -> str:
    """A reviewer's claim on one queued transaction (its value: the claiming actor)."""
    return f"{prefix}:claim:{transaction_id}"


def login_failures(prefix: str, kind: str, digest: str) -> str:
    """Failed logins within the window for one user name or client address (``kind`` user|addr), by sha256."""
    return f"{prefix}:login:{kind}:{digest}"
