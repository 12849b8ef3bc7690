"""The update agent's trial: a release that brings new agent code keeps it only once that code has run a poll.

Without it, a release whose agent crashes at start (an exception at import, at its first poll) would be
restarted by its supervisor for ever, and a device that only pulls could never receive the fixed release.
Like a bootloader's boot counter (Mender, SWUpdate), the count is kept outside the code on trial: the agent's
launcher (<root>/agent/run-agent) runs this script at every start of the agent, under systemd and under the
pidfile manager alike, to learn which release's agent to run. install.py agent-install copies it into
<root>/agent/ beside the launcher, so no pulled release can change it, and a broken release cannot break
its own fallback.

    python3 agent_trial.py --root R [--pid PID] start   # prints the release folder whose agent to run now
    python3 agent_trial.py --root R watch VERSION PID [SECONDS]   # what `start` leaves running on a trial

Proof: a release's agent code is proven once it has come through a poll (whatever the store answered: the
code runs). The watcher `start` leaves beside an agent on trial sees that without the agent's help, so that
releases built before the trial existed (a `fab rollback` to one) are proven too: every agent version rewrites
agent-state/status.json after each poll, and a rewrite while the agent still runs is proof. The watcher then
writes agent-state/proven.json ({"version", "release"}) itself; the agent also writes it (for a model-only
release it installs, which no trial watches). A `current` release other than the proven one is on trial:
each start is counted in agent-state/trial.json; the start after MAX_STARTS unproven ones, or after the
watcher killed an agent that completed no poll in TRIAL_S (`hung`: timed by the watcher's own monotonic
clock, never by wall-clock time, which a reboot or an NTP step would make meaningless), falls back, holding
the deploy lock: the agent's memory refuses the release (when the agent pulled it; a higher release is needed
to try again), the release is marked failed, and the proven release's own install.py `rollback --to` it
returns the daemon and the agent's code together, its health checked. Each step is safe to repeat, and the
state is written first: a fallback cut short is done again at the next start. A rollback that fails (the
proven release's daemon unhealthy now) is not tried again at every start: trial.json keeps it, and each start
runs the proven release's agent code beside `current`'s daemon until a newer release comes. If this script
fails, the launcher runs `current`'s agent as it did before there was a trial. Stdlib only: runs on the host.
"""
import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

STATE_DIR = "agent-state"       # device/agent/state.py's STATE_DIR, PROVEN and STATE name the same files
PROVEN = STATE_DIR + "/proven.json"
TRIAL = STATE_DIR + "/trial.json"
STATE = STATE_DIR + "/state.json"
STATUS = STATE_DIR + "/status.json"
SETTINGS = "agent/agent.args"
DEPLOY_LOCK = ".deploy.lock"
MAX_STARTS = 3                  # unproven starts of one release's agent before the device goes back
TRIAL_S = 600                   # an agent on trial that completes no poll in this long is killed
WATCH_STEP_S = 2                # how often the watcher looks for the proof
LOCK_WAIT_S = 300               # for a push deploy to finish; else the fallback waits for the next start
ROLLBACK_MARGIN_S = 120         # install.py rollback's limit: two health checks (there and back) and this
LOG_SCAN = 300                  # lines of the agent's log searched for its last error
UNIT = "bloomkit-agent.service"  # where systemd runs the agent (its journal)


def read_json(path):
    try:
        with open(path) as file:
            data = json.load(file)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path, data):
    with open(path + ".new", "w") as file:
        json.dump(data, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(path + ".new", path)


def say(text):
    print("bloomkit agent trial: " + text, file=sys.stderr, flush=True)


def start(root, pid=None):
    """Count this start of `current`'s agent if it is on trial, fall back if its trial failed; return the
    release folder whose agent to run (as process `pid`, the launcher's: watched while on trial)."""
    current = os.path.realpath(os.path.join(root, "current"))
    version = os.path.basename(current)
    proven = read_json(os.path.join(root, PROVEN)) or {}
    trial_path = os.path.join(root, TRIAL)
    if proven.get("version") in (None, version):     # proven, or no agent ever proved one: nothing to go back to
        if os.path.exists(trial_path):
            os.remove(trial_path)
        return current
    back = os.path.join(root, "releases", proven["version"])
    if not os.path.isdir(back):
        say("release %s's agent is on trial, but the proven release %s is gone: nothing to go back to"
            % (version, proven["version"]))
        return current
    trial = read_json(trial_path) or {}
    if trial.get("version") != version or not isinstance(trial.get("starts"), int):
        trial = {"version": version, "starts": 0}
    if trial.get("stuck"):
        say("release %s's agent failed its trial and going back failed (%s): running release %s's agent"
            % (version, trial["stuck"], proven["version"]))
        return back
    trial["starts"] += 1
    write_json(trial_path, trial)
    if trial["starts"] <= MAX_STARTS and not trial.get("hung"):
        say(on_trial(version, trial["starts"]) + " to complete a poll")
        if pid is not None:
            subprocess.Popen([sys.executable, os.path.abspath(__file__), "--root", root, "watch", version, str(pid),
                              str(TRIAL_S), status_mark(root)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return current
    why = ("hung: no poll completed in %d s" % TRIAL_S if trial.get("hung")
           else "%d starts without completing a poll" % (trial["starts"] - 1))
    logged = last_error(root, version)
    reason = "its agent did not prove itself (%s)%s" % (why, "; log: " + logged if logged else "")
    return fall_back(root, version, proven, reason, trial)


def fall_back(root, version, proven, reason, trial):
    """Back to the proven release, daemon and agent together; the release folder whose agent to run (the
    proven one's, also when its daemon could not come back: that is recorded in the trial, not retried)."""
    say("release %s: %s. Going back to release %s" % (version, reason, proven["version"]))
    script = os.path.join(root, "releases", proven["version"], "lib", "deploy", "host", "install.py")
    url, timeout = daemon_settings(root)
    with deploy_lock(root) as locked:
        if not locked:
            say("another deploy holds the lock: going back at the next start")
            return os.path.realpath(os.path.join(root, "current"))
        failed = refuse(root, version, proven, reason, trial)
        run_install(script, root, ["mark-failed", version, reason], ROLLBACK_MARGIN_S)
        answer = run_install(script, root, ["--url", url, "--timeout", "%g" % timeout, "rollback", "--to",
                                            proven["version"]], 2 * timeout + ROLLBACK_MARGIN_S)
    if not answer.get("ok"):
        say("could not go back to release %s: %s" % (proven["version"], answer.get("reason")))
        trial["stuck"] = str(answer.get("reason"))
        write_json(os.path.join(root, TRIAL), trial)
        report(root, "failed", "release %s: %s; going back to %s failed: %s; running %s's agent"
               % (failed or version, reason, proven["version"], answer.get("reason"), proven["version"]), failed)
        return os.path.join(root, "releases", proven["version"])
    os.remove(os.path.join(root, TRIAL))
    report(root, "rolled-back", "release %s: %s; back on %s" % (failed or version, reason, proven["version"]),
           failed, proven)
    return os.path.realpath(os.path.join(root, "current"))


def run_install(script, root, arguments, seconds):
    """The proven release's install.py, cut short after `seconds`; its JSON answer ({"ok": False, "reason"}
    when it gave none)."""
    try:
        done = subprocess.run([sys.executable, script, "--root", root] + arguments, stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, universal_newlines=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": "install.py took more than %.0f s: stopped" % seconds}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "reason": "install.py said nothing (exit status %d)" % done.returncode}


def refuse(root, version, proven, reason, trial):
    """In the agent's memory, a release it pulled and whose agent failed: refused from now on, the installed
    one the proven one again, and the channel read afresh at the next poll (which reports the refusal).
    Returns the refused release's number, kept in the trial for a fallback done again (None for a pushed
    release: not the agent's to refuse)."""
    path = os.path.join(root, STATE)
    state = read_json(path)
    if state is not None and state.get("version") == version:
        trial["refused"] = state.get("release")
        write_json(os.path.join(root, TRIAL), trial)
        state.setdefault("failed", {})[str(state.get("release"))] = reason
        state["release"], state["version"] = proven.get("release", 0), proven["version"]
        state["etag"] = state["last_modified"] = None
        write_json(path, state)
    return trial.get("refused")


def report(root, state, error, failed_release, proven=None):
    """The outcome in the agent's status file until the agent's own first poll reports it (as `failed`)."""
    path = os.path.join(root, STATUS)
    status = read_json(path) or {}
    status.update(state=state, last_error=error, failed_release=failed_release,
                  last_check=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if proven is not None:
        status.update(release=proven.get("release"), version=proven["version"], agent_version=proven["version"])
    write_json(path, status)


def status_mark(root):
    """What tells one write of the agent's status file from another (each is a new file, renamed into place)."""
    try:
        stat = os.stat(os.path.join(root, STATUS))
    except OSError:
        return "none"
    return "%d:%d:%d" % (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def watch(root, version, pid, seconds=TRIAL_S, mark=None):
    """Watch agent `pid` on trial: when it rewrites its status file (`mark`: the file as its start found it),
    it has come through a poll: prove release `version`. When it has not within `seconds` (at most TRIAL_S,
    from now: a damaged or hostile argument cannot make it wait longer), kill it and record the hang, which
    fails the trial at the next start. Runs in the agent's process group (its supervisor's or its unit's),
    which stopping the agent stops; ends early when the agent proves itself or exits."""
    seconds = min(max(seconds, 0), TRIAL_S) if seconds == seconds else TRIAL_S     # NaN: the full time
    deadline = time.monotonic() + seconds
    mark = status_mark(root) if mark is None else mark
    while still_on_trial(root, version, pid):
        if status_mark(root) != mark and still_on_trial(root, version, pid):
            prove(root, version)
            say("release %s's agent has completed a poll: proven" % version)
            return
        if time.monotonic() >= deadline:
            trial = read_json(os.path.join(root, TRIAL)) or {}
            if trial.get("version") == version:
                trial["hung"] = True
                write_json(os.path.join(root, TRIAL), trial)
            say("release %s's agent did not complete a poll in %.0f s: stopped" % (version, seconds))
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(max(0, min(WATCH_STEP_S, deadline - time.monotonic())))


def prove(root, version):
    """What the agent writes after a poll (device/agent/state.py's prove), for an agent that does not: release
    `version` and the agent's installed release number (if its state says one)."""
    release = (read_json(os.path.join(root, STATE)) or {}).get("release")
    proof = {"version": version, "release": release} if isinstance(release, int) else {"version": version}
    write_json(os.path.join(root, PROVEN), proof)
    if (read_json(os.path.join(root, TRIAL)) or {}).get("version") == version:
        os.remove(os.path.join(root, TRIAL))


def still_on_trial(root, version, pid):
    """Whether release `version` is still on trial (a proof removes trial.json) and `pid` still runs its agent
    or its launcher (a pid reused by another program, the daemon included, is not killed)."""
    if (read_json(os.path.join(root, TRIAL)) or {}).get("version") != version:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as file:
            command = file.read()
        with open("/proc/%d/stat" % pid) as file:
            zombie = file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False
    if zombie:
        return False
    return command == b"" or b"device.cli\0agent\0" in command + b"\0" or b"run-agent" in command   # "": in an exec


@contextlib.contextmanager
def deploy_lock(root):
    """The root's deploy lock, as `fab deploy` and the agent take it; yields whether it was taken in time."""
    with open(os.path.join(root, DEPLOY_LOCK), "a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(1)
        yield True


def daemon_settings(root):
    """The daemon's /healthz and the health timeout, from the agent's options (one a line, as agent-install
    writes them; the agent's defaults otherwise)."""
    try:
        with open(os.path.join(root, SETTINGS)) as file:
            options = [line.rstrip("\n") for line in file]
    except OSError:
        options = []
    value = lambda name, default: options[options.index(name) + 1] if name in options[:-1] else default  # noqa: E731
    try:
        timeout = float(value("--health-timeout", "60"))
    except ValueError:
        timeout = 60.0
    timeout = timeout if 0 <= timeout <= 3600 else 60.0     # NaN, inf: no endless limit for the rollback
    return "http://%s/healthz" % value("--daemon-http", "127.0.0.1:8080"), timeout


def on_trial(version, start_number):
    return "release %s's agent is on trial: start %d of %d" % (version, start_number, MAX_STARTS)


def last_error(root, version):
    """The last error line `version`'s agent logged since its trial began, or None."""
    lines = log_lines(root)
    began = [i for i, line in enumerate(lines) if on_trial(version, 1) in line]
    errors = [line for line in lines[began[-1]:] if "Error" in line or "Exception" in line] if began else []
    return errors[-1] if errors else None


def log_lines(root):
    """The end of the agent's log: the pidfile manager's logs/agent.log when that is where this start's output
    goes, else systemd's journal (a logs/agent.log left from the pidfile manager before systemd is no news)."""
    path = os.path.join(root, "logs", "agent.log")
    try:
        if os.path.samestat(os.fstat(sys.stderr.fileno()), os.stat(path)):
            with open(path, "rb") as file:
                return [line.decode(errors="replace").strip() for line in file.readlines()[-LOG_SCAN:]]
    except (OSError, ValueError):
        pass
    try:
        return subprocess.run(["journalctl", "-u", UNIT, "-n", str(LOG_SCAN), "-o", "cat", "--no-pager"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the deploy root")
    parser.add_argument("--pid", type=int, help="start: the launcher's pid, which the agent keeps (exec)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("start", help="print the release folder whose agent to run now")
    watcher = actions.add_parser("watch", help="prove release VERSION when agent PID polls, kill it if it has not "
                                               "in SECONDS (at most %d)" % TRIAL_S)
    watcher.add_argument("version")
    watcher.add_argument("pid", type=int)
    watcher.add_argument("seconds", type=float, nargs="?", default=TRIAL_S)
    watcher.add_argument("mark", nargs="?", help="the status file as the start found it")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if args.action == "watch":
        watch(root, args.version, args.pid, args.seconds, args.mark)
    else:
        print(start(root, args.pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
