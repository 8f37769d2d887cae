"""Rule hot reload: a changed rule set that passes its tests takes over; a broken one is refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import ROOT
from worker.reload import RuleHolder


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "default", target)
    return target


def test_a_new_valid_version_takes_over(tmp_path: Path) -> None:
    """Bumping the withdraw version is picked up by check() with a new content hash."""
    path = _copy(tmp_path)
    holder = RuleHolder(path)
    before = holder.current().content_hash
    version = holder.current().rulesets["withdraw"].version
    f = path / "withdraw.yaml"
    f.write_text(re.sub(r"^version: (\d+)", lambda m: f"version: {int(m[1]) + 1}", f.read_text(), count=1,
                        flags=re.MULTILINE))
    assert holder.check() is True
    assert holder.current().rulesets["withdraw"].version == version + 1
    assert holder.current().content_hash != before


def test_a_broken_version_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    """A rule file naming an unknown fact is refused; the previous book stays in force."""
    path = _copy(tmp_path)
    holder = RuleHolder(path)
    before = holder.current()
    f = path / "withdraw.yaml"
    f.write_text(f.read_text().replace("account.found: false", "account.no_such_fact: false", 1))
    assert holder.check() is False
    assert holder.current() is before


def test_unchanged_files_are_not_reloaded(tmp_path: Path) -> None:
    """Without a change, check() keeps the same book object."""
    holder = RuleHolder(_copy(tmp_path))
    before = holder.current()
    assert holder.check() is False and holder.current() is before
