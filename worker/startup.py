"""The start-up check: a worker whose configuration cannot work refuses to start.

A notification taken by a worker that cannot process it is acknowledged and
then exists only in the intake buffer's pending set. So both ways of starting a
worker (``vipflow worker`` and ``celery -A worker worker``) call
:func:`check_can_work` before they consume anything, and exit 2 with one line
naming the key (``configuration: vip.operator_id: ...``).

What is checked is what every task needs and nothing a task could wait for:
``vip.operator_id`` and ``vip.secret_key1`` (every approval is signed with them),
the rules at ``rules.path`` (loaded, their own tests passing: the same gate a
hot reload passes; the lists they name in the ledger, of the kinds their facts
take), a rollout's candidate at ``rules.candidate`` (the same, and every rule
file with tests of its own: ``worker.rollout``), and the wallet adapter (built: a
``wallet.class`` that does not import is found here, not on the first
withdrawal). Redis and the ledger
are checked by each entry point on its own (a Redis still starting is waited for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rules.errors import VipflowError
from worker.config import Settings
from worker.errors import ConfigError

if TYPE_CHECKING:
    from rules import RuleBook

EXIT_CANNOT_WORK = 2  # as for any bad configuration (``producers.exits``)


def check_can_work(settings: Settings) -> None:
    """Return when a worker with ``settings`` can finish a task; else raise ConfigError naming the key."""
    vip = settings.vip
    if not vip.operator_id.strip():
        raise ConfigError("vip.operator_id", "is empty; set it (VIPFLOW_VIP__OPERATOR_ID) to the OperatorId "
                                             "VIP Connect assigned: every approval is signed with it")
    if vip.secret_key1 is None:
        raise ConfigError("vip.secret_key1", "is not set; set VIPFLOW_VIP__SECRET_KEY1 (base64, as VIP Connect "
                                             "gave it) or vip.secret_key1_file: every approval is signed with it")
    _check_rules(settings)
    _check_candidate(settings)
    from worker.wallet import make_wallet

    make_wallet(settings.wallet)  # raises ConfigError("wallet.class", ...) itself


def _check_rules(settings: Settings) -> None:
    from rules.testing import verify_rulebook

    path = settings.rules.path
    if not path.exists():
        raise ConfigError("rules.path", f"{path}: no such file or directory; point rules.path "
                                        "(VIPFLOW_RULES__PATH) at a rule file or folder")
    try:
        book = verify_rulebook(path)
    except ConfigError:
        raise
    except (VipflowError, OSError) as exc:
        raise ConfigError("rules.path", f"{exc}; fix the rules (vipflow rules check) or point rules.path "
                                        "elsewhere") from None
    if book.list_names:
        _check_lists(settings, book)


def _check_lists(settings: Settings, book: RuleBook) -> None:
    """ConfigError naming each rule that names a list the ledger lacks (or of the wrong kind). Opens the
    ledger only for rules that name lists; a ledger that does not answer raises StoreError (exit 1)."""
    from rules.lists import check_lists
    from worker.ledger import Ledger
    from worker.lists.store import ListStore

    with Ledger.open(settings.database.url) as ledger:
        kinds = ListStore(ledger.engine).kinds()
    problems = [p.render() for rs in book.rulesets.values() for p in check_lists(rs, kinds)]
    if problems:
        raise ConfigError("rules.path", f"{'; '.join(problems)}; create the list (vipflow lists create) or fix "
                                        "the rules")


def _check_candidate(settings: Settings) -> None:
    """A rollout's candidate must pass ``rules check`` and its own tests before any traffic reaches it."""
    from rules.testing import verify_tested_rulebook

    path = settings.rules.candidate
    if path is None:
        return
    if not path.exists():
        raise ConfigError("rules.candidate", f"{path}: no such file or directory; point rules.candidate "
                                             "(VIPFLOW_RULES__CANDIDATE) at the candidate rule folder, or unset it")
    try:
        verify_tested_rulebook(path)
    except (VipflowError, OSError) as exc:
        raise ConfigError("rules.candidate", f"{exc}; no traffic goes to a candidate that fails its checks: fix "
                                             "it (vipflow rules check, vipflow rules test) or unset "
                                             "rules.candidate") from None
