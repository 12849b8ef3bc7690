"""Reaching hosts over real sshd: strict host keys, one-line reasons for unreachable or refusing hosts,
and the dry run that touches no host. Quick: no deploy gets past pre-flight here."""
from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest

from deploy.errors import ConnectError, DeployError, HostKeyError
from deploy.jobs.deploy import deploy_fleet
from deploy.report import FAILED
from deploy.inventory import Host
from deploy.ssh import Remote, connect
from testkit.sshlab import keygen, free_port, run_fab

def test_a_trusted_host_runs_commands(lab):
    host = lab.host("pi1", lab.start_server("pi1"))
    remote = Remote("pi1", connect(host))
    try:
        assert remote.run("echo hello from $(uname -m)").startswith("hello from ")
        # Short exchanges are sent at once, not held back until the previous one's delayed ACK (~40 ms each).
        assert remote.conn.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        remote.close()


def test_unknown_host_key_is_refused_with_the_way_to_accept_it(lab):
    server = lab.start_server("pi1", trusted=False)
    host = lab.host("pi1", server)
    before = lab.known_hosts.read_text()
    with pytest.raises(HostKeyError) as caught:
        connect(host)
    message = str(caught.value)
    assert f"unknown host key for [127.0.0.1]:{server.port}" in message and "SHA256:" in message
    assert "--accept-new-host-keys" in message and f"ssh-keyscan -p {server.port} 127.0.0.1 >> " in message
    assert lab.known_hosts.read_text() == before           # never recorded silently


def test_accept_new_records_the_key_once_and_a_changed_key_is_still_refused(lab):
    server = lab.start_server("pi1", trusted=False)
    host = lab.host("pi1", server)
    connect(host, accept_new_host_keys=True).close()
    assert f"[127.0.0.1]:{server.port} ssh-ed25519 " in lab.known_hosts.read_text()
    connect(host).close()                                  # now known: strict mode accepts it
    impostor = lab.start_server("impostor", trusted=False)
    lab.known_hosts.write_text(lab.known_hosts.read_text().replace(f":{server.port} ", f":{impostor.port} "))
    with pytest.raises(ConnectError) as caught:
        connect(dataclasses.replace(host, port=impostor.port), accept_new_host_keys=True)
    # known_hosts names a non-22 port as [host]:port: the advice must too, and name the inventory's file.
    assert "CHANGED" in str(caught.value)
    assert f"`ssh-keygen -R '[127.0.0.1]:{impostor.port}' -f {lab.known_hosts}`" in str(caught.value)


def test_unreachable_and_unauthorised_hosts_fail_in_the_report_with_one_line(lab, reference_model, builder):
    stranger = dataclasses.replace(lab.host("pi2", lab.start_server("pi2")),
                                   identity=keygen(lab.base / "other-key"))
    down = lab.host("pi1", port=free_port())
    results = deploy_fleet([down, stranger], reference_model, builder=builder, quiet=True)
    assert [(r.status, r.stage) for r in results] == [(FAILED, "connect")] * 2
    assert results[0].reason == f"unreachable: connection refused by 127.0.0.1:{down.port}"
    assert results[1].reason.startswith(f"authentication failed for {stranger.user}@127.0.0.1:{stranger.port}")
    assert not Path(down.root).exists() and not Path(stranger.root).exists()


def test_fab_refuses_an_unknown_host_in_one_line_and_exits_non_zero(lab, reference_model, builder):
    host = lab.host("pi1", lab.start_server("pi1", trusted=False))
    done = run_fab(builder, "deploy", "--model", str(reference_model), "--inventory", str(lab.inventory([host])))
    assert done.returncode == 1
    assert "FAILED (connect: unknown host key for [127.0.0.1]" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_dry_run_prints_every_command_and_transfer_and_touches_no_host(lab, reference_model, builder):
    host = lab.host("pi1", port=free_port())              # nothing listens: any connection would fail
    done = run_fab(builder, "deploy", "--model", str(reference_model), "--inventory", str(lab.inventory([host])),
                   "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    root = host.root
    for expected in [f"exec flock -n -E 75 {root}/.deploy.lock", "[pi1] $ command -v /usr/bin/python3",
                     "pip download", "--platform manylinux_2_36_aarch64",
                     f"[pi1] put ", f"{root}/releases/.incoming-", "/model.tflite", "-m zipfile -e bloomkit-",
                     "/lib/deploy/host/install.py --root", "--service systemd verify ", "--wheelhouse ",
                     "--service systemd place ", "/healthz --timeout 60.0 go-live ",
                     "--service systemd prune --keep 3", "DRY-RUN"]:
        assert expected in out, expected
    assert not Path(root).exists()
    done = run_fab(builder, "deploy", "--model", str(reference_model), "--inventory", str(lab.inventory([host])),
                   "--dry-run", "--json")
    assert json.loads(done.stdout)[0]["status"] == "DRY-RUN" and " go-live " in done.stderr


def test_bad_input_is_one_line(lab, tmp_path, builder):
    done = run_fab(builder, "deploy", "--model", str(tmp_path / "missing.tflite"), "-H", "pi@nowhere.invalid")
    assert done.returncode == 1 and done.stderr.strip() == f"fab: error: model not found: {tmp_path}/missing.tflite"


def test_ssh_settings_come_from_ssh_config_as_fabric_reads_them(lab, tmp_path):
    from fabric import Config

    server = lab.start_server("pi1")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host greenhouse-7\n  HostName 127.0.0.1\n  Port {server.port}\n"
                          f"  User {lab.host('pi1', server).user}\n  IdentityFile {lab.identity}\n"
                          f"  UserKnownHostsFile {lab.known_hosts}\n")
    assert port_reached("greenhouse-7", Config(runtime_ssh_path=str(ssh_config))) == server.port


def port_reached(name: str, config) -> int:
    """The sshd port that a connection to `name` (resolved through `config`'s ssh_config) ends at."""
    remote = Remote(name, connect(Host(name=name), config=config))
    try:
        return int(remote.run("echo $SSH_CONNECTION").split()[-1])
    finally:
        remote.close()


def defaults_inventory(lab, tmp_path: Path, extra: str = "") -> Path:
    """An inventory of defaults only (key, known_hosts, root), for hosts given with -H."""
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"defaults: {{{extra}identity: {lab.identity}, known_hosts: {lab.known_hosts}, "
                         f"root: {tmp_path / 'root'}}}\n")
    return inventory


def test_fabs_h_reaches_the_host_with_the_inventorys_defaults_and_its_own_user_and_port(lab, builder, tmp_path):
    server = lab.start_server("pi1")
    user = lab.host("pi1", server).user
    inventory = defaults_inventory(lab, tmp_path, extra="user: nobody-here, port: 1, ")
    done = run_fab(builder, "-H", f"{user}@127.0.0.1:{server.port}", "status", "--inventory", str(inventory))
    assert done.returncode == 1                                     # reached and asked: nothing deployed yet
    assert "127.0.0.1" in done.stdout and "FAILED (health: nothing deployed)" in done.stdout, done.stdout


def test_deploy_help_prints_help_with_model_as_an_option(builder):
    done = run_fab(builder, "deploy", "--help")
    assert done.returncode == 0, done.stderr
    assert "--model=STRING" in done.stdout and "Usage: fab" in done.stdout
    done = run_fab(builder, "-H", "pi@nowhere.invalid", "deploy")
    assert done.returncode == 1
    assert done.stderr.strip() == "fab: error: give the model to deploy: fab deploy --model FILE"


@pytest.mark.parametrize("task, option, value, expected", [
    ("deploy", "--health-timeout", "abc", "--health-timeout must be a number, not 'abc'"),
    ("deploy", "--max-failures", "1.5x", "--max-failures must be a number, not '1.5x'"),
    ("deploy", "--parallel", "2.5", "--parallel must be a whole number, not '2.5'"),
    # The red team's: each would have turned a good deploy into a failed one, or printed nonsense.
    ("deploy", "--health-timeout", "-1", "--health-timeout must be more than 0, not -1"),
    ("deploy", "--health-timeout", "nan", "--health-timeout must be a number, not 'nan'"),
    ("deploy", "--health-timeout", "inf", "--health-timeout must be a number, not 'inf'"),
    ("deploy", "--max-failures", "-1", "--max-failures must be from 0 to 1, not -1"),
    ("deploy", "--max-failures", "2", "--max-failures must be from 0 to 1, not 2"),
    ("deploy", "--parallel", "0", "--parallel must be at least 1, not 0"),
    ("deploy", "--keep", "0", "--keep must be at least 1, not 0"),
    ("rollback", "--health-timeout", "nan", "--health-timeout must be a number, not 'nan'"),
    ("rollback", "--parallel", "-2", "--parallel must be at least 1, not -2"),
    ("status", "--parallel", "0", "--parallel must be at least 1, not 0"),
    ("logs", "--lines", "-5", "--lines must be at least 1, not -5"),
])
def test_a_bad_number_is_one_line_before_any_connection(builder, reference_model, task, option, value, expected):
    model = ("--model", str(reference_model)) if task == "deploy" else ()
    done = run_fab(builder, "-H", "pi@x.invalid", task, *model, option, value)
    assert done.returncode == 1 and done.stderr.strip() == f"fab: error: {expected}"
    assert done.stdout == ""                            # no report: no host was tried


def test_a_health_check_that_cannot_run_says_why_in_one_line(lab):
    from deploy.steps import HostSteps

    host = lab.host("pi1", lab.start_server("pi1"))
    steps = HostSteps(host, Remote("pi1", connect(host)))
    try:
        steps.read_facts()                                # nothing deployed: no health.py on the host
        with pytest.raises(DeployError) as caught:
            steps.wait_healthy(0)
    finally:
        steps.remote.close()
    message = str(caught.value)
    assert message.startswith("the health check could not run on the host: ") and "\n" not in message
    assert "install.py" in message and "No such file" in message


def test_a_proxyjump_hosts_key_is_checked_strictly_too(lab, tmp_path):
    from fabric import Config

    jump, target = lab.start_server("jump", trusted=False), lab.start_server("pi1")
    user = lab.host("pi1", target).user
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host greenhouse-7\n  HostName 127.0.0.1\n  Port {target.port}\n  User {user}\n"
                          f"  ProxyJump {user}@localhost:{jump.port}\n"    # not 127.0.0.1: Fabric skips a hop
                                                                            # named as the target
                          f"Host *\n  IdentityFile {lab.identity}\n  UserKnownHostsFile {lab.known_hosts}\n")
    config = Config(runtime_ssh_path=str(ssh_config))
    before = lab.known_hosts.read_text()
    with pytest.raises(HostKeyError, match=f"unknown host key for \\[localhost\\]:{jump.port}"):
        connect(Host(name="greenhouse-7"), config=config)
    assert lab.known_hosts.read_text() == before                            # never recorded silently
    connect(Host(name="greenhouse-7"), config=config, accept_new_host_keys=True).close()
    assert port_reached("greenhouse-7", config) == target.port              # through the jump host


def test_an_h_list_runs_as_one_fleet_with_one_report(lab, builder, tmp_path):
    first = lab.start_server("pi1")
    user = lab.host("pi1", first).user
    inventory = defaults_inventory(lab, tmp_path)
    down = free_port()
    # localhost: a second name for the loopback (host names must differ), where nothing listens.
    done = run_fab(builder, "-H", f"{user}@127.0.0.1:{first.port},{user}@localhost:{down}", "status",
                   "--inventory", str(inventory), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)              # one report for both hosts: the first failure did not stop the rest
    assert [(r["host"], r["status"], r["stage"]) for r in report] == [
        ("127.0.0.1", "FAILED", "health"), ("localhost", "FAILED", "connect")]


def test_closing_a_connection_that_was_cut_does_not_raise(lab, tmp_path):
    server = lab.start_server("pi1")
    host = lab.host("pi1", server)
    remote = Remote("pi1", connect(host))
    (tmp_path / "file").write_text("x")
    remote.put(tmp_path / "file", str(tmp_path / "uploaded"))         # opens the SFTP channel (loopback host)
    assert server.kill_sessions() > 0
    remote.close()                                     # at once: the client has not yet seen the cut


def test_a_port_that_answers_but_is_not_ssh_is_one_clean_row(lab, builder, tmp_path):
    """An HTTP server where sshd was expected: one line in the report, no paramiko traceback."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        done = run_fab(builder, "-H", f"root@127.0.0.1:{port}", "status", "--inventory",
                       str(defaults_inventory(lab, tmp_path)))
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert f"FAILED (connect: 127.0.0.1:{port} does not speak SSH (something else answers on that port))" \
        in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and done.stderr.strip() == "", done.stderr


def test_an_ipv6_host_on_h_with_brackets_and_a_port(lab, builder, tmp_path):
    server = lab.start_server("pi1", address="::1")
    user = lab.host("pi1", server).user
    done = run_fab(builder, "-H", f"{user}@[::1]:{server.port}", "status", "--inventory",
                   str(defaults_inventory(lab, tmp_path)), "--json")
    assert done.returncode == 1, done.stderr                        # reached and asked: nothing deployed yet
    [row] = json.loads(done.stdout)
    assert (row["host"], row["stage"], row["reason"]) == ("::1", "health", "nothing deployed")


@pytest.mark.parametrize("inventory, message", [
    ("hosts: {pi: {port: abc}}", "host pi: port must be a number from 1 to 65535, not 'abc'"),
    ("hosts: {pi: {daemon: {args: --top-k 3}}}",
     "host pi: daemon args must be a list of options and values, as in [--top-k, 3], not '--top-k 3'"),
    ("hosts: {pi: {daemon: {args: [--threads, 0]}}}", "host pi: daemon: --threads 0: must be at least 1"),
])
def test_a_bad_inventory_is_one_line_before_any_connection(builder, tmp_path, inventory, message):
    path = tmp_path / "fleet.yaml"
    path.write_text(inventory)
    done = run_fab(builder, "status", "--inventory", str(path))
    assert (done.returncode, done.stderr.strip(), done.stdout) == (1, f"fab: error: {message}", "")


def test_a_daemon_port_taken_by_another_program_fails_preflight_and_touches_nothing(lab, reference_model, builder):
    import http.server
    import threading

    host = lab.host("pi1", lab.start_server("pi1"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", host.daemon.port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (result,) = deploy_fleet([host], reference_model, builder=builder, quiet=True)
    finally:
        server.shutdown()
    assert (result.status, result.stage) == (FAILED, "preflight")
    assert result.reason == (f"the daemon's port {host.daemon.port} is taken by another program: stop it, or give "
                             "this host another daemon http port in the inventory")
    assert sorted(p.name for p in Path(host.root).iterdir()) == [".deploy.lock"]       # nothing uploaded
