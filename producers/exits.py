"""How a ``vipflow`` command ends when something goes wrong: one line on stderr, one exit code.

Every command runs through :func:`run_command`; what it raises is looked up in
:data:`KINDS`, first match wins, and turned into a line naming what is wrong and
what to do (never a traceback, never a password)::

    kind                         exit  example
    output closed                 141  `vipflow review list --json | head -1`: stop quietly
    interrupted                   130  Ctrl-C
    bad configuration or input      2  configuration: redis.url: ...; --since: 'x' is not an ISO time
    Redis refused the login         2  wrong password or user in redis.url
    Redis database number           2  redis://host:6379/99: DB index is out of range
    Redis unreachable               1  cannot reach Redis at redis://127.0.0.1:1/0 (Connection refused); ...
    Redis failed                    1  any other Redis error
    the ledger's database failed    1  its URL (password hidden) and the driver's reason
    any other vipflow error         1  its own message (the work failed: see rules.errors for the tree)

An exception of no known kind is a bug: it is raised on, traceback and all. The
README's command table lists these exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for any tool whose reader left


class _Context:
    """What a message may name: the configured Redis and database (read again only when needed)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def _settings(self) -> object | None:
        from worker.config import load_settings

        try:
            return load_settings(getattr(self.args, "config", None))
        except Exception:  # noqa: BLE001 - naming the URL is a courtesy; the error itself is reported anyway
            return None

    def redis(self) -> str:
        from worker.config import RedisSettings
        from worker.store.connection import shown_url, where

        section = getattr(self._settings(), "redis", None)
        if isinstance(section, RedisSettings) and section.sentinels:
            return f"the Redis {where(section)}"
        url = getattr(section, "url", None)
        return f"Redis at {shown_url(url)}" if url else "Redis"

    def redis_help(self) -> str:
        """What to check when Redis cannot be reached: the sentinels' keys with Sentinel, else redis.url."""
        section = getattr(self._settings(), "redis", None)
        if getattr(section, "sentinels", None):
            return ("check redis.sentinels and redis.master_name (VIPFLOW_REDIS__SENTINELS), that the sentinels "
                    "run and that they know a master")
        return REDIS_HELP

    def database(self) -> str:
        settings = self._settings()
        url = getattr(getattr(settings, "database", None), "url", None)
        if not url:
            return "the ledger's database"
        from sqlalchemy.engine import make_url

        return f"the ledger's database at {make_url(url).render_as_string(hide_password=True)}"


Render = Callable[[BaseException, _Context], str | None]


@dataclass(frozen=True)
class Kind:
    """One kind of failure: which exceptions (by qualified class name, so that nothing is imported to
    check), an extra test on the message, the exit code, and the line to print (None: print nothing)."""

    name: str
    classes: tuple[str, ...]
    code: int
    render: Render
    when: Callable[[BaseException], bool] = lambda exc: True

    def matches(self, exc: BaseException) -> bool:
        """True when ``exc`` is of one of ``classes`` (or a subclass) and passes ``when``."""
        names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
        return bool(names.intersection(self.classes)) and self.when(exc)


def _reason(exc: BaseException) -> str:
    from worker.errors import reason

    return reason(exc)


REDIS_HELP = "check redis.url (VIPFLOW_REDIS__URL) and that Redis is running"
KINDS: tuple[Kind, ...] = (
    Kind("output closed", ("builtins.BrokenPipeError",), EXIT_OUTPUT_CLOSED, lambda exc, ctx: None),
    Kind("interrupted", ("builtins.KeyboardInterrupt",), EXIT_INTERRUPTED, lambda exc, ctx: "interrupted"),
    Kind("bad configuration or input", ("worker.errors.ConfigError", "worker.errors.InputError"), EXIT_USAGE,
         lambda exc, ctx: str(exc)),
    Kind("Redis refused the login", ("redis.exceptions.AuthenticationError",), EXIT_USAGE,
         lambda exc, ctx: f"{ctx.redis()} refused the login ({_reason(exc)}); check the user and password in "
                          "redis.url"),
    Kind("Redis database number", ("redis.exceptions.ResponseError",), EXIT_USAGE,
         lambda exc, ctx: f"{ctx.redis()}: {_reason(exc)}; check the database number at the end of redis.url",
         when=lambda exc: "DB index" in str(exc)),
    Kind("Redis unreachable", ("redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError"), EXIT_FAILED,
         lambda exc, ctx: f"cannot reach {ctx.redis()} ({_reason(exc)}); {ctx.redis_help()}"),
    Kind("Redis failed", ("redis.exceptions.RedisError",), EXIT_FAILED,
         lambda exc, ctx: f"{ctx.redis()} failed ({_reason(exc)}); {ctx.redis_help()}"),
    Kind("the ledger's database failed", ("sqlalchemy.exc.SQLAlchemyError",), EXIT_FAILED,
         lambda exc, ctx: f"{ctx.database()} failed ({_reason(exc)}); check database.url and that the "
                          "database is up"),
    Kind("the work failed", ("rules.errors.VipflowError",), EXIT_FAILED, lambda exc, ctx: str(exc)),
)


def _say(line: str) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):  # stderr gone too: the exit code still tells
        print(f"vipflow: {line}", file=sys.stderr)


def _quiet_stdout() -> None:
    # Whatever is still buffered for the reader that left must not be flushed at exit ("Exception
    # ignored ... BrokenPipeError"): point the descriptor at /dev/null.
    with contextlib.suppress(BrokenPipeError, ValueError):
        sys.stdout.flush()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # not a real descriptor (captured in a test): nothing will flush it at exit


def _subject(exc: BaseException) -> BaseException:
    """The error to report: a store error raised while handling a Redis error is reported as that Redis
    error, whose kind names the configured URL and the exit code that fits (a login, a database number)."""
    inner = exc.__cause__ or exc.__context__
    if inner is not None and Kind("", ("worker.errors.StoreError",), 0, KINDS[0].render).matches(exc) \
            and Kind("", ("redis.exceptions.RedisError",), 0, KINDS[0].render).matches(inner):
        return inner
    return exc


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command; its exit code, or the code and one line of the first :data:`KINDS` entry that
    matches what it raised (anything else is raised on)."""
    try:
        code = func(args)
        sys.stdout.flush()  # a reader that left is found here, inside the net, not at interpreter exit
        return code
    except BaseException as exc:
        subject = _subject(exc)
        kind = next((k for k in KINDS if k.matches(subject)), None)
        if kind is None:
            raise
        if kind.code == EXIT_OUTPUT_CLOSED:
            _quiet_stdout()
        line = kind.render(subject, _Context(args))
        if line:
            _say(line)
        return kind.code
