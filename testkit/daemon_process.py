"""`device run` in a subprocess, for the daemon tests and benchmarks: its address, HTTP answers, shutdown."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO


class DaemonProcess:
    """`device run ARGS` in a subprocess, with its HTTP address read from its log."""

    def __init__(self, *args: str, cwd: Path | None = None, stdout: int | IO = subprocess.DEVNULL) -> None:
        command = [sys.executable, "-m", "device.cli", "run", *args]
        self.process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.log: list[str] = []
        self.url: str | None = None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            if "live page on " in line:
                self.url = line.split("live page on ", 1)[1].strip().rstrip("/")

    def wait_for(self, condition, timeout: float = 30.0, what: str = "the daemon"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"{what}: the daemon exited {self.process.returncode}: {self.log}")
            time.sleep(0.1)
        raise AssertionError(f"{what}: timed out; log: {self.log}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.get(path)
        return status, json.loads(body)

    def healthy(self, timeout: float = 30.0) -> dict:
        self.wait_for(lambda: self.url, timeout, "the HTTP address")
        return self.wait_for(lambda: (lambda r: r[0] == 200 and r[1])(self.json("/healthz")), timeout, "/healthz 200")

    def terminate(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def parse_metrics(text: str) -> dict[str, float]:
    """/metrics as {name with labels: value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def read_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def switch_symlink(link: Path, target: Path) -> None:
    """Point `link` at `target` atomically, as a deploy switches `current`."""
    staged = link.with_name(link.name + ".new")
    staged.symlink_to(target)
    os.replace(staged, link)


def with_version(model: Path, path: Path, version: str) -> Path:
    """Write to `path` the model `model` under another metadata version, as a new release brings it."""
    from device.metadata import read_model_info, write_metadata

    data = model.read_bytes()
    info = read_model_info(data)
    path.write_bytes(write_metadata(data, info.labels, mean=info.mean, std=info.std, name="flowers", version=version))
    return path
