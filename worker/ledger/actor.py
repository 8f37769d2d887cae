"""Who a command-line act is recorded as: the ``actor`` of a human event or of a prune run.

The actor is never free text alone. A name typed after ``--reviewer`` is whatever
the person at the keyboard chose to type, so it proves nothing years later. The
CLI records instead an identity something else vouches for: the identity the
operator configured for this deployment (``ledger.actor``, ``"config:<name>"``),
else the operating-system account that ran the command (``"os:<user>"``), which
the OS authenticated at login. Free text may still be kept beside it, as a note.

The OS account is looked up from the process's real uid, not from ``$USER`` or
``$LOGNAME`` (which ``getpass.getuser`` reads first, and which anyone can set).
"""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.config import Settings

ACTOR_MAX_CHARS = 200  # the width of the ledger's actor columns


def os_user() -> str:
    """The login name of the process's real uid; ``uid<N>`` when the system has no name for it."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (a container run with an arbitrary uid)
        name = ""
    return name or f"uid{os.getuid()}"


def cli_actor(settings: Settings) -> str:
    """``"config:<ledger.actor>"`` when configured, else ``"os:<user>"`` (``"os:uid<N>"`` when the uid has
    no name)."""
    configured = (settings.ledger.actor or "").strip()
    actor = f"config:{configured}" if configured else f"os:{os_user()}"
    return actor[:ACTOR_MAX_CHARS]
