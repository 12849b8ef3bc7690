"""A pidfile service manager for hosts without systemd: start, stop, restart, status of the release's daemon,
and of the update agent where the inventory asks for one (`--program agent`).

`start` runs a small supervisor detached in its own session (its pid in `<root>/run/supervisor.pid`); it
runs `<root>/current/run-daemon` in its process group, output appended to `<root>/logs/daemon.log`, the
daemon's pid in `<root>/run/daemon.pid`, and, like the systemd unit's Restart=on-failure, starts it again
after a non-zero exit or a signal, waiting longer after each quick failure. `stop` ends the whole process
group, supervisor and daemon together. The agent is a second program supervised the same way, from
`<root>/agent/run-agent`, with `agent` in place of `daemon` in those file names (`agent-supervisor.pid`).
Stdlib only: runs on the host.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = 10
START_TIMEOUT_S = 120  # a loaded host may take long to start Python; start() returns as soon as the pid is written
MAX_LOG_BYTES = 5 * 1024 * 1024
RESTART_DELAYS_S = (1, 2, 5, 10, 30)   # after the 1st, 2nd, … failure in a row; the last one repeats
STABLE_S = 60                          # a daemon that ran this long before failing starts the delays afresh
# In a program's command line: its launcher (briefly, until it execs) or `python -m device.cli run|agent`.
MARKERS = {"daemon": (b"run-daemon", b"device.cli"), "agent": (b"run-agent", b"device.cli")}
SUPERVISOR_MARKERS = (b"service.py",)
PROGRAMS = tuple(MARKERS)


def paths(root, program="daemon"):
    """Where a supervised program's pid, its supervisor's pid and its log live, and what it runs."""
    if program == "daemon":
        return {"pidfile": os.path.join(root, "run", "daemon.pid"),
                "supervisor": os.path.join(root, "run", "supervisor.pid"),
                "log": os.path.join(root, "logs", "daemon.log"),
                "command": os.path.join(root, "current", "run-daemon")}
    return {"pidfile": os.path.join(root, "run", "agent.pid"),
            "supervisor": os.path.join(root, "run", "agent-supervisor.pid"),
            "log": os.path.join(root, "logs", "agent.log"), "command": os.path.join(root, "agent", "run-agent")}


def _alive(pidfile, markers):
    """The pid in `pidfile` if that process is alive and is what `markers` say, else None (a stale pidfile is
    removed). A pid now used by another program, or a zombie, does not count. A process in the middle of an
    exec (the launcher becoming `device.cli run`) shows an empty command line for a moment: it is alive."""
    try:
        with open(pidfile) as file:
            pid = int(file.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as file:
            command = file.read()
        with open("/proc/%d/stat" % pid) as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        command, state = None, ""
    if command == b"" and state not in ("Z", "X"):
        return pid
    if command is None or not any(marker in command for marker in markers) or state in ("Z", "X"):
        if os.path.exists(pidfile):
            os.remove(pidfile)
        return None
    return pid


def running_pid(root, program="daemon"):
    """The program's pid if it is alive, else None (also between a failure and the supervisor's restart)."""
    return _alive(paths(root, program)["pidfile"], MARKERS[program])


def supervisor_pid(root, program="daemon"):
    return _alive(paths(root, program)["supervisor"], SUPERVISOR_MARKERS)


def _write_pid(pidfile, pid):
    with open(pidfile + ".new", "w") as file:
        file.write("%d\n" % pid)
    os.replace(pidfile + ".new", pidfile)


def _log(where, text):
    with open(where["log"], "ab") as log:
        log.write(("--- %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), text)).encode())


def start(root, program="daemon"):
    """Start the supervisor, and return once it has started the program (so health checks find its pid)."""
    if supervisor_pid(root, program):
        return
    where = paths(root, program)
    for directory in (os.path.dirname(where["pidfile"]), os.path.dirname(where["log"])):
        os.makedirs(directory, exist_ok=True)
    if os.path.exists(where["pidfile"]):
        os.remove(where["pidfile"])
    with open(where["log"], "ab") as log, open(os.devnull, "rb") as devnull:
        supervisor = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--root", root, "--program", program,
                                       "supervise"],
                                      cwd=root, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    _write_pid(where["supervisor"], supervisor.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(where["pidfile"]) and supervisor.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def supervise(root, program="daemon"):
    """Run the program; start it again after a failure, as systemd's Restart=on-failure; return on a clean exit."""
    where = paths(root, program)
    failures = 0
    while True:
        if os.path.exists(where["log"]) and os.path.getsize(where["log"]) > MAX_LOG_BYTES:
            os.replace(where["log"], where["log"] + ".1")
        _log(where, "starting %s" % os.path.realpath(os.path.join(root, "current")))
        started = time.monotonic()
        with open(where["log"], "ab") as log, open(os.devnull, "rb") as devnull:
            daemon = subprocess.Popen([where["command"]], cwd=root, stdin=devnull, stdout=log, stderr=log)
        _write_pid(where["pidfile"], daemon.pid)
        code = daemon.wait()
        if code == 0:
            _log(where, "%s exited cleanly: not restarting" % program)
            return
        failures = 1 if time.monotonic() - started >= STABLE_S else failures + 1
        delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1]
        _log(where, "%s %s: restarting in %d s" % (program,
            "killed by signal %d" % -code if code < 0 else "exited with status %d" % code, delay))
        time.sleep(delay)


def stop(root, program="daemon"):
    """SIGTERM to the supervisor's process group (supervisor and program), SIGKILL after STOP_TIMEOUT_S."""
    group = supervisor_pid(root, program)
    if group is not None:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and (supervisor_pid(root, program) or running_pid(root, program)):
            time.sleep(0.1)
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pidfile in (paths(root, program)["pidfile"], paths(root, program)["supervisor"]):
        if os.path.exists(pidfile):
            os.remove(pidfile)


def status(root, program="daemon"):
    pid = running_pid(root, program)
    print(json.dumps({"running": pid is not None, "pid": pid, "supervisor": supervisor_pid(root, program)}))
    return 0 if pid else 3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the deploy root (holds current/, run/, logs/)")
    parser.add_argument("--program", choices=PROGRAMS, default="daemon", help="the daemon (default) or the agent")
    parser.add_argument("action", choices=("start", "stop", "restart", "status", "supervise"),
                        help="supervise: what start runs detached")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if args.action == "status":
        return status(root, args.program)
    if args.action == "supervise":
        return supervise(root, args.program)
    if args.action in ("stop", "restart"):
        stop(root, args.program)
    if args.action in ("start", "restart"):
        start(root, args.program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
