"""The outline every per-host job runs inside: connect, take the deploy lock (jobs that change the host),
read the facts, do the job's work stage by stage, turn any failure into the report's one line, close.
Stages are timed for the report, and entering a stage before anything live changes stops the job once
Ctrl-C came (the job's safe points)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Collection

from deploy.errors import ConnectError, DeployError
from fabric import Config

from deploy.fleet import Interrupt, run_fleet
from deploy.inventory import Host
from deploy.report import FAILED, INTERRUPTED, HostResult
from deploy.ssh import Remote, describe_ssh_error, remote_opener
from deploy.steps import HostSteps

# Stages whose start leaves nothing live changed yet: where a job stops after Ctrl-C.
SAFE_TO_STOP = ("preflight", "build", "upload", "verify", "venv", "switch")


class Interrupted(DeployError):
    """Ctrl-C stopped a host's job at a stage boundary before anything live changed."""


class Stages:
    """Where a host's job is, and the seconds each stage took (for the report's detail and benchmarks);
    entering a safe stage stops the job if Ctrl-C came."""

    def __init__(self, host: str, interrupt: Interrupt, safe: Collection[str] = SAFE_TO_STOP) -> None:
        self.name, self.started, self.seconds = "connect", time.monotonic(), {}
        self.host, self.interrupt, self.safe = host, interrupt, safe

    def enter(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[self.name] = round(self.seconds.get(self.name, 0.0) + now - self.started, 3)
        self.name, self.started = name, now
        self.interrupt.stage_of[self.host] = name
        if name in self.safe and self.interrupt.requested.is_set():
            raise Interrupted("interrupted (Ctrl-C) before this stage: nothing live changed", stage=name)


    def replay(self, timed: list[list]) -> None:
        """The stages one call on the host went through, timed there ([[stage, seconds], …]), in place of the
        time since the current stage was entered; the last one is where the job now is."""
        if not timed:
            return
        for name, seconds in timed[:-1]:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)
        self.name, self.started = timed[-1][0], time.monotonic() - timed[-1][1]
        self.interrupt.stage_of[self.host] = self.name


Work = Callable[[HostSteps, HostResult, Stages], None]
Recover = Callable[[HostSteps, HostResult, Stages], None]


def host_job(work: Work, *, open_remote: Callable[[Host], Remote], interrupt: Interrupt, lock: bool = False,
             recover: Recover | None = None, facts: bool = True) -> Callable[[Host], HostResult]:
    """One host's job for `run_fleet`: the outline around `work`, which sets the result's status (and new
    release, reason, detail) as it goes and raises on failure. `recover` runs after a failure, once the
    failed connection is closed (e.g. a deploy's switch back). `facts=False`: a job that needs no facts
    (fab collect) spares the round trip. Never raises: every failure becomes the result's stage and
    one-line reason."""
    def job(host: Host) -> HostResult:
        result = HostResult(host.name)
        started = time.monotonic()
        stages = Stages(host.name, interrupt)
        steps: HostSteps | None = None
        try:
            steps = HostSteps(host, open_remote(host))
            stages.enter("preflight")
            if lock:
                steps.lock()
            if facts:
                result.old = result.new = steps.read_facts().current
            work(steps, result, stages)
        except Exception as error:  # noqa: BLE001 - the report carries one line per host, never a traceback
            result.status = INTERRUPTED if isinstance(error, Interrupted) else FAILED
            result.reason = reason_for(error, steps)
            result.stage = "connect" if steps is None or isinstance(error, ConnectError) else stages.name
            if steps is not None:
                steps.remote.close()
                if recover is not None:
                    recover(steps, result, stages)
        finally:
            if steps is not None:
                steps.remote.close()
            stages.enter("done")
            result.seconds = round(time.monotonic() - started, 2)
            result.detail = {**(result.detail or {}), "stages": stages.seconds}
        return result
    return job


def run_on_hosts(hosts: list[Host], work: Work, *, lock: bool = False, parallel: int = 4, facts: bool = True,
                 accept_new_host_keys: bool = False, config: Config | None = None) -> list[HostResult]:
    """`work` on each host (a job other than a deploy): every host is tried, whatever the others did."""
    interrupt = Interrupt()
    opener = remote_opener(accept_new_host_keys=accept_new_host_keys, config=config)
    job = host_job(work, open_remote=opener, interrupt=interrupt, lock=lock, facts=facts)
    return run_fleet(hosts, job, parallel=parallel, max_failures=1.0, interrupt=interrupt)


def reason_for(error: BaseException, steps: HostSteps | None) -> str:
    """The one line a report shows for a failure."""
    if isinstance(error, DeployError):
        return str(error)
    return describe_ssh_error(error, steps.remote.conn if steps is not None else None)


def progress(quiet: bool = False) -> Callable[[str], None]:
    """Progress lines on stderr, one at a time from many threads."""
    lock = threading.Lock()

    def say(text: str) -> None:
        if not quiet:
            with lock:
                print(text, file=sys.stderr, flush=True)
    return say
