"""What ``vipflow run`` keeps in its ``var/`` directory, the clean start, and ``var/demo.env``.

``var/`` holds the demo's state: ``redis/`` (the embedded Redis's data), ``vipflow.db``
(the SQLite ledger, when no ``database.url`` is configured), ``logs/`` (each child's
log) and, while the demo runs, ``demo.env``: what another terminal needs to work
the demo's review queue (its Redis, ledger, VIP and wallet URLs, operator id and
throwaway secret key), mode 0600, removed when the demo stops.

Each run starts clean unless ``--keep``: the demo's files in ``var/`` are removed
and, on a Redis that was already running, the keys under the demo's key prefix
and its Celery queue are deleted (nothing else there is touched).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

# The demo works in a namespace of its own on a Redis it did not start, unless another is configured.
DEMO_KEY_PREFIX = "vipflow-demo"
DEMO_QUEUE = "vipflow-demo"
DEMO_OPERATOR = "demo-operator"
ENV_FILE = "demo.env"
_LEDGER_FILES = ("vipflow.db", "vipflow.db-wal", "vipflow.db-shm", "vipflow.db-journal")


def demo_ledger_url(var: Path) -> str:
    """The SQLite ledger the demo keeps in ``var`` when no ``database.url`` is configured."""
    return f"sqlite:///{(var / 'vipflow.db').resolve()}"


def clean_files(var: Path, *, own_ledger: bool) -> list[str]:
    """Remove the demo's files from ``var`` (the ledger only when it is the demo's own); the names removed
    (``redis/``, ``logs/``, ``vipflow.db``, ...)."""
    removed: list[str] = []
    targets = [var / "redis", var / "logs", var / ENV_FILE]
    if own_ledger:
        targets += [var / name for name in _LEDGER_FILES]
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(f"{path.name}/")
        elif path.exists():
            path.unlink()
            if not path.name.startswith("vipflow.db-"):  # the ledger's -wal and -shm go without a mention
                removed.append(path.name)
    return removed


def _glob(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)  # a literal in a Redis MATCH pattern


def clean_redis(client: Any, prefix: str, queue: str) -> int:
    """Delete the keys under ``prefix:`` and the Celery queue ``queue`` (with its priority lists, which kombu
    names ``queue`` + ``\\x06\\x16`` + priority); how many keys were deleted."""
    keys = list(client.scan_iter(match=f"{_glob(prefix)}:*", count=1000))
    for key in client.scan_iter(match=f"{_glob(queue)}*", count=1000):
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if name == queue or name.startswith(f"{queue}\x06\x16"):
            keys.append(key)
    deleted = 0
    for start in range(0, len(keys), 1000):
        deleted += int(client.delete(*keys[start:start + 1000]))
    return deleted


def env_values(settings: Any, overrides: dict[str, str], config: str | None) -> dict[str, str]:
    """The variables another terminal needs to reach this demo: its configuration file, the demo's own
    overrides (throwaway key, operator id, namespace), and where Redis, the ledger, VIP and the wallet are."""
    values: dict[str, str] = {}
    if config:
        values["VIPFLOW_CONFIG"] = str(Path(config).resolve())
    values.update({
        "VIPFLOW_REDIS__URL": settings.redis.url,
        "VIPFLOW_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "VIPFLOW_WORKER__QUEUE": settings.worker.queue,
        "VIPFLOW_DATABASE__URL": settings.database.url,
        "VIPFLOW_VIP__BASE_URL": settings.vip.base_url,
        "VIPFLOW_VIP__OPERATOR_ID": settings.vip.operator_id,
        "VIPFLOW_WALLET__URL": settings.wallet.url,
        "VIPFLOW_INGEST__HOST": settings.ingest.host,
        "VIPFLOW_INGEST__PORT": str(settings.ingest.port),
        "VIPFLOW_WEB__PORT": str(settings.web.port),
    })
    values.update(overrides)
    return values


DEMO_USER = "demo"


def demo_login(settings: Any) -> tuple[str, str]:
    """The demo's workspace login: user ``demo`` (a senior reviewer) with a new random password, added
    or reset (so a kept ledger's demo user gets one too); (name, password)."""
    import secrets

    from worker.ledger import Ledger
    from worker.ledger.users import UserStore
    from worker.review_roles import Role

    password = secrets.token_urlsafe(12)
    with Ledger.open(settings.database.url) as ledger:
        users = UserStore(ledger.engine)
        if users.get(DEMO_USER) is None:
            users.add(DEMO_USER, Role.SENIOR, password, "vipflow-run")
        else:
            users.reset(DEMO_USER, password, "vipflow-run", role=Role.SENIOR)
            users.enable(DEMO_USER, "vipflow-run")
    return DEMO_USER, password


def write_env_file(path: Path, values: dict[str, str], *, own_key: bool,
                   login: tuple[str, str] | None = None) -> None:
    """Write ``values`` as a shell file (``KEY='value'`` lines) readable by its owner only (0600); with
    ``login``, the review workspace's demo login as a comment."""
    lines = ["# vipflow run: this demo's settings, for commands in another terminal (removed when it stops):",
             f"#   set -a; . {shlex.quote(str(path))}; set +a",
             "#   vipflow review list"]
    if login is not None:
        lines.append(f"# review workspace (vipflow web): log in as {login[0]} with password {login[1]}")
    if not own_key:
        lines.append("# The secret key is yours (from your environment or configuration) and is not copied here:"
                     " set it in the other terminal too.")
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there before with another mode
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def vipflow_command() -> str:
    """How to call this vipflow from the current directory (the script beside this interpreter)."""
    script = Path(sys.executable).parent / "vipflow"
    if not script.exists():
        return "vipflow"
    absolute = script.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def how_to_review(env_file: Path) -> str:
    """The lines the demo prints: how to work its review queue from another terminal."""
    vipflow = vipflow_command()
    return (f"review queue: in another terminal, from {Path.cwd()}:\n"
            f"  set -a; . {shlex.quote(str(env_file))}; set +a\n"
            f"  {vipflow} review list          # then: {vipflow} review approve ID  (or reject ID --reason TEXT)")
