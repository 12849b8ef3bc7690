"""The host side of a release's life: verify an upload, build its venv (or reuse the one its requirements
already have), put it in place, switch `current` atomically, (re)start the daemon, wait for its health,
roll back, prune. One implementation for both ways a release arrives: `fab deploy` runs these actions one
stage at a time over SSH; an agent on the device runs `install` and `activate` (or `deploy`) itself.

    python3 install.py --root R verify VERSION [--wheelhouse KEY]   # an upload in releases/.incoming-VERSION
    python3 install.py --root R place VERSION       # venv (built or reused), lib/, → releases/VERSION
    python3 install.py --root R install VERSION     # verify + place (the wheel unpacked here if not yet)
    python3 install.py --root R deploy VERSION      # install + go-live; on failure back to the previous one
    python3 install.py --root R go-live VERSION [--no-reload]   # switch, hot reload or restart, health
    python3 install.py --root R switch|activate VERSION
    python3 install.py --root R restart|stop|unset|prune|logs|rollback|mark-failed|clear-failed …
    python3 install.py --root R agent-install UPLOAD [--restart] | agent-remove    # the update agent

Failures print one line on stderr and exit 1; `health`, `activate`, `go-live`, `deploy`, `rollback` and the
agent's actions print their outcome as one JSON line. Stdlib only, run with the host's Python from the
release's lib/deploy/host/. The caller holds the root's deploy lock (`fab deploy` over SSH, the agent itself).
"""
import argparse
import collections
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile

import health
import service as pidfile
from layout import (AGENT_LAUNCHER, AGENT_SYSTEMD_UNIT, AGENT_TRIAL, DEVICE_ARGS, INCOMING_PREFIX, LAUNCHER, MODEL_NAME,
                    SYSTEMD_UNIT, Layout, previous_release, to_prune)

UNIT = os.path.basename(SYSTEMD_UNIT)
AGENT_UNIT = os.path.basename(AGENT_SYSTEMD_UNIT)
RELOAD_TIMEOUT = 15.0   # seconds for a hot reload to serve the new model before falling back to a restart
USER = "bloomkit"   # the unit's User=
UNIT_DIR = "/etc/systemd/system"
START_MARK = "bloomkit: starting release "    # what run-daemon says first: where a release's log begins
LOG_SCAN = 200                                 # lines of log searched for the current release's last error


class HostError(Exception):
    """A step that cannot go on; its message is the one line the deploy reports."""


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sums(directory):
    """Every file listed in SHA256SUMS has its sum (what `sha256sum --strict -c` checks)."""
    try:
        with open(os.path.join(directory, "SHA256SUMS")) as file:
            lines = [line.rstrip("\n") for line in file if line.strip()]
    except OSError as error:
        raise HostError("cannot read %s/SHA256SUMS: %s" % (directory, error.strerror))
    for line in lines:
        digest, _, name = line.partition("  ")
        path = os.path.join(directory, name)
        if not name or "/" in name or not os.path.isfile(path):
            raise HostError("%s: %s missing" % (directory, name or "(malformed SHA256SUMS)"))
        if sha256_file(path) != digest:
            raise HostError("%s: %s does not match its sha256 (a damaged upload)" % (directory, name))


def read_manifest(release_dir):
    try:
        with open(os.path.join(release_dir, "manifest.json")) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise HostError("%s has no readable manifest.json (%s)" % (release_dir, error))


def verify(layout, version, wheelhouse_key=None):
    """The checksums of an upload; a verified wheelhouse moves to its place."""
    check_sums(layout.incoming(version))
    if wheelhouse_key:
        wheels = layout.wheelhouse(wheelhouse_key)
        check_sums(wheels + ".incoming")
        shutil.rmtree(wheels, ignore_errors=True)
        os.rename(wheels + ".incoming", wheels)


def unpack(release_dir):
    """The release's wheel unpacked into lib/: the device code, these scripts, the systemd unit."""
    wheels = [name for name in read_manifest(release_dir)["files"] if name.endswith(".whl")]
    if len(wheels) != 1:
        raise HostError("%s should hold exactly one wheel, not %d" % (release_dir, len(wheels)))
    shutil.rmtree(os.path.join(release_dir, "lib"), ignore_errors=True)
    with zipfile.ZipFile(os.path.join(release_dir, wheels[0])) as wheel:
        wheel.extractall(os.path.join(release_dir, "lib"))


def venv_complete(layout, key):
    return os.path.exists(os.path.join(layout.venv(key), ".complete"))


def build_venv(layout, key):
    """A venv with the wheelhouse's requirements, installed offline by the pip wheel in the wheelhouse, without
    byte-compiling (the daemon compiles what it imports), system site packages visible (picamera2 comes from
    apt); marked complete only at the end, and the wheelhouse removed."""
    venv, wheels = layout.venv(key), layout.wheelhouse(key)
    if not os.path.isfile(os.path.join(wheels, "requirements.txt")):
        raise HostError("no wheelhouse for venv %s on the host: upload it first" % key)
    installer = [name for name in os.listdir(wheels) if name.startswith("pip-") and name.endswith(".whl")]
    if not installer:
        raise HostError("the wheelhouse for venv %s has no pip wheel" % key)
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv])
    run([os.path.join(venv, "bin", "python"), os.path.join(wheels, installer[0], "pip"), "install", "-q",
         "--no-compile", "--no-index", "--disable-pip-version-check", "--find-links", wheels,
         "-r", os.path.join(wheels, "requirements.txt")], env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    open(os.path.join(venv, ".complete"), "w").close()
    shutil.rmtree(wheels, ignore_errors=True)


def place(layout, version):
    """Give an installed upload its venv (reused when its requirements already have one), then move it
    into place under its version: from here on it is a release that `current` may point at."""
    incoming = layout.incoming(version)
    key = read_manifest(incoming)["venv"]
    if not venv_complete(layout, key):
        build_venv(layout, key)
    link = os.path.join(incoming, "venv")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink("../../venvs/" + key, link)
    if not os.path.isdir(os.path.join(incoming, "lib")):
        unpack(incoming)
    os.rename(incoming, layout.release(version))


def install(layout, version):
    """An upload in releases/.incoming-VERSION (its venv's wheelhouse in wheelhouses/KEY/ if its requirements
    are new) made a release, every file's sha256 checked first."""
    verify(layout, version)
    key = read_manifest(layout.incoming(version))["venv"]
    if not venv_complete(layout, key) and os.path.isdir(layout.wheelhouse(key)):
        check_sums(layout.wheelhouse(key))
    unpack(layout.incoming(version))
    place(layout, version)


def switch(layout, version):
    """Point `current` at a release in one step: a new symlink renamed over the old one."""
    if not os.path.isdir(layout.release(version)):
        raise HostError("no release %s on the host" % version)
    temporary = layout.root + "/.current.new"
    if os.path.lexists(temporary):
        os.remove(temporary)
    os.symlink("releases/" + version, temporary)
    os.replace(temporary, layout.current)


def manager_of(setting):
    """The service manager: the inventory's setting, "auto" meaning systemd when it runs."""
    if setting == "auto":
        return "systemd" if os.path.isdir("/run/systemd/system") else "pidfile"
    return setting


def as_root(command):
    return command if os.geteuid() == 0 else ["sudo", "-n"] + command


def restart(layout, manager):
    """(Re)start the current release's daemon, with its data directory in place: systemd installs the unit
    from the release, a drop-in that starts the current launcher and lets it write the data directory, and
    the unit's system user; the pidfile manager restarts its supervisor."""
    if manager == "pidfile":
        os.makedirs(layout.data, mode=0o750, exist_ok=True)
        pidfile.stop(layout.root)
        pidfile.start(layout.root)
        return
    make_data_dir(layout, manager)
    systemd_restart(layout, SYSTEMD_UNIT, daemon_override(layout))


def systemd_restart(layout, unit_file, override):
    """Install a unit from the current release with a drop-in for this root (`override`, [Service] lines),
    enable it and (re)start it."""
    unit = os.path.basename(unit_file)
    dropin = "%s/%s.d" % (UNIT_DIR, unit)
    run(as_root(["install", "-m", "0644", "%s/%s" % (layout.current, unit_file), "%s/%s" % (UNIT_DIR, unit)]))
    run(as_root(["mkdir", "-p", dropin]))
    run(as_root(["tee", dropin + "/bloomkit-deploy.conf"]), stdin=dropin_text(override))
    run(as_root(["systemctl", "daemon-reload"]))
    run(as_root(["systemctl", "enable", "--quiet", unit]))
    run(as_root(["systemctl", "restart", unit]))


def dropin_text(override):
    """A drop-in replacing the unit's ExecStart= (and whatever else `override` sets) for this root."""
    return "[Service]\nExecStart=\n" + override


def daemon_override(layout):
    """The daemon unit's settings for this root: its launcher, and the data directory its only writable part
    of the root (not releases/, not the agent's settings or state)."""
    return "ExecStart=%s/%s\nReadWritePaths=%s\n" % (layout.current, LAUNCHER, layout.data)


def agent_override(layout):
    """The agent unit's settings for this root: its launcher, and this root writable instead of /opt/bloomkit."""
    return "ExecStart=%s/%s\nReadWritePaths=\nReadWritePaths=%s %s\n" % (
        layout.agent, AGENT_LAUNCHER, layout.root, UNIT_DIR)


def in_data_dir(manager, command):
    """`command` with the right to write in the data directory: root's under systemd (the unit's user owns
    it), the deploy user's own with the pidfile manager."""
    return command if manager == "pidfile" else as_root(command)


def make_data_dir(layout, manager):
    """The data directory, writable by the daemon: under systemd owned by the unit's system user (made here)."""
    if manager == "pidfile":
        os.makedirs(layout.data, mode=0o750, exist_ok=True)
        return
    if subprocess.call(["id", "-u", USER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
        run(as_root(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                     "--groups", "video", USER]))
    run(as_root(["install", "-d", "-o", USER, "-g", USER, "-m", "0750", layout.data]))


def install_secret(layout, manager, name, uploaded):
    """Move an uploaded secret (made 0600 before it was written) to <data>/secrets/NAME, mode 0600 in a 0700
    folder, owned by the daemon's user; says whether it changed, since a running daemon read the old one."""
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise HostError("not a secret's name: %r" % name)
    make_data_dir(layout, manager)
    target = "%s/%s" % (layout.secrets, name)
    owner = [] if manager == "pidfile" else ["-o", USER, "-g", USER]
    try:
        run(in_data_dir(manager, ["install", "-d", "-m", "0700"] + owner + [layout.secrets]))
        changed = subprocess.call(in_data_dir(manager, ["cmp", "-s", uploaded, target]),
                                  stderr=subprocess.DEVNULL) != 0
        run(in_data_dir(manager, ["install", "-m", "0600"] + owner + [uploaded, target]))
    finally:
        if os.path.exists(uploaded):
            os.remove(uploaded)
    return {"ok": True, "changed": changed}


def stop(layout, manager):
    if manager == "pidfile":
        pidfile.stop(layout.root)
    else:
        run(as_root(["systemctl", "stop", UNIT]))


def unset(layout, manager):
    """After a failed first deploy: no earlier release to return to, so nothing stays live."""
    stop(layout, manager)
    if os.path.lexists(layout.current):
        os.remove(layout.current)


def log_lines(layout, manager, lines):
    if manager == "pidfile":
        try:
            with open(layout.log, "rb") as file:
                return [line.decode(errors="replace").rstrip("\n") for line in collections.deque(file, lines)]
        except OSError:
            return []
    command = as_root(["journalctl", "-u", UNIT, "-n", str(int(lines)), "--no-pager", "--output", "cat"])
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True).stdout.splitlines()


def last_error(layout, manager, version):
    """The last error line the daemon of release `version` logged (else its last line), or None: only lines
    after that release's latest start, so another release's failure is never blamed."""
    lines = log_lines(layout, manager, LOG_SCAN)
    starts = [i for i, line in enumerate(lines) if START_MARK in line]
    mine = [i for i in starts if line_release(lines[i]) == version]
    if not mine:
        return None
    end = next((i for i in starts if i > mine[-1] and line_release(lines[i]) != version), len(lines))
    own = [line for line in lines[mine[-1] + 1:end] if line.strip() and not line.startswith("--- ")]
    errors = [line for line in own if "error" in line.lower()]
    return (errors or own or [None])[-1]


def line_release(line):
    return line.split(START_MARK, 1)[1].split()[0] if START_MARK in line else None


def wait_healthy(layout, url, timeout, manager, expected=None):
    """The daemon's /healthz once healthy with the current release's model and ours; else HostError, its
    reason ending with the current release's last error line from the log."""
    version = layout.current_version()
    if expected is None:
        expected = read_manifest(layout.current)["model"]["sha256"]
    healthy, reason, body = health.wait_healthy(url, expected, timeout, layout.root, manager)
    if not healthy:
        logged = last_error(layout, manager, version)
        raise HostError(reason + ("; log: %s" % logged.strip() if logged else ""))
    return body


def activate(layout, version, url, timeout, manager):
    """`current` → `version`, the daemon restarted, healthy with that release's model."""
    switch(layout, version)
    restart(layout, manager)
    return wait_healthy(layout, url, timeout, manager)


def model_only(layout, old, new):
    """Whether release `new` differs from release `old` in nothing but its model: same venv, wheel, launcher
    and daemon options, so the running daemon (which reads its model through `current`) can take it live."""
    def all_but_model(version):
        manifest = read_manifest(layout.release(version))
        return manifest.get("venv"), {n: d for n, d in manifest["files"].items() if n != MODEL_NAME}
    return old is not None and old != new and all_but_model(old) == all_but_model(new)


def go_live(layout, version, url, timeout, manager, may_reload=True):
    """Make `version` current and serving. When it changes only the model and the daemon serves the current
    release healthy now, the daemon hot-reloads it (no restart); if that does not serve the new model within
    RELOAD_TIMEOUT, or the release changes more, the daemon is restarted. The one rule for `fab deploy` and
    the agent. Returns {"healthy", "reason", "healthz", "stages": [[stage, seconds], …]}, the stages for
    the deploy's report (switch, reload, restart, health: those it went through)."""
    stages, started = [], time.monotonic()

    def done(stage):
        nonlocal started
        now = time.monotonic()
        stages.append([stage, round(now - started, 3)])
        started = now

    old = layout.current_version()
    reload = may_reload and model_only(layout, old, version) and health.wait_healthy(
        url, read_manifest(layout.current)["model"]["sha256"], 0, layout.root, manager)[0]
    switch(layout, version)
    done("switch")
    reason = None
    if reload:
        try:
            body = wait_healthy(layout, url, min(RELOAD_TIMEOUT, timeout), manager)
            done("reload")
            return {"healthy": True, "reason": None, "healthz": body, "stages": stages}
        except HostError as error:   # e.g. the new model does not load: the daemon kept the old one
            done("reload")
            reason = "the hot reload did not serve the new model (%s): restarted" % error
    try:
        restart(layout, manager)
        done("restart")
        body = wait_healthy(layout, url, timeout, manager)
    except HostError as error:
        done("health")
        return {"healthy": False, "reason": str(error), "healthz": None, "stages": stages}
    done("health")
    return {"healthy": True, "reason": reason, "healthz": body, "stages": stages}


def mark_failed(layout, version, reason):
    """Record that `version` failed, so pruning drops it first and rollbacks skip it."""
    with open(layout.failed_marker(version), "w") as file:
        file.write(reason + "\n")


def clear_failed(layout, version):
    if os.path.exists(layout.failed_marker(version)):
        os.remove(layout.failed_marker(version))


def releases_of(layout):
    names = os.listdir(layout.releases) if os.path.isdir(layout.releases) else []
    return sorted(name for name in names if not name.startswith("."))


def failed_releases(layout):
    return [r for r in releases_of(layout) if os.path.exists(layout.failed_marker(r))]


def prune(layout, keep):
    """Delete old releases (failed ones first) and the venvs no kept release uses, and the leftovers of
    interrupted uploads."""
    releases = releases_of(layout)
    venv_of = {}
    for release in releases:
        try:
            venv_of[release] = os.path.basename(os.readlink(os.path.join(layout.release(release), "venv")))
        except OSError:
            venv_of[release] = None
    venvs_dir = os.path.dirname(layout.venv("x"))
    venvs = [n for n in os.listdir(venvs_dir) if venv_complete(layout, n)] if os.path.isdir(venvs_dir) else []
    old_releases, old_venvs = to_prune(releases, venv_of, venvs, keep, layout.current_version(),
                                       failed_releases(layout))
    doomed = [layout.release(r) for r in old_releases] + [layout.venv(v) for v in old_venvs]
    if os.path.isdir(layout.releases):
        doomed += [os.path.join(layout.releases, n) for n in os.listdir(layout.releases)
                   if n.startswith(INCOMING_PREFIX)]
    wheelhouses = os.path.dirname(layout.wheelhouse("x"))
    if os.path.isdir(wheelhouses):
        doomed += [os.path.join(wheelhouses, n) for n in os.listdir(wheelhouses) if n.endswith(".incoming")]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)


def rollback(layout, to, url, timeout, manager):
    """Back to `to` (default: the newest earlier release that did not fail), health confirmed. A release that
    is not healthy is marked failed and the host returns to where it was; one marked failed that the user
    chose with `to` and that proves healthy now (its failure was passing) loses its mark.
    Returns {"ok", "new", "stage", "reason"}."""
    current, failed = layout.current_version(), failed_releases(layout)
    target = to or previous_release(releases_of(layout), current, failed)
    if target is None or target not in releases_of(layout):
        reason = "no release %s on the host" % to if to else "no earlier release to roll back to"
        return {"ok": False, "new": current, "stage": "rollback", "reason": reason}
    try:
        activate(layout, target, url, timeout, manager)
    except HostError as error:
        mark_failed(layout, target, "health: %s" % error)
        if current is not None:
            try:
                activate(layout, current, url, timeout, manager)
            except HostError:
                pass
        return {"ok": False, "new": layout.current_version(), "stage": "health", "reason": str(error)}
    reason = None
    if target in failed:
        clear_failed(layout, target)
        reason = "was marked failed, healthy now: mark cleared"
    return {"ok": True, "new": target, "stage": None, "reason": reason}


def deploy(layout, version, url, timeout, manager, keep=3):
    """An agent's whole deploy of an upload: install, activate, and on failure mark it failed and return to
    the release that was current (or stop, if there was none). Returns {"ok", "new", "stage", "reason"}."""
    old = layout.current_version()
    stage = "install"
    try:
        install(layout, version)
        stage = "health"
        live = go_live(layout, version, url, timeout, manager)
        if not live["healthy"]:
            raise HostError(live["reason"])
    except HostError as error:
        reason = str(error)
        if stage == "install":
            return {"ok": False, "new": old, "stage": stage, "reason": reason}
        mark_failed(layout, version, "%s: %s" % (stage, reason))
        if old is None:
            unset(layout, manager)
            return {"ok": False, "new": None, "stage": stage,
                    "reason": reason + "; no earlier release to return to: daemon stopped"}
        try:
            activate(layout, old, url, timeout, manager)
        except HostError as again:
            reason += "; rollback failed too: %s" % again
        return {"ok": False, "new": layout.current_version(), "stage": stage, "reason": reason}
    prune(layout, keep)
    return {"ok": True, "new": version, "stage": None, "reason": live["reason"],
            "reloaded": [name for name, _ in live["stages"]] == ["switch", "reload"]}


def agent_launcher(layout):
    """The agent's launcher for this root: the code of the release current when it starts (it keeps running
    that until restarted), unless that code is on trial and failed it (agent_trial.py, which then goes back to
    the proven release, or whose own failure leaves `current`'s); this root's settings, every trusted key."""
    return ("#!/bin/sh\n"
            "# bloomkit's update agent for this deploy root (written by install.py agent-install).\n"
            "root=%s\n"
            'release=$(%s "$root/agent/%s" --root "$root" --pid $$ start) ||\n'
            '    release=$(readlink -f "$root/current") || exit 1\n'
            "set --\n"
            'for key in "$root"/agent/trusted-*.pub; do set -- "$@" --trust "$key"; done\n'
            'while IFS= read -r option; do set -- "$@" "$option"; done < "$root/agent/agent.args"\n'
            "# No bytecode: the agent may run as root in releases the deploy user prunes.\n"
            'export PYTHONPATH="$release/lib" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\n'
            'exec "$release/venv/bin/python" -m device.cli agent --root "$root" "$@"\n') % (
                shlex.quote(layout.root), shlex.quote(sys.executable), AGENT_TRIAL)


def read_folder(path):
    """{name: bytes} of a folder's files ({} if it does not exist)."""
    if not os.path.isdir(path):
        return {}
    files = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as file:
            files[name] = file.read()
    return files


def agent_running(layout, manager):
    if manager == "pidfile":
        return pidfile.running_pid(layout.root, "agent") is not None
    return subprocess.call(as_root(["systemctl", "is-active", "--quiet", AGENT_UNIT])) == 0


def install_agent(layout, manager, uploaded, restart_anyway=False):
    """The agent's settings from an upload (agent.args: its options, one a line; trusted-N.pub: the public keys
    it trusts) into <root>/agent/ with its launcher, and daemon.args (the daemon's options for releases it pulls,
    which are the same for every device) into data/; the agent (re)started when they changed, when asked (a new
    release: the agent runs the code it started with), or when it is not running; else left running."""
    wanted = {name: data for name, data in read_folder(uploaded).items()
              if name == "agent.args" or (name.startswith("trusted-") and name.endswith(".pub"))}
    try:
        if os.path.isfile(os.path.join(uploaded, "daemon.args")):   # the host's daemon options, for pulled releases
            make_data_dir(layout, manager)
            run(in_data_dir(manager, ["install", "-m", "0644", os.path.join(uploaded, "daemon.args"),
                                      os.path.join(layout.root, DEVICE_ARGS)]))
    finally:
        shutil.rmtree(uploaded, ignore_errors=True)
    if "agent.args" not in wanted or len(wanted) < 2:
        raise HostError("the agent's upload lacks agent.args or a trusted-N.pub key")
    wanted[AGENT_LAUNCHER] = agent_launcher(layout).encode()
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), AGENT_TRIAL), "rb") as file:
        wanted[AGENT_TRIAL] = file.read()      # the trial's counter, kept where no pulled release changes it
    changed = read_folder(layout.agent) != wanted
    if changed:
        staged = layout.agent + ".new"
        shutil.rmtree(staged, ignore_errors=True)
        os.makedirs(staged)
        for name, data in wanted.items():
            with open(os.path.join(staged, name), "wb") as file:
                file.write(data)
        os.chmod(os.path.join(staged, AGENT_LAUNCHER), 0o755)
        shutil.rmtree(layout.agent, ignore_errors=True)
        os.rename(staged, layout.agent)
    restarted = changed or restart_anyway or not agent_running(layout, manager)
    if restarted:
        if manager == "pidfile":
            os.makedirs(layout.data, mode=0o750, exist_ok=True)
            pidfile.stop(layout.root, "agent")
            pidfile.start(layout.root, "agent")
        else:
            systemd_restart(layout, AGENT_SYSTEMD_UNIT, agent_override(layout))
    return {"ok": True, "changed": changed, "restarted": restarted}


def remove_agent(layout, manager):
    """Stop the agent and remove its settings and the daemon options written with them (the inventory no longer
    asks for an agent). Its state in agent-state/ stays: an agent installed again later still refuses what it
    refused before (a release at or below the highest installed, a manifest replayed, a release that failed)."""
    present = os.path.isdir(layout.agent)
    if manager == "pidfile":
        pidfile.stop(layout.root, "agent")
    elif os.path.exists("%s/%s" % (UNIT_DIR, AGENT_UNIT)):
        run(as_root(["systemctl", "disable", "--now", "--quiet", AGENT_UNIT]))
        run(as_root(["rm", "-rf", "%s/%s" % (UNIT_DIR, AGENT_UNIT), "%s/%s.d" % (UNIT_DIR, AGENT_UNIT)]))
        run(as_root(["systemctl", "daemon-reload"]))
    if present:       # the daemon options written with it: a pushed release's launcher has its own
        run(in_data_dir(manager, ["rm", "-f", os.path.join(layout.root, DEVICE_ARGS)]))
    shutil.rmtree(layout.agent, ignore_errors=True)
    return {"ok": True, "removed": present}


def run(command, env=None, stdin=None):
    """Run a program; its failure is a HostError with its last line of output."""
    try:
        done = subprocess.run(command, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=env)
    except OSError as error:
        raise HostError("cannot run %s: %s" % (command[0], error.strerror))
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "exit status %d" % done.returncode).splitlines()
        raise HostError("%s failed: %s" % (" ".join(command[:3]), lines[-1]))
    return done.stdout


def healthz_url(layout, incoming=None):
    """The daemon's /healthz as the workstation recorded it in the manifest of the current release (or of
    the upload `incoming`)."""
    return read_manifest(layout.incoming(incoming) if incoming else layout.current)["healthz"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the deploy root")
    parser.add_argument("--service", default="auto", choices=("auto", "systemd", "pidfile"))
    parser.add_argument("--url", help="the daemon's /healthz on the host (default: the current release's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health (0: ask once)")
    commands = parser.add_subparsers(dest="action", required=True)
    for name in ("verify", "place", "install", "switch", "activate", "go-live", "deploy", "clear-failed",
                 "mark-failed"):
        commands.add_parser(name).add_argument("version")
    commands.choices["go-live"].add_argument("--no-reload", action="store_true", help="restart in any case")
    commands.choices["verify"].add_argument("--wheelhouse", metavar="KEY", help="verify this wheelhouse too")
    commands.choices["deploy"].add_argument("--keep", type=int, default=3, help="releases to keep (default 3)")
    commands.choices["mark-failed"].add_argument("reason")
    commands.add_parser("prune").add_argument("--keep", type=int, default=3)
    commands.add_parser("logs").add_argument("--lines", type=int, default=50)
    commands.add_parser("rollback").add_argument("--to", help="default: the newest earlier one that did not fail")
    for name in ("restart", "stop", "unset", "health"):
        commands.add_parser(name)
    secret = commands.add_parser("secret", help="install an uploaded file into the data directory's secrets/")
    secret.add_argument("name")
    secret.add_argument("uploaded")
    agent = commands.add_parser("agent-install", help="the update agent's settings from an upload, (re)started")
    agent.add_argument("uploaded", help="a folder with agent.args and trusted-N.pub")
    agent.add_argument("--restart", action="store_true", help="restart it even if its settings did not change")
    commands.add_parser("agent-remove", help="stop the update agent and remove its settings")
    args = parser.parse_args(argv)
    layout, manager = Layout(os.path.abspath(args.root)), manager_of(args.service)
    # Only the actions that need the daemon's address read it: the new release's for `deploy`.
    url = lambda: args.url or healthz_url(layout, args.version if args.action == "deploy" else None)  # noqa: E731
    live = lambda: go_live(layout, args.version, url(), args.timeout, manager, not args.no_reload)  # noqa: E731
    healthy = lambda body: {"healthy": True, "reason": None, "healthz": body}  # noqa: E731
    actions = {
        "verify": lambda: verify(layout, args.version, args.wheelhouse),
        "place": lambda: place(layout, args.version),
        "install": lambda: install(layout, args.version),
        "switch": lambda: switch(layout, args.version),
        "restart": lambda: restart(layout, manager),
        "stop": lambda: stop(layout, manager),
        "unset": lambda: unset(layout, manager),
        "health": lambda: healthy(wait_healthy(layout, url(), args.timeout, manager)),
        "activate": lambda: healthy(activate(layout, args.version, url(), args.timeout, manager)),
        "mark-failed": lambda: mark_failed(layout, args.version, args.reason),
        "clear-failed": lambda: clear_failed(layout, args.version),
        "prune": lambda: prune(layout, args.keep),
        "logs": lambda: print("\n".join(log_lines(layout, manager, args.lines))),
        "rollback": lambda: rollback(layout, args.to, url(), args.timeout, manager),
        "deploy": lambda: deploy(layout, args.version, url(), args.timeout, manager, args.keep),
        "secret": lambda: install_secret(layout, manager, args.name, args.uploaded),
        "go-live": live,
        "agent-install": lambda: install_agent(layout, manager, args.uploaded, args.restart),
        "agent-remove": lambda: remove_agent(layout, manager),
    }
    try:
        outcome = actions[args.action]()
    except HostError as error:
        if args.action in ("health", "activate", "go-live"):
            print(json.dumps({"healthy": False, "reason": str(error), "healthz": None, "stages": []}))
        else:
            print("install.py %s: %s" % (args.action, error), file=sys.stderr)
        return 1
    if outcome is not None:
        print(json.dumps(outcome))
        return 0 if outcome.get("ok", outcome.get("healthy")) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
