"""Run one job per host over a fleet: bounded parallelism, an optional canary first, a stop when too many
hosts fail, and Ctrl-C. It knows hosts and their results only; what a job does on a host is its own."""
from __future__ import annotations

import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from deploy.errors import InventoryError
from deploy.inventory import Host
from deploy.report import CANCELLED, INTERRUPTED, HostResult


@dataclass
class Interrupt:
    """Ctrl-C during a fleet run, as the hosts' jobs see it: `requested` once it came; `stage_of` says
    where each host's job is, for the report if they are abandoned."""

    requested: threading.Event = field(default_factory=threading.Event)
    stage_of: dict[str, str] = field(default_factory=dict)


class FleetInterrupted(KeyboardInterrupt):
    """Ctrl-C during a fleet run, with the report of every host; `abandoned`: hosts were left mid-stage."""

    def __init__(self, results: list[HostResult], abandoned: bool) -> None:
        super().__init__("interrupted")
        self.results, self.abandoned = results, abandoned


def run_fleet(hosts: list[Host], job: Callable[[Host], HostResult], *, parallel: int = 4,
              canary: str | None = None, max_failures: float = 0.5,
              interrupt: Interrupt | None = None) -> list[HostResult]:
    """`job` on every host, at most `parallel` at once; results in the hosts' order. Every job runs in a
    worker thread, so that Ctrl-C reaches this one: it starts no more hosts, asks the running ones to stop
    at their next safe point (`interrupt`) and waits for them; a second Ctrl-C stops waiting. Either way
    FleetInterrupted carries the report."""
    if parallel < 1:
        raise InventoryError("--parallel must be at least 1")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InventoryError("a host is listed twice")
    if canary is not None and canary not in names:
        raise InventoryError(f"canary {canary!r} is not among the selected hosts")
    interrupt = interrupt or Interrupt()
    results: dict[str, HostResult] = {}
    queue = list(hosts)
    running: dict[Future, Host] = {}
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        if canary is not None:
            first = queue.pop(names.index(canary))
            results[canary] = _finish(pool.submit(job, first), running, first)
            if not results[canary].ok:
                return _cancel_rest(hosts, results, f"canary {canary} did not succeed")
        while queue or running:
            failed = sum(not r.ok for r in results.values())
            if failed > max_failures * len(hosts):
                queue.clear()
            while queue and len(running) < parallel:
                host = queue.pop(0)
                running[pool.submit(job, host)] = host
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                results[running.pop(future).name] = future.result()
    except KeyboardInterrupt:
        raise _interrupted(hosts, results, running, interrupt) from None
    finally:
        pool.shutdown(wait=False)
    return _cancel_rest(hosts, results, f"stopped: more than {max_failures:.0%} of the hosts failed")


def _finish(future: Future, running: dict[Future, Host], host: Host) -> HostResult:
    running[future] = host
    result = future.result()
    del running[future]
    return result


def _interrupted(hosts: list[Host], results: dict[str, HostResult], running: dict[Future, Host],
                 interrupt: Interrupt) -> FleetInterrupted:
    """After Ctrl-C: the running hosts stop at their next safe point and are waited for, unless Ctrl-C
    comes again; then those still running are reported INTERRUPTED in the stage they were in."""
    interrupt.requested.set()
    print("fab: interrupted: stopping each running host at a safe point (Ctrl-C again to quit at once)",
          file=sys.stderr, flush=True)
    abandoned = False
    try:
        for future, host in list(running.items()):
            results[host.name] = future.result()
            del running[future]
    except KeyboardInterrupt:
        abandoned = True
    for host in running.values():
        stage = interrupt.stage_of.get(host.name)
        results[host.name] = HostResult(host.name, INTERRUPTED, stage=stage,
                                        reason="interrupted: abandoned mid-stage, see `fab status`")
    return FleetInterrupted(_cancel_rest(hosts, results, "interrupted before it started"), abandoned)


def _cancel_rest(hosts: list[Host], results: dict[str, HostResult], reason: str) -> list[HostResult]:
    for host in hosts:
        results.setdefault(host.name, HostResult(host.name, CANCELLED, stage="fleet", reason=reason))
    return [results[h.name] for h in hosts]
