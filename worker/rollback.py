"""``vipflow rules rollback RULESET VERSION``: an old version written back as a new version.

The old text (from the ledger: ``worker.rule_versions.from_ledger``) gets the next version number (one
above the highest this ruleset ever had here, in the ledger or in the file now) in its ``version:`` line,
and nothing else of it changes. The test file that went live with it comes back beside it (the tests of
the newer version may well fail on older rules); without one recorded, the test file there now stays.
Then it passes the same gate as any edit before it is written: the whole rules folder, with the
rolled-back file and its tests in place, must pass ``rules check`` and every test (copied to a temporary
folder and verified there, ``verify_rulebook``, as a worker's hot reload would). Only then are the test file
and the rule file replaced (each atomically: a temporary file renamed over it), and the new version is
recorded in the ledger's history with the actor who asked. Workers load it within
``rules.reload_interval_s`` and find it recorded already.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from rules.book import rule_files
from rules.loader import parse_ruleset
from rules.model import RuleSet
from rules.testing import test_file_for, verify_rulebook
from worker.errors import InputError
from worker.ledger.rule_history import CURRENT, HistoryRow, LiveVersion, RuleHistory
from worker.rule_paths import SHIPPED_RULES
from worker.rule_versions import file_for, from_ledger


@dataclass(frozen=True)
class RolledBack:
    """What a rollback wrote: the ruleset, the version it restored and the new version's number and hash."""

    name: str
    restored_version: int
    restored_hash: str
    new_version: int
    new_hash: str
    file: Path
    tests_restored: bool
    recorded: HistoryRow | None
    replaced: RuleSet | None = None  # the version the file held before (None: none, or it did not load)
    new: RuleSet | None = None  # the version written (or, with dry_run, that would be)
    written: bool = True  # False for a dry run


def with_version(text: str, version: int) -> str:
    """``text`` with its top-level ``version:`` value replaced by ``version``, every other byte unchanged.
    InputError when the text has no top-level version (it then could not have gone live)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "version":
                start, end = value.start_mark.index, value.end_mark.index
                return text[:start] + str(version) + text[end:]
    raise InputError("the stored rule text has no top-level 'version:'; it cannot be rolled back")


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rollback(rules_path: Path, name: str, which: str, history: RuleHistory, actor: str, *,
             dry_run: bool = False) -> RolledBack:
    """Write ruleset ``name``'s version ``which`` (a number or a hash prefix) back into ``rules_path`` as a
    new version, after it passes the gate; record it with ``actor``. ``dry_run``: the gate only, nothing
    written or recorded. InputError (nothing named, the shipped rules, a folder that is not there),
    RuleFilesInvalid / RuleTestsFailed (the gate refused: nothing is written), LedgerUnavailable."""
    if rules_path.resolve() == SHIPPED_RULES.resolve():
        raise InputError("rules.path is the rule set shipped with vipflow; copy it to a folder of your own and "
                         "point rules.path there before rolling back")
    if not rules_path.exists():
        raise InputError(f"rules.path {rules_path} does not exist")
    old = from_ledger(name, which, history)
    target = file_for(rules_path, name)
    if target is None:
        if not rules_path.is_dir():
            raise InputError(f"rules.path {rules_path} is one rule file, not the {name} ruleset's; roll back in the "
                             "folder that holds it")
        target = rules_path / f"{name}.yaml"
    current_version, replaced = -1, None
    if target.exists():
        try:
            replaced = parse_ruleset(target.read_bytes(), str(target))
            current_version = replaced.version
        except Exception:  # noqa: BLE001 - a broken file now does not stop a rollback to a good one
            current_version = -1
    if replaced is not None and with_version(old.ruleset.text, replaced.version) == replaced.text:
        raise InputError(f"{target} already holds the rules of {name} v{old.ruleset.version} (as v{replaced.version}); "
                         "nothing to roll back")
    new_version = max(history.highest_version(name), current_version, old.ruleset.version) + 1
    text = with_version(old.ruleset.text, new_version)
    new = parse_ruleset(text.encode("utf-8"), str(target))  # the same checks as any rule file
    tests_path = test_file_for(target)
    _gate(rules_path, target, text, tests_path, old.tests_text)
    if dry_run:
        return RolledBack(name, old.ruleset.version, old.ruleset.content_hash, new_version, new.content_hash,
                          target, old.tests_text is not None, None, replaced, new, written=False)
    if old.tests_text is not None:
        _write_atomically(tests_path, old.tests_text)  # tests first: a reload in between refuses, then retries
    _write_atomically(target, text)
    live = LiveVersion(name=name, version=new_version, content_hash=new.content_hash, text=text,
                       source=str(target.absolute()),
                       tests_text=old.tests_text if old.tests_text is not None else _read(tests_path),
                       role=CURRENT,
                       note=f"rollback to v{old.ruleset.version} (sha256 {old.ruleset.content_hash[:12]})")
    recorded = history.record(live, actor=actor, how="rollback")
    return RolledBack(name, old.ruleset.version, old.ruleset.content_hash, new_version, new.content_hash,
                      target, old.tests_text is not None, recorded, replaced, new)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _gate(rules_path: Path, target: Path, text: str, tests_path: Path, tests_text: str | None) -> None:
    """The folder as it would be after the rollback must pass ``rules check`` and all its tests."""
    with tempfile.TemporaryDirectory(prefix="vipflow-rollback-") as tmp:
        folder = Path(tmp)
        sources = rule_files(rules_path) if rules_path.is_dir() else []
        for file in sources:
            if file != target:
                shutil.copy2(file, folder / file.name)
                if test_file_for(file).exists():
                    shutil.copy2(test_file_for(file), folder / test_file_for(file).name)
        (folder / target.name).write_text(text, encoding="utf-8")
        if tests_text is not None:
            (folder / tests_path.name).write_text(tests_text, encoding="utf-8")
        elif tests_path.exists():
            shutil.copy2(tests_path, folder / tests_path.name)
        verify_rulebook(folder)
