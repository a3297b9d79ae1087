"""A lean HTTP/1.1 keep-alive transport for judge calls, on the standard library.

The engine makes hundreds of judge calls a second per process; httpx spends about a
millisecond of CPU on each, http.client under half of that. This class offers the small part
of httpx's interface the judge client uses (`post(url, json=, headers=, timeout=)` returning
an object with `status_code`, `headers`, `text` and `json()`), and raises httpx's exception
types, so JudgeClient's retry rules are the same for both. One connection per thread and host.

Every new connection goes through grading.judge_urls.connect: the host is resolved once, each
address is checked (metadata and link-local never, private and loopback only if the operator
allows), and the socket connects to a checked address, so a DNS answer that changes after a
judge was saved (rebinding) cannot reach a refused address. TLS still verifies the certificate
for the URL's host name and sends it as SNI. http.client never follows redirects and reads no
proxy settings from the environment.
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import logging
import ssl
import threading
from urllib.parse import urlsplit

import httpx

from grading import judge_urls

logger = logging.getLogger(__name__)


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
    def __init__(self, policy: judge_urls.Policy | None = None) -> None:
        self._local = threading.local()
        # Made at the first https connection: loading the system's certificates takes tens
        # of milliseconds of CPU, which a run's first calls to an http judge need not wait on.
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()
        self._policy = policy  # None: the operator's setting, read at each connection

    def _tls(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            return self._ssl

    def _create_connection(self, address, timeout=None, source_address=None):
        host, port = address
        return judge_urls.connect(host, port, timeout, source_address, policy=self._policy)

    def _connection(self, scheme: str, host: str, port: int, timeout: float):
        pool = self._local.__dict__.setdefault("conns", {})
        key = (scheme, host, port)
        conn = pool.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            # http.client opens its socket with this hook (HTTPSConnection then wraps it with
            # server_hostname=host): the checked connection replaces socket.create_connection.
            conn._create_connection = self._create_connection
            pool[key] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
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
        """POST `content` (bytes), or `json` encoded here, as httpx.Client.post does."""
        try:
            target = judge_urls.parse(url)  # http(s), a host, no userinfo: as when saved
        except judge_urls.RefusedURL as exc:
            raise judge_urls.AddressRefused(str(exc)) from None
        parts = urlsplit(url)
        scheme, port = target.scheme, target.port
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = content if content is not None else jsonlib.dumps(json).encode()
        for fresh_try in range(2):
            key, conn = self._connection(scheme, target.host, port, timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", path, body=body, headers=headers)
                _after_send()
                response = conn.getresponse()
                content = response.read()
            except judge_urls.AddressRefused:
                self._drop(key)
                raise
            except TimeoutError as exc:
                self._drop(key)
                raise httpx.ReadTimeout(f"no reply within {timeout:g} s") from exc
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
