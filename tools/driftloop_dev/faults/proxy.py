"""A loopback HTTP fault proxy: what a flaky network or a failing server looks like to a client.

:class:`FaultProxy` listens on 127.0.0.1 and forwards to one service (moto S3, the MLflow
server). A test switches its :class:`Fault` at run time:

``pass``      forward everything;
``refuse``    close the listening socket and every open connection: new connections get
              ``ECONNREFUSED``, as from a server that is down;
``reset``     on the next request, answer with a TCP RST (``SO_LINGER`` 0, then close);
``stall``     accept and read the request, never answer: the client must time out;
``http500``   answer ``HTTP/1.1 500`` to the request and close the connection.

The proxy reads each *request* (request line, headers, body by ``Content-Length`` or chunked)
before it forwards it, so a fault switched on also hits connections that a client keeps in its
pool, and a fault may apply only to requests whose method and path match (``match``: e.g. only
``POST .../registered-models/alias``, "the alias moved but the tag write failed"), and only
after the first ``after`` matching requests have passed ("the first alias moved, the second
did not"). Responses
are piped back unparsed: clients send one request at a time per connection.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from dataclasses import dataclass, field

HOST = "127.0.0.1"
MODES = ("pass", "refuse", "reset", "stall", "http500")
_MAX_HEADER = 256 * 1024


@dataclass(frozen=True)
class Fault:
    """A fault mode and, optionally, the requests it applies to (``method`` exact,
    ``path`` a regular expression searched in the request target; ``after``: that many
    matching requests pass first, counted from when the fault is set); others pass."""

    mode: str = "pass"
    method: str | None = None
    path: str | None = None
    after: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"fault mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "refuse" and (self.method or self.path or self.after):
            raise ValueError("refuse acts on connections, not requests: it takes no match")
        if self.after < 0:
            raise ValueError(f"after must be >= 0, not {self.after}")

    def matches(self, method: str, target: str) -> bool:
        """The request is one this fault is about (``after`` aside)."""
        if self.mode == "pass":
            return False
        if self.method and method.upper() != self.method.upper():
            return False
        return not (self.path and not re.search(self.path, target))

    def __str__(self) -> str:
        match = " ".join(x for x in (self.method, self.path) if x)
        if self.after:
            match = f"{match} after {self.after}".strip()
        return f"{self.mode}[{match}]" if match else self.mode


@dataclass
class FaultStats:
    """What the proxy did: requests forwarded and faults applied, per mode."""

    forwarded: int = 0
    faulted: dict[str, int] = field(default_factory=dict)


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``target_port``; :meth:`set` switches the fault."""

    def __init__(self, target_port: int, *, target_host: str = HOST, name: str = ""):
        self.name = name or f"proxy:{target_port}"
        self.target = (target_host, target_port)
        self.port = 0
        self.stats = FaultStats()
        self._fault = Fault()
        self._matched = 0  # requests the current fault matched so far (for ``after``)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._stalled: set[socket.socket] = set()
        self._listen()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def fault(self) -> Fault:
        return self._fault

    def set(self, fault: Fault | str) -> None:
        """Switch to ``fault`` (a :class:`Fault` or a mode name) for what comes next."""
        fault = Fault(fault) if isinstance(fault, str) else fault
        with self._lock:
            self._fault = fault
            self._matched = 0
            stalled, self._stalled = self._stalled, set()
        for conn in stalled:  # a stall ends with the fault: its clients have given up
            _close(conn)
        if fault.mode == "refuse":
            self._refuse()
        else:
            self._listen()

    def close(self) -> None:
        self._refuse()

    # -- connections ------------------------------------------------------------------------

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, self.port))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _refuse(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = self._open, set()
        if listener is not None:
            _close(listener)
        for conn in connections:
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused: the listener is closed
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    return
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        reader = _Reader(client)
        try:
            while True:
                request = reader.request()
                if request is None:
                    return  # the client closed its connection
                method, target, raw = request
                fault = self._fault
                if self._hits(fault, method, target):
                    self._count(fault.mode)
                    self._apply(fault.mode, client)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=30)
                    upstream.settimeout(None)
                    with self._lock:
                        self._open.add(upstream)
                    threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
                upstream.sendall(raw)
                self.stats.forwarded += 1
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
            if client not in self._stalled:
                _close(client)
            if upstream is not None:
                _close(upstream)

    def _apply(self, mode: str, client: socket.socket) -> None:
        if mode == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        elif mode == "http500":
            body = b"fault injected by driftloop_dev.faults\n"
            client.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Connection: close\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        elif mode == "stall":
            with self._lock:
                self._stalled.add(client)  # held open, unanswered, until the fault changes

    def _hits(self, fault: Fault, method: str, target: str) -> bool:
        if not fault.matches(method, target):
            return False
        with self._lock:
            if fault is not self._fault:
                return False  # switched while the request was read
            self._matched += 1
            return self._matched > fault.after

    def _count(self, mode: str) -> None:
        with self._lock:
            self.stats.faulted[mode] = self.stats.faulted.get(mode, 0) + 1


class _Reader:
    """Reads whole HTTP/1.1 requests (head + body) from a client socket."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise OSError("client closed in the middle of a request")
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEADER or not self._fill():
                raise OSError("no complete line")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def request(self) -> tuple[str, str, bytes] | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEADER:
                raise OSError("request head too large")
            if not self._fill():
                if self.buffer:
                    raise OSError("client closed in the middle of a request head")
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            # the proxy reads the whole body before it decides: say "go on" itself (botocore
            # would otherwise wait a second for it on every PUT) and forward without the header
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            kept = [line for line in lines if not line.lower().startswith("expect:")]
            head = "\r\n".join(kept).encode("latin-1")
        raw = head + b"\r\n\r\n"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self._line()
                raw += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:  # trailers (aws-chunked checksums), then an empty line
                    while (line := self._line()) != b"\r\n":
                        raw += line
                    raw += line
                    break
                raw += self._take(size + 2)  # data + CRLF
        elif "content-length" in headers:
            raw += self._take(int(headers["content-length"]))
        return method, target, raw


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
