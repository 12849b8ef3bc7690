"""A network link to a test host that a test can stall and cut at a chosen point of a transfer: a TCP relay on
a loopback port of its own. A watcher thread that races a transfer to cut it can lose (on a loaded machine
the transfer ends before the watcher runs); the relay asks its condition before passing on each chunk the
client sends, so the transfer cannot get past that point until the test lets it."""
from __future__ import annotations

import socket
import struct
import threading
from typing import Callable

CHUNK = 64 * 1024


class Link:
    """Client connections to 127.0.0.1:`port`, each relayed to 127.0.0.1:`target`.

    `hold_when(condition)`: from then on, each chunk from a client waits until `condition()` is false; once it
    is true, `holding` is set and nothing more goes to the host until `release()` (the client's sends stall
    when the buffers are full, as on a stalled network). `cut()` drops every connection at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.holding = threading.Event()
        self._condition: Callable[[], bool] | None = None
        self._released = threading.Event()
        self._sockets: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_when(self, condition: Callable[[], bool]) -> None:
        self._released.clear()
        self._condition = condition

    def release(self) -> None:
        self._condition = None
        self._released.set()

    def cut(self) -> None:
        """Reset every connection, as a dropped network link does; new ones are refused too."""
        self._cut = True
        self._released.set()
        for sock in [self.listener, *self._sockets]:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def _accept(self) -> None:
        while not self._cut:
            try:
                client, _ = self.listener.accept()
                host = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self._sockets += [client, host]
            threading.Thread(target=self._relay, args=(client, host, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(host, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(CHUNK):
                condition = self._condition
                if from_client and condition is not None and condition():
                    self.holding.set()
                    self._released.wait()
                if self._cut:
                    return
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
