"""The HTTP session the worker's clients (VIP Connect, the wallet) share the shape of.

``requests`` reads the environment on every request when ``trust_env`` is on
(proxy variables, ``NO_PROXY`` matching, netrc, CA-bundle variables): a
measurable share of a worker's CPU per call. The environment does not change
while the worker runs, so it is read once here, for the one base URL the
session talks to, and ``trust_env`` is turned off: ``HTTPS_PROXY``/``NO_PROXY``
and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` still apply, as they did.
"""

from __future__ import annotations

import os

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

# Connections kept per host: as many as worker threads may call at once (a full pool makes and
# drops a new connection per call).
POOL_SIZE = 128


def session_for(base_url: str, pool_size: int = POOL_SIZE) -> requests.Session:
    """A session for ``base_url``: no automatic retries, a pool of ``pool_size``, environment read once."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.proxies.update(get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session
