"""The SDK's HTTP/1.1 path to a plain-http hub (``HubConnection`` without a transport given):
kept-alive sockets, a socket the server closed while idle, answers lost or never sent, line
breaks in headers, many threads at once.

Against a real hub server where the behaviour is the hub's, and against a peer written here
(a listening socket that answers as told) where it is what a server or network may do that a
healthy hub does not on demand: close an idle connection, drop a request, never answer.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import BackendUnavailable, ConfigError, ValidationError, open_store
from lineagehub.ingest.http import MAX_IDLE_SOCKETS, HubConnection
from lineagehub.interfaces.server import create_app

OK = b'{"data": {"__typename": "Query"}}'

#: What the peer does with a request: answer it (these bytes; the connection then stays open
#: unless the answer says ``connection: close`` or ``close`` is set), or drop it (``None``:
#: close without answering), or keep it waiting (``HANG``).
HANG = b"hang"


def answer(body: bytes = OK, *, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


class Peer:
    """An HTTP/1.1 peer on 127.0.0.1: ``script(n)`` says what to do with the n-th request
    (from 0): ``(reply, close)`` with ``reply`` the bytes to send (``None``: drop it,
    ``HANG``: never answer) and ``close`` whether to close the connection after replying."""

    def __init__(self, script: Callable[[int], tuple[bytes | None, bool]]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.open.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                body, buffered = buffered[:length], buffered[length:]
                n = len(self.requests)
                self.requests.append(head + b"\r\n\r\n" + body)
                reply, close = self.script(n)
                if reply is None:
                    return
                if reply == HANG:
                    self.stop.wait()
                    return
                conn.sendall(reply)
                if close:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def peer_of() -> Iterator[Callable[[Callable[[int], tuple[bytes | None, bool]]], Peer]]:
    peers: list[Peer] = []

    def make(script: Callable[[int], tuple[bytes | None, bool]]) -> Peer:
        peers.append(Peer(script))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


def _idle(connection: HubConnection) -> list[socket.socket]:
    plain = connection._plain
    assert plain is not None  # a plain-http hub, no transport given: the stdlib path
    return plain._idle


def test_calls_share_one_kept_alive_socket_and_replace_one_the_server_closed(
    peer_of: Callable[..., Peer],
) -> None:
    """A socket the server closed while it sat idle (as after its keep-alive time) is seen
    before a request is written on it: even a call that may not be repeated goes out on a
    new socket and is answered."""
    peer = peer_of(lambda n: (answer(), n == 1))  # the second answer ends its connection
    hub = HubConnection(peer.url, token="", retries=0)
    assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert peer.accepted == 1  # two requests, one socket
    idle = _idle(hub)
    assert len(idle) == 1
    readable, _, _ = select.select(idle, [], [], 30)  # the peer's close has arrived
    assert readable
    for _ in range(3):
        assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert peer.accepted == 2 and len(peer.requests) == 5
    first = peer.requests[0]
    assert first.startswith(b"POST /graphql HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first and b"accept-encoding" not in first
    assert b"\r\ncontent-length: " in first
    hub.close()


def test_an_answer_that_closes_the_connection_and_a_chunked_answer(
    peer_of: Callable[..., Peer],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
        b"\r\n5\r\n" + OK[:5] + b"\r\n%x\r\n" % (len(OK) - 5) + OK[5:] + b"\r\n0\r\n\r\n"
    )
    replies = [answer(extra=b"connection: close\r\n"), chunked, answer()]
    peer = peer_of(lambda n: (replies[n], False))
    hub = HubConnection(peer.url, token="", retries=0)
    for _ in replies:
        assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert peer.accepted == 2  # a new socket after the first answer only
    hub.close()


def test_answers_delimited_by_the_close_preceded_by_an_interim_one_or_malformed(
    peer_of: Callable[..., Peer],
) -> None:
    """The answer reader (httptools): a body without a length ends with the connection
    (HTTP/1.0 style); a ``100 Continue`` before the answer is passed over; an answer that
    is not HTTP is a ReadError, never a result, as is one cut short of its length; an answer
    arriving a byte at a time is read whole."""
    unsized = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + OK
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + answer()
    replies: list[tuple[bytes | None, bool]] = [(unsized, True), (interim, False)]
    peer = peer_of(lambda n: replies[n] if n < len(replies) else (b"SMTP ready\r\n\r\n", True))
    hub = HubConnection(peer.url, token="", retries=0)
    assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert peer.accepted == 2  # the unsized answer's connection was not used again
    with pytest.raises(BackendUnavailable, match="ReadError"):
        hub.graphql("{ __typename }", idempotent=False)
    hub.close()

    cut = answer()[:-5]  # the connection closes five bytes short of the announced length
    short = peer_of(lambda n: (cut, True))
    hub = HubConnection(short.url, token="", retries=0)
    with pytest.raises(BackendUnavailable, match="ReadError"):
        hub.graphql("{ __typename }", idempotent=False)
    hub.close()

    class Dribble(Peer):  # sends its answer a byte at a time
        def _talk(self, conn: socket.socket) -> None:
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                for i in range(len(body := answer(extra=b"x-a: 1\r\n"))):
                    conn.sendall(body[i : i + 1])
                self.stop.wait()

    slow = Dribble(lambda n: (None, False))
    try:
        hub = HubConnection(slow.url, token="", retries=0)
        assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
        hub.close()
    finally:
        slow.close()


def test_the_answer_to_a_head_has_no_body_whatever_its_length_says(
    peer_of: Callable[..., Peer],
) -> None:
    """A ``HEAD`` is answered with the length of what a ``GET`` would send and no body: it is
    read without waiting for one, and the next request on the socket gets its own answer."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ncontent-type: application/octet-stream\r\n\r\n"
    )
    peer = peer_of(lambda n: (head if n == 0 else answer(), False))
    hub = HubConnection(peer.url, token="", retries=0, timeout=httpx.Timeout(30))
    sized = hub.request("HEAD", "/artifacts/sha256:" + "0" * 64, idempotent=True)
    assert sized.status_code == 200 and sized.headers["content-length"] == "1234"
    assert sized.content == b""
    assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
    assert peer.accepted == 1 and peer.requests[0].startswith(b"HEAD /artifacts/")
    hub.close()


def test_an_answer_lost_on_the_way_is_retried_only_when_the_call_allows(
    peer_of: Callable[..., Peer],
) -> None:
    """The request arrived and the connection closed before an answer: a repeatable call is
    sent again; one that is not (it may have been done) is reported, sent once."""
    peer = peer_of(lambda n: (None if n in (0, 2) else answer(), False))
    hub = HubConnection(peer.url, token="", retries=2, backoff=0.001)
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert len(peer.requests) == 2
    with pytest.raises(BackendUnavailable) as lost:
        hub.graphql("mutation { x }", idempotent=False)
    assert len(peer.requests) == 3 and "ReadError" in str(lost.value)
    hub.close()


def test_a_503_is_retried_and_a_silent_server_times_out(peer_of: Callable[..., Peer]) -> None:
    busy = answer(b'{"status": "unavailable"}', status=b"503 Service Unavailable")
    peer = peer_of(lambda n: (busy if n < 2 else answer(), False))
    hub = HubConnection(peer.url, token="", retries=3, backoff=0.001)
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert len(peer.requests) == 3
    hub.close()

    silent = peer_of(lambda n: (HANG, False))
    hub = HubConnection(silent.url, token="", retries=0, timeout=httpx.Timeout(0.2))
    with pytest.raises(BackendUnavailable) as waited:
        hub.graphql("{ __typename }", idempotent=True)
    assert "ReadTimeout" in str(waited.value) and len(silent.requests) == 1
    hub.close()


def test_nothing_is_sent_when_no_connection_can_be_made() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    hub = HubConnection(url, token="", retries=1, backoff=0.001)
    with pytest.raises(BackendUnavailable) as down:  # never left: retried, even a write
        hub.graphql("mutation { x }", idempotent=False)
    assert "ConnectError" in str(down.value) and url in str(down.value)
    hub.close()


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        ("abc\r\nx-evil: 1", None),
        ("abc\nx-evil: 1", None),
        ("", {"x-team": "ml\r\nx-evil: 1"}),
        ("", {"x team": "ml"}),
        ("", {"x-team": "\u2603"}),
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_before_anything_is_sent(
    peer_of: Callable[..., Peer], token: str, headers: dict[str, str] | None
) -> None:
    peer = peer_of(lambda n: (answer(), False))
    with pytest.raises(ConfigError):
        hub = HubConnection(peer.url, token=token, headers=headers)
        hub.graphql("{ __typename }", idempotent=True)
    assert peer.requests == []


def test_many_threads_share_one_connection_to_a_real_hub(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    with HubServer(create_app(store=store, artifacts=artifacts)) as server:
        hub = HubConnection(server.url, token="")

        def calls(i: int) -> list[str]:
            return [hub.graphql("{ __typename }", idempotent=True)["__typename"] for _ in range(20)]

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(calls, range(8)))
        assert results == [["Query"] * 20] * 8
        assert _idle(hub)  # kept for the next call
        hub.close()
        assert _idle(hub) == []
        with pytest.raises(ConfigError):  # closed: no new socket either
            hub.graphql("{ __typename }", idempotent=True)
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_opens_its_own_socket(peer_of: Callable[..., Peer]) -> None:
    """A process that forks after calling the hub (a data loader's workers, a launcher) must
    not send on the parent's kept-alive socket: both would talk on one connection."""
    peer = peer_of(lambda n: (answer(), False))
    hub = HubConnection(peer.url, token="", retries=0)
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    pid = os.fork()
    if pid == 0:  # the child: one call, then out without running the parent's clean-up
        try:
            ok = hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert peer.accepted == 2 and len(peer.requests) == 3  # the parent's socket, the child's
    hub.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_opens_its_own_connection_through_httpx_too(
    peer_of: Callable[..., Peer],
) -> None:
    """The same for the requests httpx's pool carries (an https hub, uploads and downloads,
    a path httpx must encode): the child sent on the parent's pooled connection (over TLS,
    inside the parent's session)."""
    peer = peer_of(lambda n: (answer(), False))
    hub = HubConnection(peer.url + "/h\u00fcb", token="", retries=0)
    assert hub._plain is None  # every request through httpx's pool
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    pid = os.fork()
    if pid == 0:
        try:
            ok = hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert peer.accepted == 2 and len(peer.requests) == 3  # the parent's socket, the child's
    hub.close()


def test_a_body_over_the_hubs_limit_is_refused_and_the_connection_still_works(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    app = create_app(store=store, artifacts=artifacts, max_body_bytes=10_000)
    with HubServer(app) as server:
        hub = HubConnection(server.url, token="", retries=0)
        for size in (20_000, 5_000_000):
            with pytest.raises(ValidationError, match="over 10000 bytes"):
                hub.graphql("#" + "x" * size + "\n{ __typename }", idempotent=False)
            assert hub.graphql("{ __typename }", idempotent=False) == {"__typename": "Query"}
        hub.close()
    store.close()


def test_a_hub_under_a_path_is_asked_there_and_one_with_an_unusual_path_keeps_httpx(
    peer_of: Callable[..., Peer],
) -> None:
    peer = peer_of(lambda n: (answer(), False))
    hub = HubConnection(peer.url + "/hub/", token="")
    assert hub.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert peer.requests[-1].startswith(b"POST /hub/graphql HTTP/1.1\r\n")
    hub.close()
    odd = HubConnection(peer.url + "/h\u00fcb", token="")
    assert odd._plain is None  # httpx percent-encodes what a request line cannot hold
    assert odd.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    assert peer.requests[-1].startswith(b"POST /h%C3%BCb/graphql HTTP/1.1\r\n")
    odd.close()


def test_concurrent_calls_share_sockets_and_at_most_the_cap_stay_idle(
    peer_of: Callable[..., Peer],
) -> None:
    """More calls at once than idle sockets are kept: each of the first wave holds a socket of
    its own (the peer answers none until all have arrived); afterwards only the cap stays
    open, and later calls reuse those."""
    wave = MAX_IDLE_SOCKETS + 8
    together = threading.Barrier(wave)

    def script(n: int) -> tuple[bytes | None, bool]:
        if n < wave:
            together.wait(timeout=60)
        return answer(), False

    peer = peer_of(script)
    hub = HubConnection(peer.url, token="", retries=0)
    call = lambda _: hub.graphql("{ __typename }", idempotent=True)  # noqa: E731
    with ThreadPoolExecutor(max_workers=wave) as pool:
        assert list(pool.map(call, range(wave))) == [{"__typename": "Query"}] * wave
    assert peer.accepted == wave and len(_idle(hub)) == MAX_IDLE_SOCKETS
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert len(list(pool.map(call, range(100)))) == 100
    assert peer.accepted == wave  # the kept sockets served them all
    hub.close()


def test_a_request_body_is_written_by_orjson_where_it_reads_back_the_same() -> None:
    """The SDK writes a GraphQL request with orjson when it holds JSON's own types, and the
    server reads the same values back as from the standard encoder's text; NaN (which orjson
    would write as null), an integer beyond 64 bits and a lone surrogate take the standard
    encoder, whose text is sent as it was before; what neither takes is refused, naming it."""
    import json

    from lineagehub.ingest.http import _request_body

    plain = {
        "query": "mutation($x: JSON) { f(x: $x) }",
        "variables": {"x": {"é": [1, 2.5, -0.0, 1e-05, True, None, 'a"b'], "t": (1, 2)}},
    }
    body = _request_body(plain)
    assert b'"variables":{' in body  # orjson's compact form
    assert json.loads(body) == json.loads(json.dumps(plain))
    for odd in (float("nan"), 2**70, "\ud800"):
        payload = {"query": "q", "variables": {"x": [odd]}}
        assert _request_body(payload) == json.dumps(payload).encode()
    with pytest.raises(ValidationError, match="not JSON-serializable"):
        _request_body({"query": "q", "variables": {"x": object()}})
