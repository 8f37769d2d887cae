"""The workers' HTTP client (urllib3's pool) over real loopback sockets: answers, and what a failure says."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from worker.httpsession import HttpClient, HttpFailed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes], list[str]]]:
    """A one-connection-at-a-time server: ``modes`` says what it does with each request ("answer" with the
    request line echoed as the body, "close" without answering); ``seen`` gets each request's head."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)  # so that the thread sees ``stop`` soon
    seen: list[bytes] = []
    modes: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                while True:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    if not head:
                        break
                    seen.append(head)
                    if (modes.pop(0) if modes else "answer") == "close":
                        break
                    line = head.split(b"\r\n", 1)[0]
                    conn.sendall(b"HTTP/1.1 409 Conflict\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(line), line))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen, modes
    stop.set()
    listener.close()
    thread.join(5)


def test_an_answer_of_any_status_is_returned_with_its_headers_and_body(
        server: tuple[int, list[bytes], list[str]]) -> None:
    """A 409 is an answer, not a failure: status, a header read case-insensitively, the whole body; the base
    URL's path and the query parameters are in the request line."""
    port, seen, _ = server
    client = HttpClient(f"http://127.0.0.1:{port}/api")
    answer = client.request("GET", "/patrons", headers={"Accept": "application/json"}, timeout=5,
                            params={"vip_card_number": "72 10"})
    assert answer.status_code == 409 and answer.headers.get("retry-after") == "7"
    assert answer.content == b"GET /api/patrons?vip_card_number=72+10 HTTP/1.1"
    assert b"Accept: application/json" in seen[0]


def test_a_connection_kept_serves_the_next_request(server: tuple[int, list[bytes], list[str]]) -> None:
    """Two requests in a row: both answered, a body sent with its length."""
    port, seen, _ = server
    client = HttpClient(f"http://127.0.0.1:{port}")
    for _ in range(2):
        assert client.request("PUT", "/holds/k", headers={}, timeout=5, body='{"a": 1}').status_code == 409
    assert len(seen) == 2 and b"Content-Length: 8" in seen[1]


def test_a_refused_connection_was_never_sent() -> None:
    """Nothing listening: HttpFailed, never sent, not a timeout, in the system's words."""
    client = HttpClient(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(HttpFailed) as info:
        client.request("POST", "/x", headers={}, timeout=5, body=b"{}")
    assert info.value.never_sent and not info.value.timed_out
    assert "refused" in info.value.why.lower()


def test_a_connection_closed_without_an_answer_may_have_been_sent(
        server: tuple[int, list[bytes], list[str]]) -> None:
    """The server read the request and hung up: HttpFailed that may have reached it (not a timeout)."""
    port, _, modes = server
    modes.append("close")
    with pytest.raises(HttpFailed) as info:
        HttpClient(f"http://127.0.0.1:{port}").request("POST", "/approve", headers={}, timeout=5, body=b"{}")
    assert not info.value.never_sent and not info.value.timed_out


def test_no_answer_within_the_timeout_is_a_timeout_that_may_have_been_sent() -> None:
    """A server that accepts and never answers: HttpFailed, timed out, maybe sent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = HttpClient(f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(HttpFailed) as info:
            client.request("POST", "/approve", headers={}, timeout=0.3, body=b"{}")
    assert info.value.timed_out and not info.value.never_sent
