"""A lean HTTP/1.1 keep-alive transport for judge calls, on the standard library.

The engine makes hundreds of judge calls a second per process; httpx spends about a
millisecond of CPU on each, http.client under half of that. This class offers the small part
of httpx's interface the judge client uses (`post(url, json=, headers=, timeout=)` returning
an object with `status_code`, `headers`, `text` and `json()`), and raises httpx's exception
types, so JudgeClient's retry rules are the same for both. One connection per thread and host.

Every new connection goes through grading.judges.addresses.connect: the host is resolved once, each
address is checked (metadata and link-local never, private and loopback only if the operator
allows), and the socket connects to a checked address, so a DNS answer that changes after a
judge was saved (rebinding) cannot reach a refused address. TLS still verifies the certificate
for the URL's host name and sends it as SNI. http.client never follows redirects and reads no
proxy settings from the environment.

**One deadline per call.** `timeout` bounds the whole exchange, not each socket operation:
connecting (every address tried, and the TLS handshake), sending the request, waiting for the
reply and reading all of it end by `start + timeout`, whatever the judge does (a server that
sends its headers and then a byte a second would otherwise be read for ever, each byte
restarting a per-operation timeout). Every read and write is given what is left of the
deadline. The body is read a piece at a time and may be at most `max_reply_bytes` (the
operator's ASSAY_JUDGE_MAX_REPLY_BYTES by default): a longer one is abandoned as soon as it
passes the cap (or at once when its Content-Length says so) and the connection closed.
Resolving the host name is the one step not bounded (the system resolver has its own).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json as jsonlib
import logging
import math
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpx

from grading.judges import addresses

logger = logging.getLogger(__name__)


DEFAULT_MAX_REPLY_BYTES = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024


class ReplyTooLarge(Exception):
    """The judge's reply body passed the cap; the connection was closed."""


class DeadlineExceeded(TimeoutError):
    """The call's deadline passed; `phase` says what it was doing."""


def _seconds(value: float) -> str:
    return f"{round(value, 1):g}"


class _Deadlined:
    """A connection whose every socket operation ends by `self.deadline` (time.monotonic()):
    each connect, send and receive is given the time left, so the exchange as a whole is
    bounded, not each operation. `phase` names what it is doing, for the error."""

    deadline = math.inf
    phase = ""
    policy: addresses.Policy | None = None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(self.phase)
        return left

    def _checked_connection(self, address, timeout=None, source_address=None):
        host, port = address
        sock = addresses.connect(
            host, port, self._left(), source_address, policy=self.policy, deadline=self.deadline
        )
        try:
            sock.settimeout(self._left())  # what is left, for the TLS handshake
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self):
        self.phase = "connecting"
        self.timeout = self._left()
        super().connect()  # type: ignore[misc]

    def send(self, data):
        if self.sock is None:  # type: ignore[attr-defined]
            self.connect()
        self.phase = "sending the request"
        self.sock.settimeout(self._left())  # type: ignore[attr-defined]
        super().send(data)  # type: ignore[misc]

    def response_class(self, sock, *args, **kwargs):
        """http.client makes the response with this (a method here, so it sees the deadline):
        its reads go through _UntilDeadline, headers and body alike."""
        self.phase = "waiting for the reply"
        return http.client.HTTPResponse(_Reads(sock, self), *args, **kwargs)


class _Reads:
    """What HTTPResponse takes for its socket: it only asks it for its reader."""

    __slots__ = ("sock", "conn")

    def __init__(self, sock, conn: _Deadlined):
        self.sock, self.conn = sock, conn

    def makefile(self, mode: str):
        # The socket's own raw reader (counted by the socket, so a reply that closes the
        # connection can still be read to its end), under a deadline, buffered as usual.
        raw = self.sock.makefile(mode, buffering=0)
        return io.BufferedReader(_UntilDeadline(raw, self.sock, self.conn))


_TIMEOUTS = {"connecting": httpx.ConnectTimeout, "sending the request": httpx.WriteTimeout}


class _UntilDeadline(io.RawIOBase):
    """The socket's reader, each receive given what is left of the connection's deadline."""

    def __init__(self, raw, sock, conn: _Deadlined):
        self._raw, self._sock, self._conn = raw, sock, conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(self._conn._left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # the socket's own reader: lets the socket close
        super().close()


class _HTTPConnection(_Deadlined, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Deadlined, http.client.HTTPSConnection):
    pass


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytes:
    """The whole body, or ReplyTooLarge as soon as it passes `cap` bytes. On any error the
    response is closed (it may hold the socket: a reply that closes its connection)."""
    try:
        if response.length is not None:
            if response.length > cap:
                raise ReplyTooLarge(
                    f"judge reply exceeded {cap} bytes (it declared {response.length})"
                )
            return response.read()
        chunks, size = [], 0
        while chunk := response.read(READ_CHUNK):
            size += len(chunk)
            if size > cap:
                raise ReplyTooLarge(f"judge reply exceeded {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except BaseException:
        response.close()
        raise


class Reply:
    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers, content: bytes):
        self.status_code = status_code
        self.headers = headers  # http.client.HTTPMessage: case-insensitive .get
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return jsonlib.loads(self.content)


_waiting = threading.local()


@contextlib.contextmanager
def while_waiting(work):
    """Run `work()` on this thread once, right after its next judge request is sent: CPU work
    that then costs no latency, since the judge is answering meanwhile (the reply waits in the
    socket). It may not run at all (no call was made): the caller checks."""
    _waiting.work = work
    try:
        yield
    finally:
        _waiting.work = None


def _after_send() -> None:
    work = getattr(_waiting, "work", None)
    if work is not None:
        _waiting.work = None
        try:
            work()
        except Exception:  # the caller runs it again and sees the error
            logger.exception("work while waiting for the judge failed")


class Transport:
    def __init__(
        self, policy: addresses.Policy | None = None, max_reply_bytes: int | None = None
    ) -> None:
        self._local = threading.local()
        # Made at the first https connection: loading the system's certificates takes tens
        # of milliseconds of CPU, which a run's first calls to an http judge need not wait on.
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()
        self._policy = policy  # None: the operator's setting, read at each connection
        self._max_reply_bytes = max_reply_bytes  # None: the operator's setting, at each call

    def _tls(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            return self._ssl

    def _max_bytes(self) -> int:
        if self._max_reply_bytes is not None:
            return self._max_reply_bytes
        from django.conf import settings

        return getattr(settings, "JUDGE_MAX_REPLY_BYTES", DEFAULT_MAX_REPLY_BYTES)

    def _connection(self, scheme: str, host: str, port: int, deadline: float):
        pool = self._local.__dict__.setdefault("conns", {})
        key = (scheme, host, port)
        conn = pool.get(key)
        if conn is None:
            if scheme == "https":
                conn = _HTTPSConnection(host, port, context=self._tls())
            else:
                conn = _HTTPConnection(host, port)
            conn.policy = self._policy
            # http.client opens its socket with this hook (HTTPSConnection then wraps it with
            # server_hostname=host): the checked connection replaces socket.create_connection.
            conn._create_connection = conn._checked_connection
            pool[key] = conn
        conn.deadline, conn.phase = deadline, "connecting"
        return key, conn

    def _drop(self, key) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(key, None)
        if conn is not None:
            conn.close()

    def post(
        self,
        url: str,
        *,
        headers: dict[str, str],
        timeout: float,
        json: object = None,
        content: bytes | None = None,
    ) -> Reply:
        """POST `content` (bytes), or `json` encoded here, as httpx.Client.post does. The
        whole call ends within `timeout` seconds (see the module's docstring): httpx's
        ConnectTimeout, WriteTimeout or ReadTimeout saying so otherwise, or ReplyTooLarge."""
        try:
            target = addresses.parse(url)  # http(s), a host, no userinfo: as when saved
        except addresses.RefusedURL as exc:
            raise addresses.AddressRefused(str(exc)) from None
        parts = urlsplit(url)
        scheme, port = target.scheme, target.port
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = content if content is not None else jsonlib.dumps(json).encode()
        cap = self._max_bytes()
        deadline = time.monotonic() + timeout
        for fresh_try in range(2):
            key, conn = self._connection(scheme, target.host, port, deadline)
            reused = conn.sock is not None
            try:
                conn.request("POST", path, body=body, headers=headers)
                _after_send()
                response = conn.getresponse()
                conn.phase = "reading the reply"
                content = _read_capped(response, cap)
            except addresses.AddressRefused:
                self._drop(key)
                raise
            except ReplyTooLarge:
                self._drop(key)  # the rest of the body is never read
                raise
            except TimeoutError as exc:
                self._drop(key)
                phase = conn.phase or "waiting for the reply"
                raise _TIMEOUTS.get(phase, httpx.ReadTimeout)(
                    f"judge call exceeded its deadline of {_seconds(timeout)} s while {phase}"
                ) from exc
            except (http.client.HTTPException, OSError) as exc:
                self._drop(key)
                # A kept-alive connection the server closed meanwhile: one fresh try.
                if reused and fresh_try == 0:
                    continue
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            if response.will_close:
                self._drop(key)
            return Reply(response.status, response.headers, content)
        raise httpx.ConnectError("the connection closed")  # not reached

    def close(self) -> None:
        for conn in self._local.__dict__.get("conns", {}).values():
            conn.close()
