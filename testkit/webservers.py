"""Real servers for the OTA tests and benchmarks, each on a free loopback port with its files in a temporary folder:
Debian's nginx serving a release store, Mosquitto for the agents' reports, a proxy that cuts downloads."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from testkit.processes import free_port

NGINX = Path("/usr/sbin/nginx")
MOSQUITTO = Path("/usr/sbin/mosquitto")


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


@dataclass
class Server:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(root: Path, directory: Path) -> Server:
    """nginx in the foreground, as this user, serving `root` (ETag, Last-Modified and Range as it always does),
    with its pid, logs and temp paths under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log {directory}/access.log;\n"
        + "".join(f"  {kind}_temp_path {directory}/{kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")) +
        "  types { application/json json; }\n  default_type application/octet-stream;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n")
    process = subprocess.Popen([str(NGINX), "-p", str(directory), "-c", str(directory / "nginx.conf")],
                               stderr=open(directory / "stderr.log", "wb"), start_new_session=True)
    wait_for_port(port, process, "nginx")
    return Server(port, process)


def start_mosquitto(directory: Path) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (directory / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([str(MOSQUITTO), "-c", str(directory / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=open(directory / "mosquitto.log", "wb"),
                               start_new_session=True)
    wait_for_port(port, process, "mosquitto")
    return Server(port, process)


class CuttingProxy:
    """A TCP proxy to `upstream` that closes the first `cuts` connections after `cut_after` bytes of the answer
    (headers included), the way a dropped link ends a download; counts the bytes it passed on. With `instead`,
    it calls that there (e.g. to fill the disk the download goes to) and passes the rest on."""

    def __init__(self, upstream: int, cut_after: int | None = None, cuts: int = 1,
                 instead: Callable[[], None] | None = None) -> None:
        self.upstream, self.cut_after, self.cuts, self.instead = upstream, cut_after, cuts, instead
        self.passed = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as server:
            request = client.recv(65536)
            self.requests.append(request)
            server.sendall(request)
            sent = 0
            while True:
                data = server.recv(65536)
                if not data:
                    return
                if self.cuts and self.cut_after is not None and sent + len(data) >= self.cut_after:
                    self.cuts -= 1
                    if self.instead is not None:
                        self.instead()
                    else:
                        data = data[: self.cut_after - sent]
                        client.sendall(data)
                        self.passed += len(data)
                        client.shutdown(socket.SHUT_RDWR)
                        return
                try:
                    client.sendall(data)
                except OSError:          # the client gave up (e.g. its disk is full)
                    return
                sent += len(data)
                self.passed += len(data)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination
