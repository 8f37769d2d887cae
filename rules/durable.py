"""The durable_rules engine behind a small interface.

durable_rules 2.0.28 is unmaintained and has hazards a long-running worker
must design around; each is handled here and covered by a test:

* at most 1,024 live sessions per ruleset: every evaluation uses the one
  session ``"0"``, asserting its fact and retracting it in the same call;
* facts left behind pile up: the fact is retracted in ``finally``;
* two identical facts asserted together are taken as one: every fact carries
  a fresh ``id``;
* no rule matching raises ``MessageNotHandledException`` (result code 1):
  that is the ``default`` outcome, not an error;
* a ruleset name can be registered once per process: names carry the rule
  file's content hash, and a registry hands back the same handle;
* ``Ruleset.__init__`` deletes ``run`` from its dict: the C engine is driven
  directly with a fresh JSON document, so no Python dict is mutated;
* a rule with ``any`` (or ``$or``) is expanded into branches that can fire more
  than once: each rule is counted once;
* no thread safety: every call into the engine holds one process-wide lock;
* ``$nex`` never returns: never emitted (see ``rules.predicate``);
* at most 32 expressions per rule condition (error 113): refused as a located
  RuleFilesInvalid naming the rule, never a raw engine error;
* against another fact (``$m``) null == null and 10 != null hold: a field
  comparison also requires both sides known.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import durable_rules_engine as _engine

from rules.errors import RuleError, RuleFileError, RuleFilesInvalid
from rules.model import RuleSet
from rules.predicate import And, Cmp, IsNull, NotNull, Pred, Ref, compile_condition

_LOCK = threading.Lock()
_HANDLES: dict[str, int] = {}
_IDS = itertools.count(1)
_SID = "0"
_DURABLE_OP = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def to_durable(pred: Pred) -> dict[str, Any]:
    """A predicate as a durable_rules JSON expression."""
    if isinstance(pred, Cmp):
        right: Any = {"$m": pred.value.key} if isinstance(pred.value, Ref) else pred.value
        test = {pred.key: right} if pred.op == "eq" else {_DURABLE_OP[pred.op]: {pred.key: right}}
        if isinstance(pred.value, Ref):
            # Against another fact ($m), durable_rules holds null == null and 10 != null:
            # require both sides known, so that a comparison with a null is false.
            return {"$and": [{"$neq": {pred.key: None}}, {"$neq": {pred.value.key: None}}, test]}
        return test
    if isinstance(pred, IsNull):
        return {pred.key: None}
    if isinstance(pred, NotNull):
        return {"$neq": {pred.key: None}}
    op = "$and" if isinstance(pred, And) else "$or"
    return {op: [to_durable(p) for p in pred.items]}


def ruleset_definition(ruleset: RuleSet) -> dict[str, Any]:
    """The durable_rules ruleset document: one rule per vipflow rule, keyed by its id."""
    return {
        rule.id: {"all": [{"m": to_durable(compile_condition(rule.when))}]}
        for rule in ruleset.rules
    }


def durable_name(ruleset: RuleSet) -> str:
    """The engine-wide name of a ruleset version: type plus content hash."""
    return f"vipflow_{ruleset.name}_{ruleset.content_hash[:20]}"


def _refusal(ruleset: RuleSet, name: str, reason: str) -> RuleFilesInvalid:
    """The rules durable_rules refuses (each probed alone, then deleted), as located problems."""
    definition = ruleset_definition(ruleset)
    problems: list[RuleFileError] = []
    for n, rule in enumerate(ruleset.rules):
        try:
            probe = _engine.create_ruleset(f"{name}_probe{n}", json.dumps({rule.id: definition[rule.id]}))
        except _engine.error as exc:
            # Typically code 113: durable_rules holds at most 32 expressions per condition.
            problems.append(RuleFileError(ruleset.file, rule.line, f"durable_rules cannot compile this rule "
                                          f"({exc}); it is too complex: split it into several rules", rule.id))
        else:
            _engine.delete_ruleset(probe)
    return RuleFilesInvalid(problems or [RuleFileError(ruleset.file, None, f"durable_rules refused it ({reason})")])


class DurableEngine:
    """Evaluates rulesets with durable_rules; safe to share between threads."""

    name = "durable_rules"

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self._name = durable_name(ruleset)
        self._handle: int | None = None
        if ruleset.rules:
            document = json.dumps(ruleset_definition(ruleset))
            with _LOCK:
                handle = _HANDLES.get(self._name)
                if handle is None:
                    try:
                        handle = _engine.create_ruleset(self._name, document)
                    except _engine.error as exc:
                        raise _refusal(ruleset, self._name, str(exc)) from None
                    _HANDLES[self._name] = handle
                self._handle = handle

    def matched(self, facts: dict[str, Any]) -> set[str]:
        """The ids of the rules whose conditions hold for prepared (flat) facts."""
        if self._handle is None:
            return set()
        handle = self._handle
        fired: set[str] = set()
        with _LOCK:
            fact = dict(facts, id=next(_IDS), sid=_SID)
            document = json.dumps(fact)
            try:
                code, state = _engine.assert_fact(handle, document)[:2]
                if code == 0:
                    action = _engine.start_action_for_state(handle, state)
                    while action:
                        fired.update(json.loads(action[1]))
                        following = _engine.complete_and_start_action(handle, state)
                        action = (None, following) if following else None
                elif code != 1:  # 1: no rule matched, which is the ruleset's default
                    raise RuleError(f"durable_rules refused a fact (result code {code})")
            finally:
                _engine.retract_fact(handle, document)
        return fired


class OracleEngine:
    """The plain-Python evaluator of the same compiled predicates (the test oracle)."""

    name = "python"

    def __init__(self, ruleset: RuleSet):
        from rules.predicate import evaluate

        self.ruleset = ruleset
        self._evaluate = evaluate
        self._preds = [(r.id, compile_condition(r.when)) for r in ruleset.rules]

    def matched(self, facts: dict[str, Any]) -> set[str]:
        """The ids of the rules whose conditions hold for prepared (flat) facts."""
        return {rid for rid, pred in self._preds if self._evaluate(pred, facts)}
