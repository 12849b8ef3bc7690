"""Run one job per host over a fleet: bounded parallelism, an optional canary first, and a stop when too
many hosts fail. Also the three jobs: deploy, rollback and status, as Python functions the tasks call."""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from fabric import Config

from deploy.build import Builder, validate_model
from deploy.errors import DeployError, InventoryError
from deploy.inventory import Host
from deploy.releases import previous_release
from deploy.report import CANCELLED, FAILED, OK, HostResult
from deploy.ssh import Remote, connect
from deploy.steps import HostSteps, Options, deploy_host, reason_for


def run_fleet(hosts: list[Host], job: Callable[[Host], HostResult], *, parallel: int = 4,
              canary: str | None = None, max_failures: float = 0.5) -> list[HostResult]:
    """`job` on every host, at most `parallel` at once; results in the hosts' order."""
    if parallel < 1:
        raise InventoryError("--parallel must be at least 1")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InventoryError("a host is listed twice")
    results: dict[str, HostResult] = {}
    queue = list(hosts)
    if canary is not None:
        if canary not in names:
            raise InventoryError(f"canary {canary!r} is not among the selected hosts")
        first = queue.pop(names.index(canary))
        results[canary] = job(first)
        if not results[canary].ok:
            return _cancel_rest(hosts, results, f"canary {canary} did not succeed")
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        running = set()
        while queue or running:
            failed = sum(not r.ok for r in results.values())
            if failed > max_failures * len(hosts):
                queue.clear()
            while queue and len(running) < parallel:
                host = queue.pop(0)
                future = pool.submit(job, host)
                future.host = host
                running.add(future)
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                results[future.host.name] = future.result()
    reason = f"stopped: more than {max_failures:.0%} of the hosts failed"
    return _cancel_rest(hosts, results, reason)


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
                         max_failures=max_failures)


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
                     "sha256": model.get("sha256"), "uptime_s": healthz.get("uptime_s")}

