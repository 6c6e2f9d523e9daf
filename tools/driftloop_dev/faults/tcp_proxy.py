"""A TCP proxy on 127.0.0.1 that can make a service unreachable and reachable again.

moto keeps its buckets in memory, so stopping it would lose the data: the faults test puts
this proxy between Airflow's tasks and moto instead. ``refuse()`` closes the listening socket
and every open connection, so new connections get ``ECONNREFUSED`` exactly as from a server
that is down; ``accept()`` listens on the same port again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

HOST = "127.0.0.1"


class TcpProxy:
    def __init__(self, target_port: int, *, listen_port: int = 0, target_host: str = HOST):
        self.target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.port = listen_port
        self.refusals: list[tuple[float, float | None]] = []  # (from, until) in time.time()
        self.accept()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    def accept(self) -> None:
        """Listen (again) on the proxy's port."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, self.port))
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._listener = listener
            if self.refusals and self.refusals[-1][1] is None:
                self.refusals[-1] = (self.refusals[-1][0], time.time())
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Stop listening and cut every open connection: the service is unreachable."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = self._open, set()
            if listener is not None:
                self.refusals.append((time.time(), None))
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.refuse()
        if self.refusals:
            self.refusals.pop()  # closing is not an outage

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused: the listener is closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # refused meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
