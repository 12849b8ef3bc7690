"""Run one job per host over a fleet: bounded parallelism, an optional canary first, and a stop when too
many hosts fail. Also the three jobs: deploy, rollback and status, as Python functions the tasks call."""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from fabric import Config

from deploy.build import Builder, validate_model
from deploy.errors import DeployError, InventoryError
from deploy.inventory import Host
from deploy.releases import AGENT_STATUS, previous_release
from deploy.report import CANCELLED, FAILED, INTERRUPTED, OK, HostResult
from deploy.ssh import Remote, connect, quote
from deploy.steps import HostSteps, Interrupt, Options, deploy_host, reason_for


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


def remote_opener(*, dry_run: bool = False, accept_new_host_keys: bool = False,
                  config: Config | None = None) -> Callable[[Host], Remote]:
    def open_remote(host: Host) -> Remote:
        if dry_run:
            return Remote(host.name, None)
        return Remote(host.name, connect(host, config=config, accept_new_host_keys=accept_new_host_keys))
    return open_remote


def progress(quiet: bool = False) -> Callable[[str], None]:
    """Progress lines on stderr, one at a time from many threads."""
    lock = threading.Lock()

    def say(text: str) -> None:
        if not quiet:
            with lock:
                print(text, file=sys.stderr, flush=True)
    return say


def deploy_fleet(hosts: list[Host], model: Path, *, builder: Builder | None = None, keep: int = 3,
                 health_timeout: float = 60.0, dry_run: bool = False, accept_new_host_keys: bool = False,
                 config: Config | None = None, parallel: int = 4, canary: str | None = None,
                 max_failures: float = 0.5, quiet: bool = False) -> list[HostResult]:
    """Validate the model, then deploy it to every host. A bad model fails here, before any host."""
    model = Path(model)
    if keep < 1:
        raise DeployError("--keep must be at least 1 (the current release)")
    model_info = validate_model(model)
    opener = remote_opener(dry_run=dry_run, accept_new_host_keys=accept_new_host_keys, config=config)
    with tempfile.TemporaryDirectory(prefix="bloomkit-deploy-") as staging:
        options = Options(model=model, model_info=model_info, builder=builder or Builder(dry_run=dry_run),
                          open_remote=opener, staging=Path(staging), keep=keep, health_timeout=health_timeout,
                          say=progress(quiet))
        return run_fleet(hosts, lambda host: deploy_host(host, options), parallel=parallel, canary=canary,
                         max_failures=max_failures, interrupt=options.interrupt)


def host_job(open_remote: Callable[[Host], Remote], work: Callable[[HostSteps, HostResult], None], *,
             lock: bool = False) -> Callable[[Host], HostResult]:
    """A job that connects, takes the host's deploy lock if it changes the host, reads the facts, runs
    `work`, and turns any failure into the result."""
    def job(host: Host) -> HostResult:
        result = HostResult(host.name)
        started = time.monotonic()
        steps = None
        try:
            steps = HostSteps(host, open_remote(host))
            result.stage = "preflight"
            if lock:
                steps.lock()
            facts = steps.read_facts()
            result.old = result.new = facts.current
            result.stage = None
            work(steps, result)
        except Exception as error:  # noqa: BLE001 - one line per host in the report
            result.status, result.stage = FAILED, "connect" if steps is None else result.stage or "host"
            result.reason = reason_for(error, steps)
        finally:
            if steps is not None:
                steps.remote.close()
            result.seconds = round(time.monotonic() - started, 2)
        return result
    return job


def rollback_work(to: str | None, health_timeout: float) -> Callable[[HostSteps, HostResult], None]:
    """Return to `to` (default: the newest release older than the current one that did not fail); if that
    one is not healthy, mark it failed and go back to where the host was. A release marked failed that the
    user chose with `to` and that proves healthy now (its failure was passing) loses its mark."""
    def work(steps: HostSteps, result: HostResult) -> None:
        facts = steps.facts
        target = to or previous_release(facts.releases, facts.current, facts.failed)
        if target is None or target not in facts.releases:
            result.stage = "rollback"
            raise DeployError(f"no release {to} on the host" if to else "no earlier release to roll back to")
        try:
            result.stage = "health"
            steps.activate(target, health_timeout)
        except DeployError as error:
            steps.mark_failed(target, f"health: {error}")
            if facts.current is not None:
                steps.activate(facts.current, health_timeout)
            raise
        result.status, result.stage, result.new = OK, None, target
        if target in facts.failed:
            steps.clear_failed(target)
            result.reason = "was marked failed, healthy now: mark cleared"
    return work


def status_work(steps: HostSteps, result: HostResult) -> None:
    """Release, health, fps and model of the host."""
    result.stage = "health"
    if steps.facts.current is None:
        raise DeployError("nothing deployed")
    healthz = steps.wait_healthy(0)
    model = healthz.get("model") or {}
    result.status, result.stage = OK, None
    result.detail = {"fps": healthz.get("fps"), "model": model.get("name"), "model_version": model.get("version"),
                     "sha256": model.get("sha256"), "uptime_s": healthz.get("uptime_s"), "agent": agent_status(steps)}


def agent_status(steps: HostSteps) -> dict | None:
    """The update agent's status file (docs/ota.md), if the host runs one."""
    path = f"{steps.layout.root}/{AGENT_STATUS}"
    text = steps.remote.run(f"cat {quote(path)} 2>/dev/null || true").strip()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"state": "unreadable", "last_error": f"{path} is damaged"}

