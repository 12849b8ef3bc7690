"""`device run` in a subprocess for the daemon benchmarks: start it, read its /metrics and /proc numbers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REFERENCE_MODEL = SHARED / "models" / "model-maker-flowers-int8.tflite"
FLOWERS = SHARED / "data" / "flowers-mini"


class Daemon:
    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "device.cli", "run", "--http", "127.0.0.1:0", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url: str | None = None
        self.log: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + 60
        while self.url is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {self.log}")
            time.sleep(0.05)

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            if "live page on " in line:
                self.url = line.split("live page on ", 1)[1].strip().rstrip("/")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read()

    def metrics(self) -> dict[str, float]:
        samples = {}
        for line in self.get("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def wait_for(self, counter: str, count: int, timeout: float) -> dict[str, float]:
        """The metrics once `counter` (e.g. bloomkit_inferences_total) has reached `count`."""
        deadline = time.monotonic() + timeout
        while True:
            metrics = self.metrics()
            if metrics[counter] >= count:
                return metrics
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"{counter} did not reach {count} in {timeout} s: {self.log}")
            time.sleep(0.2)

    def resources(self) -> dict[str, int]:
        """Resident memory (kB), threads and open file descriptors, from /proc."""
        status = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            status[key] = value.split()
        return {"rss_kb": int(status["VmRSS"][0]), "threads": int(status["Threads"][0]),
                "fds": len(os.listdir(f"/proc/{self.process.pid}/fd"))}

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)
