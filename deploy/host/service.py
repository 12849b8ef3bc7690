"""A pidfile service manager for hosts without systemd: start, stop, restart, status of the release's daemon.

Runs `<root>/current/run-daemon` detached in its own session, output appended to `<root>/logs/daemon.log`,
its pid in `<root>/run/daemon.pid`; `stop` ends the whole process group. Stdlib only: runs on the host.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = 10
MAX_LOG_BYTES = 5 * 1024 * 1024
# In the daemon's command line: the launcher (briefly, until it execs) or `python -m device.cli run`.
DAEMON_MARKERS = (b"run-daemon", b"device.cli")


def paths(root):
    return {"pidfile": os.path.join(root, "run", "daemon.pid"), "log": os.path.join(root, "logs", "daemon.log"),
            "command": os.path.join(root, "current", "run-daemon")}


def running_pid(root):
    """The daemon's pid if it is alive, else None (a stale pidfile is removed). A pid now used by
    another program, or a zombie, is not the daemon."""
    pidfile = paths(root)["pidfile"]
    try:
        with open(pidfile) as file:
            pid = int(file.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as file:
            command = file.read()
        with open("/proc/%d/stat" % pid) as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        command, state = b"", ""
    if not any(marker in command for marker in DAEMON_MARKERS) or state == "Z":
        if os.path.exists(pidfile):
            os.remove(pidfile)
        return None
    return pid


def start(root):
    if running_pid(root):
        return
    where = paths(root)
    for directory in (os.path.dirname(where["pidfile"]), os.path.dirname(where["log"])):
        os.makedirs(directory, exist_ok=True)
    if os.path.exists(where["log"]) and os.path.getsize(where["log"]) > MAX_LOG_BYTES:
        os.replace(where["log"], where["log"] + ".1")
    with open(where["log"], "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(("--- %s starting %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                             os.path.realpath(os.path.join(root, "current")))).encode())
        log.flush()
        process = subprocess.Popen([where["command"]], cwd=root, stdin=devnull, stdout=log, stderr=log,
                                   start_new_session=True)
    temporary = where["pidfile"] + ".new"
    with open(temporary, "w") as file:
        file.write("%d\n" % process.pid)
    os.replace(temporary, where["pidfile"])


def stop(root):
    pid = running_pid(root)
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and running_pid(root) == pid:
        time.sleep(0.1)
    if running_pid(root) == pid:
        os.killpg(pid, signal.SIGKILL)
    if os.path.exists(paths(root)["pidfile"]):
        os.remove(paths(root)["pidfile"])


def status(root):
    pid = running_pid(root)
    print(json.dumps({"running": pid is not None, "pid": pid}))
    return 0 if pid else 3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the deploy root (holds current/, run/, logs/)")
    parser.add_argument("action", choices=("start", "stop", "restart", "status"))
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if args.action == "status":
        return status(root)
    if args.action in ("stop", "restart"):
        stop(root)
    if args.action in ("start", "restart"):
        start(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
