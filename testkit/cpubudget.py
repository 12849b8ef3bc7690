"""A CPU budget for one loopback host: a cgroup v1 `cpu` quota holding its sshd, and thereby everything the
sshd starts. benchmarks/deploy_speed.py gives each host a CPU of its own this way, as each Pi of a fleet has,
instead of a share of this machine's cores."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
# The kernel lets a cgroup spend its quota in bursts of one period and then stalls it for the rest: a short
# period (the default is 100 ms) spreads the CPU evenly, more like a slower processor than one that pauses.
PERIOD_US = 10_000
MIN_QUOTA_US = 1_000   # the kernel's least quota
MIN_CORES = MIN_QUOTA_US / PERIOD_US
EXIT_WAIT_S = 5


class CpuBudget:
    """A cgroup whose processes together get at most `cores` of CPU; a process's children stay in it."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, name: str, cores: float) -> CpuBudget:
        if cores < MIN_CORES:
            raise ValueError(f"a CPU budget needs at least {MIN_CORES} cores, not {cores}")
        path = CPU_CGROUPS / name
        path.mkdir()
        budget = cls(path)
        try:
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(round(cores * PERIOD_US)))
        except OSError:
            budget.close()
            raise
        return budget

    def enter(self) -> None:
        """Move the calling process in (a `preexec_fn`: what it then execs and starts stays in)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def close(self) -> None:
        """Kill what is still running in it (its host is being torn down), then remove it; a process that
        does not die in time is moved back to the root cgroup, so the removal cannot fail on it."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + EXIT_WAIT_S
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids():
            try:
                (CPU_CGROUPS / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                pass
        self.path.rmdir()


def unavailable_reason() -> str | None:
    """Why CPU budgets cannot be set on this machine (no cgroup v1 `cpu` controller, not root...), or None."""
    try:
        CpuBudget.create(f"bloomkit-probe-{os.getpid()}", 1.0).close()
    except OSError as error:
        return f"cannot create a cgroup in {CPU_CGROUPS}: {error.strerror or error}"
    return None
