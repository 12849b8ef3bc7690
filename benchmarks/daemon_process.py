"""`device run` in a subprocess for the daemon benchmarks: start it, read its /metrics and /proc numbers."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.daemon_process import DaemonProcess  # noqa: E402

SHARED = REPO.parent / "shared"
REFERENCE_MODEL = SHARED / "models" / "model-maker-flowers-int8.tflite"
FLOWERS = SHARED / "data" / "flowers-mini"


class Daemon(DaemonProcess):
    """The tests' `device run` subprocess, on a free port, started and serving; plus metrics and /proc numbers."""

    def __init__(self, *args: str, code: Path = REPO) -> None:
        """`code`: the checkout whose `device` runs (another commit's, for a baseline in the same run)."""
        super().__init__("--http", "127.0.0.1:0", *args, cwd=code)
        self.wait_for(lambda: self.url, 60, "the HTTP address")

    def metrics(self) -> dict[str, float]:
        samples = {}
        for line in self.get("/metrics")[1].decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def wait_for_count(self, counter: str, count: int, timeout: float) -> dict[str, float]:
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
        return self.terminate(timeout=30)
