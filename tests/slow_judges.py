"""Judges that misbehave at the socket, on loopback: real servers, for the deadline tests.

* ``trickle``: reads the request, sends 200 and its headers (a Content-Length it never
  reaches), then one byte of body a second, for as long as the client listens;
* ``silent``: reads the request and never answers;
* ``endless``: sends 200 with no length and body bytes as fast as the client takes them;
* ``declared``: sends 200 with a Content-Length of a gigabyte, then bytes as fast as it can;
* ``deaf``: accepts the connection and never reads from it (a large request cannot be sent);
* ``no_accept``: a listening socket whose backlog is already full: connecting never completes.

Each server counts the connections it served and how long each stayed open (until the client
closed it), so a test can say the client gave up, not only that it returned.
"""

from __future__ import annotations

import socket
import threading
import time

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
HEADERS = {
    "trickle": _OK + b"Content-Length: 100000\r\n\r\n",
    "endless": _OK + b"Connection: close\r\n\r\n",
    "declared": _OK + b"Content-Length: 1000000000\r\n\r\n",
}


class SlowJudge:
    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.served: list[float] = []  # seconds each connection stayed open
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._filler: socket.socket | None = None
        if behaviour == "no_accept":
            # Linux queues one connection at backlog 0: fill it, and connects from then on
            # wait for a SYN-ACK that never comes.
            self.sock.listen(0)
            self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        else:
            self.sock.listen(64)
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with self._lock:
            self.open += 1
        try:
            if self.behaviour == "deaf":
                self._stop.wait(60)
                return
            if not self._read_request(conn):
                return
            if self.behaviour == "silent":
                conn.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        if not conn.recv(1024):
                            return  # the client closed
                    except TimeoutError:
                        continue
                return
            conn.sendall(HEADERS[self.behaviour])
            if self.behaviour == "trickle":
                while not self._stop.is_set():
                    conn.sendall(b" ")
                    time.sleep(1)
            else:
                block = b" " * 65536
                while not self._stop.is_set():
                    conn.sendall(block)
        except OSError:
            return  # the client closed: a send failed
        finally:
            conn.close()
            with self._lock:
                self.open -= 1
                self.served.append(time.monotonic() - started)

    def wait_all_closed(self, timeout: float = 5) -> None:
        """The client closing shows here within about a second (the next byte's send)."""
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.open == 0, f"{self.open} connections still open"

    def close(self) -> None:
        self._stop.set()
        if self._filler is not None:
            self._filler.close()
        self.sock.close()
