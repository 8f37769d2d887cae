"""Hosts for tests: Linux network namespaces on one bridge, each with its own address and processes.

``Network`` makes a bridge in the test's own namespace (with an address, so the
test itself is a host on the network too, playing VIP Connect) and, per host,
a namespace joined to the bridge by a veth pair. Processes start inside a host
with ``ip netns exec``. ``cut``/``restore`` take a host's link down and up (on
the bridge side, like pulling its cable). Everything made is removed by
``close``, also after a failure. Needs root (CAP_NET_ADMIN) and ``ip``;
``unavailable`` says why not, for the test to skip (or fail under CI).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import Proc


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def unavailable() -> str | None:
    """Why hosts cannot be built here (not root, no ``ip``, namespaces refused), or None when they can."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    probe = f"vfprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        return f"ip netns add was refused ({detail})"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    """One namespace: its name, its address on the bridge and its two veth ends."""

    name: str
    address: str
    outside: str  # the veth end on the bridge
    inside: str  # the veth end in the namespace

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host."""
        return ["ip", "netns", "exec", self.name, *args]

    def start(self, args: list[str], env: dict[str, str]) -> Proc:
        """A process inside this host (stdout and stderr kept, see ``harness.Proc``)."""
        return Proc(self.command(*args), env)


@dataclass
class Network:
    """A bridge and the hosts on it (see the module docstring)."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = ""
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge: str = ""
    gateway: str = ""

    def __post_init__(self) -> None:
        # A /24 in 10.213.0.0/16 drawn per network: two tests at once do not collide.
        self.subnet = f"10.213.{int(self.tag, 16) % 250 + 1}"
        self.bridge = f"vf{self.tag}br"
        self.gateway = f"{self.subnet}.1"

    def open(self) -> None:
        """Make the bridge, with the gateway address for the test's own namespace."""
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, role: str) -> Host:
        """A new host on the bridge, named after its role, with the next address."""
        number = len(self.hosts) + 10
        host = Host(f"vf{self.tag}-{role}", f"{self.subnet}.{number}",
                    f"vf{self.tag}{number}o", f"vf{self.tag}{number}i")
        _ip("netns", "add", host.name)
        self.hosts[role] = host
        _ip("link", "add", host.outside, "type", "veth", "peer", "name", host.inside)
        _ip("link", "set", host.inside, "netns", host.name)
        _ip("link", "set", host.outside, "master", self.bridge)
        _ip("link", "set", host.outside, "up")
        _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", host.inside)
        _ip("-n", host.name, "link", "set", host.inside, "up")
        _ip("-n", host.name, "link", "set", "lo", "up")
        return host

    def cut(self, role: str) -> None:
        """Take the host's link down (its cable pulled): its packets go nowhere, no connection is reset."""
        _ip("link", "set", self.hosts[role].outside, "down")

    def restore(self, role: str) -> None:
        """Bring the host's link back up."""
        _ip("link", "set", self.hosts[role].outside, "up")

    def close(self) -> None:
        """Remove every namespace, veth pair and the bridge (whatever of them exists)."""
        for host in self.hosts.values():
            subprocess.run(["ip", "link", "del", host.outside], capture_output=True, timeout=20)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)


@contextmanager
def network() -> Iterator[Network]:
    """An open Network, removed afterwards whatever happens."""
    net = Network()
    try:
        net.open()
        yield net
    finally:
        net.close()


def postgres_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (PATH, else /usr/lib/postgresql/*/bin); None without."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None

