"""The ledger's tables (SQLAlchemy Core): the system of record.

- ``notifications``: every notification as received (raw body, route, receipt time,
  valid or why not), keyed by its intake entry id. Append-only.
- ``events``: per transaction an ordered log (``seq`` 1, 2, ...) of what happened:
  received, delivered, decided, each action step, errors, dead letters, human
  actions with their actor. Append-only: never updated; deleted only by
  ``vipflow db prune`` (on PostgreSQL a trigger refuses anything else).
- ``transactions``: the current row of each transaction (state, amounts, who holds
  it, a snapshot of the record), written in the same database transaction as the
  events that change it; ``seq`` is the number of its events (a fencing token).
- ``notification_done``: which notifications' tasks finished (insert-only).
- ``rulesets``: the text of every ruleset version that decided anything, by hash.
- ``dead_letters``: tasks that gave up, kept for replay.
- ``prune_runs``: the audit of every ``vipflow db prune``.
- ``patron_sessions``: every patron session vipflow asked VIP to open (opening, open, or refused with
  VIP's answer), keyed by the transaction id vipflow issued for it. ``vipflow db prune`` deletes a
  session past the retention once its transaction is gone (or never came).
- ``patron_cards``: which patron a VIP card number belongs to, learned from every valid notification
  that carries both (a documented withdrawal carries only the card); written with the transaction's
  first ledger write, changed only when a card's patron changes.
- ``api_tokens``: the operator site's bearer tokens (only a sha256 of each), their scopes and revocation;
  ``api_token_uses``: every request made with one, by the token's name. Append-only; pruned by age.
- ``lists``: the named lists the rules test facts against (``in_list``), one row each: kind, current
  version and size; ``list_entries``: what each holds now; ``list_changes`` and ``list_change_entries``:
  every version of every list, who made it, when and what it added or removed (append-only: any
  version can be rebuilt from them).
- ``label_imports``: every batch of outcome labels recorded (a CSV file or one API request): who, when,
  from what (file name and sha256, or the token's name), how many rows. Append-only.
- ``labels``: what happened to a transaction after its decision (an ACH return code, a chargeback,
  confirmed fraud or good; ``worker.labels.codes``), one row per label recorded, in its import. The
  latest row of a transaction is its label; earlier ones stay. Append-only; pruned with the transaction.
- ``users``: the review workspace's people (issue 13): an argon2id hash of each password, a role
  (viewer, reviewer, senior, admin), an optional decision limit, disabled or not; ``session_epoch``
  grows on every reset or disable, which ends the sessions signed before it.
- ``workspace_events``: the human acts that belong to no transaction (users added, disabled, reset;
  logins, refused logins, logouts), with their actor. Append-only; pruned by age. The acts on a transaction are
  ``human`` events in ``events``.

Times are epoch seconds (double precision) unless a name ends in ``_ms``;
amounts are Numeric dollars, exact.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

notifications = Table(
    "notifications", metadata,
    Column("entry_id", String(40), primary_key=True),  # the intake buffer's stream id, "ms-seq"
    Column("kind", String(16), nullable=False),  # deposit | withdraw | error
    Column("route", String(200), nullable=True),  # the path it was posted to
    Column("received_at_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # valid | invalid | conflict
    Column("error", Text, nullable=True),  # why invalid (free of personal data)
    Column("transaction_id", String(64), nullable=True),
    Column("body", LargeBinary, nullable=False),  # exactly as received (personal data: never logged)
    Column("body_sha256", String(64), nullable=False),
    Column("stored_at", Double, nullable=False),
)
Index("ix_notifications_transaction_id", notifications.c.transaction_id)
Index("ix_notifications_received_at_ms", notifications.c.received_at_ms)

transactions = Table(
    "transactions", metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("transaction_type", String(16), nullable=True),
    Column("amount", Numeric(18, 2), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("ruleset_hash", String(64), nullable=True),
    Column("review_reason", Text, nullable=True),
    Column("review_since", Double, nullable=True),  # when it entered review (the queue's order)
    Column("held_by", String(200), nullable=True),  # who holds it (a reviewer who claimed it)
    Column("deliveries", Integer, nullable=False, default=0),
    Column("seq", Integer, nullable=False),  # how many events it has: the writer's fencing token
    # The TransactionRecord snapshot, a cache of what the events say: plain JSON (stored as text, no
    # binary conversion on every write), read whole by vipflow; the events' data is JSONB for queries.
    Column("record", JSON(), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)
Index("ix_transactions_state", transactions.c.state, transactions.c.review_since)
Index("ix_transactions_created_at", transactions.c.created_at)

events = Table(
    "events", metadata,
    # The key is the transaction and its event's place in the log (no surrogate id: one index less per row).
    Column("transaction_id", String(64), ForeignKey("transactions.transaction_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", Double, nullable=False),
    Column("kind", String(32), nullable=False),  # see worker.ledger.events.Kind
    Column("name", String(32), nullable=True),  # an action's name (freeze, approve, ...)
    Column("status", String(16), nullable=True),  # started | done | failed
    Column("state", String(16), nullable=False),  # the transaction's state after this event
    Column("actor", String(200), nullable=True),  # who: "worker", "os:alice", "config:ops-team", ...
    Column("data", Json, nullable=True),
)

notification_done = Table(
    "notification_done", metadata,
    Column("entry_id", String(40), ForeignKey("notifications.entry_id"), primary_key=True),
    Column("at", Double, nullable=False),
)

rulesets = Table(
    "rulesets", metadata,
    Column("content_hash", String(64), primary_key=True),  # sha256 of the rule file's bytes
    Column("name", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("file", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("first_used_at", Double, nullable=False),
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("entry_id", String(40), nullable=False),
    Column("transaction_id", String(64), nullable=True),
    Column("error", Text, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("requeued_at", Double, nullable=True),  # set when replay --dlq queued it again
)
Index("ix_dead_letters_entry_id", dead_letters.c.entry_id)

prune_runs = Table(
    "prune_runs", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("cutoff_at", Double, nullable=False),
    Column("retention_days", Integer, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("transactions", Integer, nullable=False, default=0),
    Column("events", Integer, nullable=False, default=0),
    Column("notifications", Integer, nullable=False, default=0),
    Column("patron_sessions", Integer, nullable=False, default=0, server_default="0"),  # since 0009
    Column("api_token_uses", Integer, nullable=False, default=0, server_default="0"),
    Column("workspace_events", Integer, nullable=False, default=0, server_default="0"),
)

patron_sessions = Table(
    "patron_sessions", metadata,
    Column("transaction_id", String(64), primary_key=True),  # issued (or checked) by vipflow
    Column("status", String(16), nullable=False),  # opening | open | refused
    Column("patron_kind", String(16), nullable=False),  # existing | new
    Column("patron_id", String(200), nullable=False),
    Column("vip_card_number", String(64), nullable=True),  # none for a patron enrolling
    Column("transaction_type", String(16), nullable=False),  # deposit | withdraw
    Column("amount", Numeric(18, 2), nullable=False),
    Column("wallet_balance", Numeric(18, 2), nullable=True),
    Column("remaining_daily_deposit", Numeric(18, 2), nullable=True),
    Column("product_type", String(16), nullable=True),
    Column("return_url", Text, nullable=True),
    Column("vip_session_id", String(200), nullable=True),
    Column("vip_status", Integer, nullable=True),  # VIP's HTTP status when it refused
    Column("vip_error", Json, nullable=True),  # VIP's error body when it refused
    Column("token_name", String(100), nullable=True),  # the API token that asked
    Column("created_at", Double, nullable=False),
    Column("opened_at", Double, nullable=True),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("name", String(100), primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("scopes", String(200), nullable=False),  # space-separated: sessions status labels
    Column("created_at", Double, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("revoked_by", String(200), nullable=True),
)

api_token_uses = Table(
    "api_token_uses", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("token_name", String(100), nullable=False),
    Column("at", Double, nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(200), nullable=False),  # the route's template, never ids or query strings
    Column("status", Integer, nullable=False),
)
Index("ix_api_token_uses_token_name", api_token_uses.c.token_name, api_token_uses.c.at)

patron_cards = Table(
    "patron_cards", metadata,
    Column("vip_card_number", String(64), primary_key=True),
    Column("patron_id", String(200), nullable=False),  # the operator's own id (personal data: never logged)
    Column("entry_id", String(40), nullable=False),  # the notification that taught it
    Column("received_at_ms", BigInteger, nullable=False),  # that notification's receipt: the newest wins
    Column("learned_at", Double, nullable=False),  # when (re)learned: the last change of patron
)

lists = Table(
    "lists", metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # card | patron | routing | bank | cidr (rules.lists.KINDS)
    Column("description", Text, nullable=True),
    Column("version", Integer, nullable=False),  # the latest change's version: 1 when created, +1 per change
    Column("entries", Integer, nullable=False),  # how many entries it holds now
    Column("created_at", Double, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

list_entries = Table(
    "list_entries", metadata,
    Column("list_name", String(64), ForeignKey("lists.name"), primary_key=True),
    Column("value", String(200), primary_key=True),  # normalized (rules.lists.normalize); personal data
    Column("added_version", Integer, nullable=False),
)

list_changes = Table(
    "list_changes", metadata,
    Column("list_name", String(64), ForeignKey("lists.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("action", String(16), nullable=False),  # create | add | remove | import
    Column("at", Double, nullable=False),
    Column("actor", String(200), nullable=False),  # worker.ledger.actor: "os:alice", "config:ops-team"
    Column("added", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("source", Text, nullable=True),  # an import's file name and sha256
    Column("note", Text, nullable=True),  # the reason given
)

list_change_entries = Table(
    "list_change_entries", metadata,
    Column("list_name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("op", String(8), nullable=False),  # add | remove
    ForeignKeyConstraint(["list_name", "version"], ["list_changes.list_name", "list_changes.version"]),
)

label_imports = Table(
    "label_imports", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(200), nullable=False),  # "os:alice", "config:ops", "token:bank-returns"
    Column("source", String(16), nullable=False),  # csv | api
    Column("name", String(200), nullable=True),  # the CSV file's name (no directory)
    Column("sha256", String(64), nullable=False),  # of the file, or of the request's body
    Column("rows", Integer, nullable=False),  # rows given
    Column("recorded", Integer, nullable=False),  # rows recorded (the others said what was already recorded)
)

labels = Table(
    "labels", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("import_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("label_imports.id"),
           nullable=False),
    Column("transaction_id", String(64), ForeignKey("transactions.transaction_id"), nullable=False),
    Column("label", String(32), nullable=False),  # R01 ... R85 | chargeback | confirmed_fraud | confirmed_good
    Column("kind", String(16), nullable=False),  # ach_return | chargeback | fraud | good
    Column("occurred_on", Date, nullable=False),  # when it happened (the return's or dispute's date)
    Column("line", Integer, nullable=False),  # its line in the CSV file (the item's place in the API request)
    Column("at", Double, nullable=False),
)
Index("ix_labels_transaction_id", labels.c.transaction_id, labels.c.id)
# The history of ruleset versions that went live (issue 10): one chain per (ruleset, role), each row naming the
# row it follows (0 for the first), unique, so two processes recording at once cannot fork the chain: the loser
# re-reads and finds its version already there. The text is in ``rulesets`` under ``content_hash``; the test
# file that went with it is kept here (a rollback restores both). Append-only (a trigger on PostgreSQL).
ruleset_history = Table(
    "ruleset_history", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False),  # the ruleset: deposit | withdraw
    Column("role", String(16), nullable=False),  # current (rules.path) | candidate (rules.candidate)
    Column("follows", BigInteger, nullable=False),  # the id of the row before in this chain; 0 for the first
    Column("version", Integer, nullable=False),  # the file's ``version:``
    Column("content_hash", String(64), nullable=False),  # sha256 of the rule file's bytes (rulesets.content_hash)
    Column("at", Double, nullable=False),  # when it went live (epoch seconds)
    Column("actor", String(200), nullable=False),  # "worker@host" (a worker loaded it) or the CLI's actor
    Column("how", String(16), nullable=False),  # loaded | reloaded | rollback
    Column("share", Numeric(5, 2), nullable=True),  # a candidate's rules.candidate_share then (percent)
    Column("source", Text, nullable=False),  # the rule file's path
    Column("tests_text", Text, nullable=True),  # the test file beside it then (None: there was none)
    Column("note", Text, nullable=True),  # e.g. "rollback to v3 (sha256 1a2b3c4d5e6f)"
)
Index("uq_ruleset_history_chain", ruleset_history.c.name, ruleset_history.c.role, ruleset_history.c.follows,
      unique=True)
Index("ix_ruleset_history_hash", ruleset_history.c.content_hash)

users = Table(
    "users", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=True),  # argon2id (PHC string); None: no local password
    Column("role", String(16), nullable=False),  # viewer | reviewer | senior | admin
    Column("review_limit", Numeric(18, 2), nullable=True),  # dollars; None: review.reviewer_limit
    Column("session_epoch", Integer, nullable=False, default=1),  # sessions of an older epoch are ended
    Column("created_at", Double, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("disabled_at", Double, nullable=True),
    Column("disabled_by", String(200), nullable=True),
    Column("password_changed_at", Double, nullable=True),
)

workspace_events = Table(
    "workspace_events", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(200), nullable=False),  # "user:alice", "os:root", "anonymous"
    Column("action", String(32), nullable=False),  # user_add | user_disable | user_reset | login | ...
    Column("subject", String(200), nullable=True),  # the user acted on (a user name, never a patron's data)
    Column("data", Json, nullable=True),
)
Index("ix_workspace_events_at", workspace_events.c.at)
# The audit page reads the human events of every transaction, newest first.
Index("ix_events_kind_at", events.c.kind, events.c.at)
