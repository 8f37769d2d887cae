"""vipflow's rule language: YAML rule files in, explained Decisions out.

Pure: facts in, Decision out; no Redis, no HTTP, no Celery. Nothing in a rule
file is ever executed: files are parsed with PyYAML's safe loader and checked
against a grammar and the fact catalogue (``rules.catalogue``).
"""

from rules.book import RuleBook, load_rulebook, oracle_book
from rules.decision import Decision, MatchedRule
from rules.errors import FactError, RuleError, RuleFileError, RuleFilesInvalid
from rules.testing import RuleTestsFailed, verify_rulebook

__all__ = [
    "Decision",
    "FactError",
    "MatchedRule",
    "RuleBook",
    "RuleError",
    "RuleFileError",
    "RuleFilesInvalid",
    "RuleTestsFailed",
    "load_rulebook",
    "oracle_book",
    "verify_rulebook",
]
