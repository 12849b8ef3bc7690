"""`fab deploy` for real: OpenSSH servers on loopback, a real wheelhouse installed offline into a real venv,
and the real `device run` serving /healthz from flower photos. The first deploy builds the venvs (slow);
each later test starts by deploying what it needs, so it holds on its own."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from deploy.build import sha256_file
from deploy.inventory import Host
from deploy.jobs.deploy import deploy_fleet
from deploy.jobs.rollback import rollback_work
from deploy.jobs.status import status_work
from deploy.outline import run_on_hosts
from deploy.report import FAILED, OK, ROLLED_BACK, SKIPPED, HostResult
from deploy.steps import ANOTHER_DEPLOY
from testkit.processes import read_until
from testkit.sshlab import (SshLab, SshServer, deploy_lock_held, free_port, make_lab, run_fab, start_fab,
                                 stop_daemon)

pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    lab: SshLab
    hosts: list[Host]                # the two reachable ones
    servers: list[SshServer]
    down: Host
    first_results: list[HostResult]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, client_key, photos, builder, models):
    lab = make_lab(tmp_path_factory.mktemp("fleet"), client_key, photos)
    try:
        servers = [lab.start_server(name) for name in ("pi1", "pi2")]
        hosts = [lab.host(name, server) for name, server in zip(("pi1", "pi2"), servers)]
        down = lab.host("pi3", port=free_port())
        first = deploy_fleet([hosts[0], down, hosts[1]], models.first, builder=builder, quiet=True)
        yield Fleet(lab, hosts, servers, down, first)
    finally:
        lab.close()


def deploy(hosts, model, builder, **options) -> list[HostResult]:
    return deploy_fleet(hosts, model, builder=builder, quiet=True, **options)


def healthz(host: Host) -> dict:
    try:
        with urllib.request.urlopen(f"http://{host.daemon.http}/healthz", timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def current(host: Host) -> str:
    return os.readlink(Path(host.root) / "current")


def releases(host: Host) -> list[str]:
    return sorted(p.name for p in (Path(host.root) / "releases").iterdir())


def daemon_pid(host: Host) -> int:
    return int((Path(host.root) / "run" / "daemon.pid").read_text())


def test_a_fleet_of_three_with_one_unreachable(fleet, models):
    pi1, down, pi2 = fleet.first_results
    assert (down.status, down.stage) == (FAILED, "connect")
    assert down.reason == f"unreachable: connection refused by 127.0.0.1:{fleet.down.port}"
    for result, host in ((pi1, fleet.hosts[0]), (pi2, fleet.hosts[1])):
        assert result.status == OK, result
        assert (result.old, result.new) == (None, current(host).removeprefix("releases/"))
        health = healthz(host)
        assert health["status"] == "ok" and health["model"]["sha256"] == sha256_file(models.first)
        root = Path(host.root)
        # The daemon says which process and release answer: the service's daemon, of the current release.
        assert health["pid"] == daemon_pid(host)
        assert health["release"] == {"version": result.new, "path": str((root / "current").resolve())}
        assert (root / "data").is_dir()                         # the daemon's --data-dir, outside releases/
        manifest = json.loads((root / "current" / "manifest.json").read_text())
        assert manifest["model"]["sha256"] == sha256_file(models.first) and manifest["model"]["labels"] == 5
        assert [p.name for p in (root / "venvs").iterdir()] == [manifest["venv"]]
        assert (root / "venvs" / manifest["venv"] / ".complete").is_file()
        assert not list((root / "wheelhouses").iterdir())      # removed once the venv was built


def test_a_repeat_deploy_is_skipped(fleet, models, builder):
    deploy(fleet.hosts, models.first, builder)
    before = [(current(h), daemon_pid(h)) for h in fleet.hosts]
    results = deploy(fleet.hosts, models.first, builder)
    assert [r.status for r in results] == [SKIPPED, SKIPPED]
    assert [(current(h), daemon_pid(h)) for h in fleet.hosts] == before      # not even restarted


def test_a_repeat_deploy_restarts_a_current_release_that_is_not_healthy(fleet, models, builder):
    host = fleet.hosts[1]
    deploy([host], models.first, builder)
    before = current(host)
    stop_daemon(Path(host.root))
    (result,) = deploy([host], models.first, builder)
    assert (result.status, result.reason) == (OK, "was current but not healthy: restarted")
    assert current(host) == before and healthz(host)["model"]["sha256"] == sha256_file(models.first)


def test_a_daemon_killed_with_sigkill_comes_back_healthy(fleet, models, builder):
    host = fleet.hosts[1]
    deploy([host], models.first, builder)
    killed = daemon_pid(host)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if daemon_pid(host) != killed and healthz(host)["status"] == "ok":
                break
        time.sleep(0.2)
    assert daemon_pid(host) != killed and healthz(host)["model"]["sha256"] == sha256_file(models.first)


def test_a_model_only_redeploy_reuses_the_venv_and_reloads_without_a_restart(fleet, models, builder):
    host = fleet.hosts[0]
    deploy([host], models.first, builder)
    venvs = Path(host.root) / "venvs"
    (venv,) = venvs.iterdir()
    built = (venv / ".complete").stat().st_mtime_ns
    old, pid = current(host), daemon_pid(host)
    (result,) = deploy([host], models.second, builder)
    assert result.status == OK and result.old == old.removeprefix("releases/") and result.new != result.old
    assert healthz(host)["model"]["sha256"] == sha256_file(models.second)
    assert "reload" in result.detail["stages"] and "restart" not in result.detail["stages"]
    assert daemon_pid(host) == pid
    assert list(venvs.iterdir()) == [venv] and (venv / ".complete").stat().st_mtime_ns == built
    assert os.readlink(Path(host.root) / "current" / "venv") == f"../../venvs/{venv.name}"

    # More model-only redeploys than --keep: the release the daemon started from is pruned meanwhile, and
    # it must still see `current` switch (its model path does not go through its own release).
    for model in (models.first, models.second, models.first, models.second):
        (result,) = deploy([host], model, builder)
        assert result.status == OK and "restart" not in result.detail["stages"], result
        assert healthz(host)["model"]["sha256"] == sha256_file(model)
    assert daemon_pid(host) == pid


def test_a_model_whose_daemon_never_gets_healthy_is_rolled_back(fleet, models, builder):
    host = fleet.hosts[0]
    deploy([host], models.second, builder)
    before = current(host)
    (Path(host.root) / "data" / "kept.txt").write_text("kept\n")
    (result,) = deploy([host], models.broken, builder, health_timeout=30)
    assert (result.status, result.stage) == (ROLLED_BACK, "health")
    assert "cannot load the model" in result.reason and "\n" not in result.reason
    assert result.new == result.old == before.removeprefix("releases/")
    assert current(host) == before
    health = healthz(host)
    assert health["status"] == "ok" and health["model"]["sha256"] == sha256_file(models.second)

    # With the daemon stopped, status quotes the current release's last log line, not the rolled-back
    # release's "cannot load the model" logged just before it.
    stop_daemon(Path(host.root))
    (status,) = run_on_hosts([host], status_work)
    assert (status.status, status.stage) == (FAILED, "health") and "no answer on " in status.reason
    assert "cannot load the model" not in status.reason and "; log: " in status.reason, status.reason
    fleet.lab.start_daemon(host)

    # The data directory is the daemon's, whichever release runs: a deploy and its rollback leave it alone.
    kept = Path(host.root) / "data" / "kept.txt"
    assert kept.read_text() == "kept\n"

    # The failed release stays for inspection; rolling back *to* it fails the same way, and returns.
    (broken,) = [r for r in releases(host) if r > before.removeprefix("releases/")]
    (result,) = run_on_hosts([host], rollback_work(broken, 30), lock=True)
    assert (result.status, result.stage) == (FAILED, "health") and "cannot load the model" in result.reason
    assert current(host) == before and healthz(host)["model"]["sha256"] == sha256_file(models.second)
    assert (Path(host.root) / "releases" / broken / ".failed").read_text().startswith("health: ")

    # A later good release: `rollback` (no --to) skips the failed one and returns to the last healthy one.
    (result,) = deploy([host], models.first, builder)
    assert result.status == OK and result.new > broken
    (result,) = run_on_hosts([host], rollback_work(None, 30), lock=True)
    assert result.status == OK and current(host) == before


def test_an_interrupted_upload_leaves_current_untouched(fleet, models, builder, tmp_path):
    """The connection drops with the model part way up (the link holds the transfer there until it is cut,
    so the cut cannot come after the upload): current untouched and serving; the next deploy succeeds."""
    host, server = fleet.hosts[1], fleet.servers[1]
    root = Path(host.root)
    deploy([host], models.first, builder)
    before, served = current(host), healthz(host)["model"]["sha256"]
    big = tmp_path / "big.tflite"
    big.write_bytes(big_model(models.first))
    with ThreadPoolExecutor(1) as pool, fleet.lab.link(server) as link:
        link.hold_when(model_upload_past(root, 1 << 20))
        running = pool.submit(deploy, [replace(host, port=link.port)], big, builder)
        assert link.holding.wait(120)
        link.cut()
        (result,) = running.result()
    assert (result.status, result.stage) == (FAILED, "upload")
    assert result.reason.startswith("connection to ") and "lost" in result.reason
    (partial,) = root.glob("releases/.incoming-*/model.tflite")
    assert (1 << 20) < partial.stat().st_size < big.stat().st_size           # cut mid-transfer
    assert current(host) == before and healthz(host)["model"]["sha256"] == served
    assert before.removeprefix("releases/") in releases(host)
    assert all(r == before.removeprefix("releases/") or r.startswith(".incoming-") or r < before.removeprefix(
        "releases/") for r in releases(host))                   # no new release appeared

    # Once the host has seen the connection go (and with it the deploy lock), the next deploy succeeds and
    # prunes the partial upload.
    deadline = time.monotonic() + 30
    while deploy_lock_held(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    (result,) = deploy([host], big, builder)
    assert result.status == OK, result
    assert healthz(host)["model"]["sha256"] == sha256_file(big)
    assert not [r for r in releases(host) if r.startswith(".incoming-")]


def big_model(model: Path) -> bytes:
    """The same network with a 48 MB description: valid, and big enough that 1 MB of it is part way up."""
    from device.metadata import read_model_info, write_metadata

    data = model.read_bytes()
    info = read_model_info(data)
    return write_metadata(data, info.labels, mean=info.mean, std=info.std, name=info.name, version="big",
                          description="x" * (48 << 20))


def model_upload_past(root: Path, size: int):
    """Whether a model upload begun on the host from now on (a partial releases/.incoming-*/model.tflite, not
    one an earlier interrupted upload left) has passed `size` bytes: a testkit.link hold condition."""
    pattern = "releases/.incoming-*/model.tflite"
    earlier = set(root.glob(pattern))
    return lambda: any(p.stat().st_size > size for p in set(root.glob(pattern)) - earlier)


def test_a_second_deploy_while_one_runs_fails_fast_and_the_first_completes(fleet, models, builder, tmp_path):
    host, server = fleet.hosts[1], fleet.servers[1]
    deploy([host], models.first, builder)
    big = tmp_path / "big.tflite"
    big.write_bytes(big_model(models.first))
    with ThreadPoolExecutor(1) as pool, fleet.lab.link(server) as link:
        link.hold_when(model_upload_past(Path(host.root), 1 << 20))   # the first deploy stays in its upload
        running = pool.submit(deploy, [replace(host, port=link.port)], big, builder)
        assert link.holding.wait(120)
        (second,) = deploy([host], models.second, builder)
        link.release()
        (first,) = running.result()
    assert (second.status, second.stage, second.reason) == (FAILED, "preflight", ANOTHER_DEPLOY)
    assert first.status == OK, first
    assert healthz(host)["model"]["sha256"] == sha256_file(big)


def test_an_explicit_rollback_to_a_release_marked_failed_clears_the_mark_once_healthy(fleet, models, builder):
    host = fleet.hosts[0]
    deploy([host], models.second, builder)
    (result,) = deploy([host], models.first, builder)
    older = result.old
    # As a health check that gave up too early (a slow start, a passing fault) leaves it.
    marker = Path(host.root) / "releases" / older / ".failed"
    marker.write_text("health: timed out after 1 s\n")
    (result,) = run_on_hosts([host], rollback_work(older, 30), lock=True)
    assert (result.status, result.new) == (OK, older), result
    assert result.reason == "was marked failed, healthy now: mark cleared"
    assert not marker.exists() and current(host) == f"releases/{older}"
    assert healthz(host)["model"]["sha256"] == sha256_file(models.second)


def test_ctrl_c_during_fab_deploy_reports_every_host_and_changes_nothing_live(fleet, models, builder, tmp_path):
    deploy(fleet.hosts, models.first, builder)
    first, second = fleet.hosts         # in the inventory's order: with --parallel 1, `second` waits
    before, served = current(first), healthz(first)["model"]["sha256"]
    big = tmp_path / "big.tflite"
    big.write_bytes(big_model(models.first))
    with fleet.lab.link(fleet.servers[0]) as link:
        link.hold_when(model_upload_past(Path(first.root), 1 << 20))     # Ctrl-C comes mid-upload
        inventory = fleet.lab.inventory([replace(first, port=link.port), second])
        fab = start_fab(builder, "deploy", "--model", str(big), "--inventory", str(inventory), "--parallel", "1")
        try:
            assert link.holding.wait(120)
            fab.send_signal(signal.SIGINT)
            said = read_until(fab.stderr, "stopping each running host at a safe point", timeout=60)
            link.release()                                  # fab took the Ctrl-C: the upload may now end
            stdout, stderr = fab.communicate(timeout=120)
            stderr = said + stderr
        finally:
            fab.kill()
    assert fab.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "stopping each running host at a safe point" in stderr
    rows = {line.split()[0]: line for line in stdout.splitlines()[1:-1]}
    assert "INTERRUPTED (" in rows[first.name] and "nothing live changed" in rows[first.name], stdout
    assert "CANCELLED (fleet: interrupted before it started)" in rows[second.name], stdout
    assert stdout.splitlines()[-1] == "0 of 2 hosts ok, 2 not"
    assert current(first) == before and healthz(first)["model"]["sha256"] == served
    assert all(r <= before.removeprefix("releases/") or r.startswith(".incoming-") for r in releases(first))
    assert not deploy_lock_held(Path(first.root))


def test_status_rollback_logs_and_keep_from_the_command_line(fleet, models, builder):
    inventory = str(fleet.lab.inventory(fleet.hosts))
    deploy(fleet.hosts, models.first, builder)
    deploy(fleet.hosts, models.second, builder)
    done = run_fab(builder, "status", "--inventory", inventory, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(done.stdout)
    assert [s["detail"]["sha256"] for s in status] == [sha256_file(models.second)] * 2
    assert all(s["detail"]["fps"] > 0 and s["detail"]["model_version"] == "v2" for s in status)

    done = run_fab(builder, "rollback", "--inventory", inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [healthz(h)["model"]["sha256"] for h in fleet.hosts] == [sha256_file(models.first)] * 2

    done = run_fab(builder, "logs", "--inventory", inventory, "--lines", "5")
    assert done.returncode == 0 and done.stdout.count("==> pi") == 2
    assert done.stdout.count(f"(sha256 {sha256_file(models.first)[:12]})") >= 2     # the daemons' start lines

    done = run_fab(builder, "deploy", "--model", str(models.second), "--inventory", inventory, "--keep", "1",
               "--parallel", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 hosts ok" in done.stdout
    for host in fleet.hosts:
        assert releases(host) == [current(host).removeprefix("releases/")]
        assert len(list((Path(host.root) / "venvs").iterdir())) == 1


def test_another_daemon_answering_on_the_port_is_not_taken_for_this_releases(fleet, models, builder):
    """The same release's daemon started by hand serves the same model on the port, while the service's
    daemon is gone: status is not OK, and a deploy fails pre-flight instead of reporting OK over it."""
    host = fleet.hosts[1]
    deploy([host], models.first, builder)
    root = Path(host.root)
    before = current(host)
    stop_daemon(root)
    stranger = subprocess.Popen([str(root / "current" / "run-daemon")], cwd=root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if healthz(host)["status"] == "ok":
                    break
            time.sleep(0.2)
        assert healthz(host)["pid"] == stranger.pid and healthz(host)["model"]["sha256"] == sha256_file(models.first)
        (status,) = run_on_hosts([host], status_work)
        assert (status.status, status.stage) == (FAILED, "health")
        assert f"another process answers on the port (pid {stranger.pid})" in status.reason, status.reason
        (result,) = deploy([host], models.second, builder)
        assert (result.status, result.stage) == (FAILED, "preflight")
        assert result.reason.startswith(f"the daemon's port {host.daemon.port} is taken by a bloomkit daemon "
                                        f"not started by {host.root} (pid {stranger.pid})"), result.reason
        assert current(host) == before
    finally:
        os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait()
    fleet.lab.start_daemon(host)
