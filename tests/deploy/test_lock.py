"""The host's deploy lock over real sshd: a second deploy or rollback to a host fails fast in pre-flight and
touches nothing, and the lock goes with the connection that holds it (closed, cut, or its process killed), so
it cannot go stale. Quick: nothing here gets past pre-flight."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.jobs.deploy import deploy_fleet
from deploy.jobs.rollback import rollback_work
from deploy.outline import run_on_hosts
from deploy.report import FAILED
from deploy.ssh import Remote, connect
from deploy.steps import ANOTHER_DEPLOY, HostSteps
from testkit.sshlab import deploy_lock_held, run_fab


def locked_steps(host) -> HostSteps:
    steps = HostSteps(host, Remote(host.name, connect(host)))
    steps.lock()
    return steps


def test_a_deploy_or_rollback_to_a_host_being_deployed_fails_fast_and_touches_nothing(lab, reference_model,
                                                                                         builder):
    host = lab.host("pi1", lab.start_server("pi1"))
    holder = locked_steps(host)
    try:
        assert deploy_lock_held(Path(host.root))
        (result,) = deploy_fleet([host], reference_model, builder=builder, quiet=True)
        assert (result.status, result.stage, result.reason) == (FAILED, "preflight", ANOTHER_DEPLOY)
        assert result.seconds < 10
        (result,) = run_on_hosts([host], rollback_work(None, 5), lock=True)
        assert (result.status, result.stage, result.reason) == (FAILED, "preflight", ANOTHER_DEPLOY)
        done = run_fab(builder, "deploy", "--model", str(reference_model), "--inventory",
                       str(lab.inventory([host])))
        assert done.returncode == 1 and f"FAILED (preflight: {ANOTHER_DEPLOY})" in done.stdout, done.stderr
        assert sorted(p.name for p in Path(host.root).iterdir()) == [".deploy.lock"]      # nothing uploaded
        assert deploy_lock_held(Path(host.root))                              # the failed attempts did not take it away
    finally:
        holder.remote.close()
    HostSteps(host, Remote(host.name, connect(host))).lock(wait=5)    # released with the connection


def test_the_lock_is_released_when_the_connection_is_cut(lab):
    server = lab.start_server("pi1")
    host = lab.host("pi1", server)
    holder = locked_steps(host)
    assert server.kill_sessions() > 0
    steps = HostSteps(host, Remote(host.name, connect(host)))
    try:
        steps.lock(wait=5)
        assert deploy_lock_held(Path(host.root))
    finally:
        steps.remote.close()
        holder.remote.close()


def test_the_lock_is_released_when_the_deploying_process_is_killed(lab):
    host = lab.host("pi1", lab.start_server("pi1"))
    script = ("import sys, time\nfrom deploy.ssh import Remote, connect\nfrom deploy.steps import HostSteps\n"
              "from deploy.inventory import Host\nfrom pathlib import Path\n"
              f"host = Host(name='pi1', hostname='127.0.0.1', port={host.port}, user={host.user!r}, "
              f"identity=Path({str(host.identity)!r}), known_hosts=Path({str(host.known_hosts)!r}), "
              f"root={host.root!r})\n"
              "HostSteps(host, Remote('pi1', connect(host))).lock()\nprint('holding', flush=True)\ntime.sleep(600)\n")
    deployer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert deployer.stdout.readline() == "holding\n" and deploy_lock_held(Path(host.root))
    finally:
        deployer.kill()
        deployer.wait()
    steps = HostSteps(host, Remote(host.name, connect(host)))
    try:
        steps.lock(wait=5)
    finally:
        steps.remote.close()


def test_a_host_without_flock_is_refused_in_one_line(lab, tmp_path):
    """flock(1) comes with util-linux (on Raspberry Pi OS and Debian); a host without it says so."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "mkdir").symlink_to(shutil.which("mkdir"))
    host = lab.host("pi1", lab.start_server("pi1", path=str(tools)))
    steps = HostSteps(host, Remote(host.name, connect(host)))
    try:
        with pytest.raises(DeployError) as caught:
            steps.lock()
    finally:
        steps.remote.close()
    assert str(caught.value) == "flock not found on the host: install util-linux"
