"""The HTTP client the worker's clients (VIP Connect, the wallet) share: urllib3's connection pool.

Each worker thread's call to VIP Connect or the wallet went through ``requests``,
whose per-call work (preparing the request, merging settings, hooks, cookie jars,
building its Response) cost about as much CPU as the call itself: measured on one
core against the simulator, 640 us a call through a ``requests.Session``, 340 us
through urllib3's pool (which ``requests`` itself sends with). The clients make
one plain request per call and read the status, a header and the body, so they
talk to the pool directly.

What ``requests`` read from the environment still applies, read once for the one
base URL the client talks to: ``HTTP(S)_PROXY``/``NO_PROXY`` (a proxy for that URL
is used through urllib3's ``ProxyManager``) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
(else certifi's bundle, as ``requests`` verifies by default). Nothing is retried
here and redirects are not followed: retries belong to the callers, which know
whether a repeat is safe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3
from requests.utils import get_environ_proxies
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from worker.errors import reason

# Connections kept per host: as many as worker threads may call at once (a full pool makes and
# drops a new connection per call).
POOL_SIZE = 128


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP answer: its status, headers (case-insensitive ``get``) and the whole body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class HttpFailed(Exception):
    """The request got no HTTP answer. ``timed_out``: connecting or reading took longer than the
    timeout; ``never_sent``: the request certainly did not reach the server (refused, name not
    resolved, connect timeout); ``why``: the system's words (``Connection refused``)."""

    def __init__(self, why: str, *, timed_out: bool, never_sent: bool):
        self.why, self.timed_out, self.never_sent = why, timed_out, never_sent
        super().__init__(why)


class HttpClient:
    """Requests to one base URL (``http(s)://host:port/prefix``) over a pool of kept connections."""

    def __init__(self, base_url: str, pool_size: int = POOL_SIZE):
        self.base = base_url.rstrip("/")
        parts = urlsplit(self.base)
        self._prefix = parts.path
        tls: dict[str, Any] = {}
        if parts.scheme == "https":
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
            tls = {"cert_reqs": "CERT_REQUIRED",
                   **({"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle})}
        proxy = get_environ_proxies(self.base).get(parts.scheme)
        self._proxy: urllib3.ProxyManager | None = None
        self._pool: urllib3.HTTPConnectionPool | None = None
        if proxy:
            self._proxy = urllib3.ProxyManager(proxy, num_pools=4, maxsize=pool_size, retries=False, **tls)
        else:
            self._pool = urllib3.connection_from_url(self.base, maxsize=pool_size, retries=False, **tls)

    def request(self, method: str, path: str, *, headers: Mapping[str, str], timeout: float,
                body: bytes | str | None = None, params: Mapping[str, str] | None = None) -> HttpAnswer:
        """One request to the base URL plus ``path`` (query ``params`` encoded), ``timeout`` seconds to
        connect and again to read; the answer, whatever its status. HttpFailed when none came."""
        target = path + (f"?{urlencode(params)}" if params else "")
        data = body.encode() if isinstance(body, str) else body
        try:
            if self._pool is not None:
                resp = self._pool.urlopen(method, self._prefix + target, body=data, headers=dict(headers),
                                          timeout=timeout, retries=False, redirect=False, assert_same_host=False)
            else:
                assert self._proxy is not None
                resp = self._proxy.urlopen(method, self.base + target, body=data, headers=dict(headers),
                                           timeout=timeout, retries=False, redirect=False)
        except NewConnectionError as exc:  # before its base class, ConnectTimeoutError: refused, no such name
            raise HttpFailed(reason(exc), timed_out=False, never_sent=True) from None
        except ConnectTimeoutError as exc:
            raise HttpFailed(reason(exc), timed_out=True, never_sent=True) from None
        except ReadTimeoutError as exc:
            raise HttpFailed(reason(exc), timed_out=True, never_sent=False) from None
        except (HTTPError, OSError) as exc:  # reset, aborted, TLS, proxy: it may have reached the server
            raise HttpFailed(reason(exc), timed_out=False, never_sent=False) from None
        return HttpAnswer(resp.status, resp.headers, resp.data)
