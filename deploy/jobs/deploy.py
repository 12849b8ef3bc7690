"""`fab deploy` on one host: build, upload, verify, venv, switch, reload or restart, health, prune; after a
failure past the switch, the switch back over a fresh connection."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fabric import Config

from deploy.build import Builder, validate_model
from deploy.errors import DeployError
from deploy.fleet import Interrupt, run_fleet
from deploy.inventory import Host
from deploy.outline import Stages, host_job, progress, reason_for
from deploy.releases import new_version, stage
from deploy.report import DRY_RUN, FAILED, OK, ROLLED_BACK, SKIPPED, HostResult
from deploy.ssh import Remote, remote_opener
from deploy.steps import HostSteps
from device.daemon.mqtt import CREDENTIALS_FILE

LOCK_REGAIN_S = 10.0       # for the rollback's connection to take the lock the failed one held


@dataclass
class Options:
    """Everything a host's deploy needs besides the host."""

    model: Path
    model_info: dict
    builder: Builder
    open_remote: Callable[[Host], Remote]
    staging: Path                                  # where each host's release is laid out before upload
    keep: int = 3
    health_timeout: float = 60.0
    say: Callable[[str], None] = print


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
    interrupt = Interrupt()
    with tempfile.TemporaryDirectory(prefix="bloomkit-deploy-") as staging:
        options = Options(model=model, model_info=model_info, builder=builder or Builder(dry_run=dry_run),
                          open_remote=opener, staging=Path(staging), keep=keep, health_timeout=health_timeout,
                          say=progress(quiet))
        job = host_job(deploy_work(options), open_remote=opener, interrupt=interrupt, lock=True,
                       recover=roll_back(options))
        return run_fleet(hosts, job, parallel=parallel, canary=canary, max_failures=max_failures,
                         interrupt=interrupt)


def deploy_work(options: Options):
    def work(steps: HostSteps, result: HostResult, stages: Stages) -> None:
        say = lambda text: options.say(f"[{steps.host.name}] {text}")  # noqa: E731
        deploy_release(options, steps, result, stages, say)
        try:
            set_up_agent(steps, stages, say, new_release=result.new != result.old)
        except DeployError as error:     # the release is live and healthy: report, do not roll it back
            result.status, result.stage, result.reason = FAILED, "agent", str(error)
    return work


def deploy_release(options: Options, steps: HostSteps, result: HostResult, stages: Stages,
                   say: Callable[[str], None]) -> None:
    """The release on one host: built, uploaded, verified, placed, made live (SKIPPED when already current)."""
    facts = steps.facts
    steps.check_can_run()
    steps.check_port()
    say(f"{facts.os}, {facts.machine}, Python {facts.python[0]}.{facts.python[1]}, "
        f"current release {facts.current or 'none'}")
    stages.enter("build")
    wheel = options.builder.wheel()
    wheelhouse = options.builder.wheelhouse(facts.target)
    version = new_version(options.model_info["sha256"], facts.releases)
    bundle = stage(steps.host, options.model, options.model_info, wheel, wheelhouse,
                   options.staging / steps.host.name / version, version)
    if bundle.identity == facts.identity:
        credentials_changed = install_credentials(steps, stages, say, None)
        stages.enter("health")
        if facts.serving_current and not credentials_changed:
            result.status = SKIPPED
            return
        if facts.serving_current:  # so only the credentials changed: the daemon reads them at start
            say("already current, new MQTT credentials: restarting")
            reason = "new MQTT credentials: restarted"
        else:
            say("already current but not healthy: restarting")
            reason = "was current but not healthy: restarted"
        steps.restart()
        steps.wait_healthy(options.health_timeout)
        result.status, result.reason = OK, reason
        return
    need_venv = wheelhouse.key not in facts.venvs
    wheel_files = [] if not need_venv else [wheelhouse.path / "*"] if steps.remote.dry_run else wheelhouse.files()
    stages.enter("preflight")
    steps.check_disk(bundle, sum(p.stat().st_size for p in wheel_files if p.is_file()))
    stages.enter("upload")
    say(f"uploading {bundle.version}" + (" and the wheelhouse" if need_venv else ""))
    steps.upload(bundle, wheel_files, wheelhouse.key)
    stages.enter("verify")
    steps.verify(bundle, wheelhouse.key, with_wheelhouse=need_venv)
    stages.enter("venv")
    if need_venv:
        say("building the venv (first deploy or new requirements)")
    steps.place(bundle)
    credentials_changed = install_credentials(steps, stages, say, bundle.version)
    stages.enter("switch")
    result.new = bundle.version                 # from here on, a failure switches back
    # The host decides: a hot reload when only the model changed, else (or if that fails) a restart; never a
    # reload with new credentials, which the daemon reads at start.
    live = steps.go_live(bundle.version, options.health_timeout, may_reload=not credentials_changed)
    stages.replay(live["stages"])
    if live["reason"] and live["healthy"]:
        say(live["reason"])
    if not live["healthy"]:
        raise DeployError(live["reason"])
    stages.enter("prune")
    steps.prune(options.keep)
    result.status = DRY_RUN if steps.remote.dry_run else OK


def set_up_agent(steps: HostSteps, stages: Stages, say: Callable[[str], None], new_release: bool) -> None:
    """The update agent as the inventory asks: its settings installed and the agent (re)started when they
    changed, when it is not running, or after a new release (it runs the code it started with); an agent
    that a deploy installed earlier stopped and removed once the inventory drops it."""
    if steps.host.agent is not None:
        stages.enter("agent")
        done = steps.install_agent(restart=new_release)
        say("update agent " + ("restarted" if done["restarted"] else "running, unchanged"))
    elif steps.facts.agent:
        stages.enter("agent")
        steps.remove_agent()
        say("update agent stopped and removed (no agent: in the inventory)")


def install_credentials(steps: HostSteps, stages: Stages, say: Callable[[str], None], version: str | None) -> bool:
    """The inventory's MQTT credentials file into the host's data directory (with the scripts of release
    `version`, else the current one's); True if it changed. Its content is never shown."""
    local = steps.host.daemon.mqtt_credentials
    if local is None:
        return False
    stages.enter("secrets")
    changed = steps.install_secret(local, CREDENTIALS_FILE, version)
    say("MQTT credentials " + ("installed in the data directory" if changed else "unchanged"))
    return changed


def roll_back(options: Options):
    """After a failure past the switch: mark the new release failed and switch back to the release that was
    current, over a fresh connection (the old one may be gone, and its close let go of the deploy lock)."""
    def recover(failed: HostSteps, result: HostResult, stages: Stages) -> None:
        if result.new == result.old:
            return                                  # not switched: nothing live changed
        stages.enter("rollback")
        version = result.new
        try:
            steps = HostSteps(failed.host, options.open_remote(failed.host))
            try:
                steps.lock(wait=LOCK_REGAIN_S)
                steps.read_facts()
                steps.mark_failed(version, f"{result.stage}: {result.reason}")
                if result.old is None:
                    steps.unset()
                    result.new = None
                    result.reason += "; no earlier release to return to: daemon stopped"
                    return
                steps.activate(result.old, options.health_timeout)
                result.status, result.new = ROLLED_BACK, result.old
            finally:
                steps.remote.close()
        except Exception as error:  # noqa: BLE001
            result.reason += f"; rollback failed too: {reason_for(error, None)}"
    return recover
