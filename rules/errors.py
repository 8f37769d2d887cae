"""The project's error tree.

Every error vipflow raises on purpose derives from :class:`VipflowError`; each
area has its own sub-base so a caller can catch an area without naming its
details. ``rules`` sits at the bottom of the import graph, so the root lives
here and the worker's sub-bases (in ``worker.errors``) derive from it::

    VipflowError
    ├── RuleError                      rules/  (this module)
    │   ├── RuleFileError              one problem in a rule file: file, line, rule id
    │   ├── RuleFilesInvalid           a set of RuleFileErrors, reported together
    │   └── FactError                  facts that do not fit the fact catalogue
    ├── ConfigError                    worker.errors: a bad configuration key
    ├── InputError                     worker.errors: a command's input (option, id, file) that cannot be used
    │   ├── SelectionError             worker.replay: a replay selection
    │   ├── NoLedger                   worker.errors: a reading command found no SQLite ledger file
    │   ├── NotInReview                worker.review_service: the transaction is not waiting for review
    │   └── ReviewInputError           worker.review_service: a reviewer's command lacks an actor or reason
    ├── ListenError                    worker.errors: a server cannot listen on its address (port taken)
    ├── NotificationError              worker.errors: a body that is not a notification
    ├── VipApiError                    worker.errors: the VIP Connect API
    │   ├── VipTransientError          5xx, timeout, refused connection: retry
    │   └── VipRejectedError           4xx: do not retry; carries VIP's error body
    ├── WalletError                    worker.errors: the operator's wallet
    │   ├── WalletTransientError       unreachable or 5xx: retry
    │   └── WalletRefusedError         refused (insufficient funds, unknown patron, ...)
    ├── StoreError                     worker.errors: Redis or the ledger unreachable or inconsistent (retried)
    │   └── LedgerUnavailable          the ledger's database failed or did not answer
    └── LedgerError                    worker.errors: the ledger refused (not retried)
        ├── IllegalTransition          worker.ledger.states: a state change the state machine forbids
        └── SchemaOutdated             the database schema is not the code's: run vipflow db upgrade

A message names what was wrong and what to do about it. It never carries a
secret or a patron's personal data. ``producers.exits`` maps each kind to the
``vipflow`` command's exit code and one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rules.model import RuleSet


class VipflowError(Exception):
    """Root of every error vipflow raises on purpose."""


class RuleError(VipflowError):
    """A problem with rule files, rule tests or facts."""


class RuleFileError(RuleError):
    """One problem in a rule file, located by file, line and (when known) rule id."""

    def __init__(self, file: str, line: int | None, problem: str, rule_id: str | None = None):
        self.file = file
        self.line = line
        self.problem = problem
        self.rule_id = rule_id
        super().__init__(self.render())

    def render(self) -> str:
        """Render as ``file:line: rule 'id': problem``."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        rule = f" rule '{self.rule_id}':" if self.rule_id else ""
        return f"{where}:{rule} {self.problem}"


class RuleFilesInvalid(RuleError):
    """Several rule-file problems, kept together so that all are reported at once."""

    def __init__(self, problems: list[RuleFileError], partial: Iterable[RuleSet] = ()):
        """``partial``: the rulesets as far as they loaded despite the problems (a file's rules that parsed;
        the files without problems), so that checks needing a ruleset, such as its lists against the
        ledger's (``vipflow rules check``), can still run in the same pass."""
        self.problems = problems
        self.partial = tuple(partial)
        super().__init__("\n".join(p.render() for p in problems))


class FactError(RuleError):
    """Facts given to the evaluator do not fit the fact catalogue."""
