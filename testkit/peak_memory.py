"""Run a command and measure its peak memory: the process's own high-water mark (the kernel's, exact) and the
sum over its process tree (sampled), so children it starts count too."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float  # user + system, of the process and the children it waited for
    peak_rss: int  # bytes: the larger of the process's own peak and the sampled peak of its tree's sum

    @property
    def peak_rss_mb(self) -> int:
        return round(self.peak_rss / 2**20)


def run_measured(command: list[str], *, env: dict | None = None, cwd: Path | None = None,
                 timeout: float | None = None) -> Measured:
    """Run `command` to its end (killed after `timeout` seconds) and report its output, time and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=cwd)
        tree_peak, own_peak, cpu, status = 0, 0, 0.0, None
        try:
            watched = psutil.Process(process.pid)
            while status is None:
                tree_peak = max(tree_peak, _tree_rss(watched))
                pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    status, own_peak = wait_status, usage.ru_maxrss * 1024  # Linux gives KiB
                    cpu = usage.ru_utime + usage.ru_stime
                elif timeout is not None and time.perf_counter() - began > timeout:
                    process.kill()
                else:
                    time.sleep(SAMPLE_SECONDS)
        finally:
            if status is None:
                process.kill()
                process.wait()
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        return Measured(process.returncode, out.read(), err.read(), seconds, cpu, max(own_peak, tree_peak))


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:  # it ended meanwhile
            pass
    return total
