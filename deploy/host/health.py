"""Wait until the daemon's /healthz says ok, serves the release's model, and is this deploy root's daemon;
print one JSON line.

Run on the host (the daemon listens on localhost). Exit 0 when healthy, 1 when the timeout passes (or the
daemon's process is gone) first. "This deploy root's daemon": with `--root`, the answer must come from the
process the service manager started (its pid) running a release of that root (its path), not from some
other program that happens to serve the same model on the port. Stdlib only.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from service import running_pid  # shipped beside this script

POLL_S = 0.1   # a start or reload is seen within 0.1 s of happening; a probe is one local HTTP request
UNIT = "bloomkit-device.service"


def probe(url):
    """(healthz body or None, reason it is not healthy or None)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            body = json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read().decode())
        except ValueError:
            return None, "HTTP %d" % error.code
    except (OSError, ValueError) as error:
        return None, "no answer on %s (%s)" % (url, getattr(error, "reason", error))
    if body.get("status") != "ok":
        return body, "unhealthy: %s" % (body.get("reason") or body.get("status"))
    return body, None


def expected_sha256(manifest):
    with open(manifest) as file:
        return json.load(file)["model"]["sha256"]


def service_pid(root, manager):
    """The daemon's pid as the service manager knows it, None when it runs none."""
    if manager == "systemd":
        try:
            out = subprocess.check_output(["systemctl", "show", "--property", "MainPID", "--value", UNIT])
            return int(out.decode().strip() or 0) or None
        except (OSError, ValueError, subprocess.CalledProcessError):
            return None
    return running_pid(root)


def stranger(body, root, manager):
    """Why the answer is not from this root's daemon, or None when it is."""
    pid, release = body.get("pid"), body.get("release") or {}
    ours = service_pid(root, manager)
    releases = os.path.realpath(os.path.join(root, "releases")) + os.sep
    if pid is None or pid != ours:
        return "another process answers on the port (pid %s), not this release's daemon (pid %s)" % (pid, ours)
    if not os.path.realpath(release.get("path") or "/").startswith(releases):
        return "the daemon that answers runs %s, not a release of %s" % (release.get("path"), root)
    return None


def wait_healthy(url, expected=None, timeout=60.0, root=None, manager="pidfile"):
    """(healthy, reason, body): polls until healthy or `timeout`; gives up early when a pidfile-managed
    daemon exits, as no restart would make this release healthy."""
    deadline = time.monotonic() + timeout
    while True:
        body, reason = probe(url)
        rejected = (body or {}).get("rejected_model") or {}
        if expected is not None and rejected.get("sha256") == expected:  # no use waiting: it said so at once
            reason = "the daemon cannot load the new model (%s)" % rejected.get("reason")
            break
        if reason is None and expected is not None:
            serving = (body.get("model") or {}).get("sha256")
            if serving != expected:
                reason = "serves model %s, expected %s" % (str(serving)[:12], expected[:12])
        if reason is None and root is not None:
            reason = stranger(body, root, manager)
        if reason is None or time.monotonic() >= deadline:
            break
        if root and manager == "pidfile" and running_pid(root) is None:
            reason = "daemon exited (%s)" % reason
            break
        time.sleep(POLL_S)
    return reason is None, reason, body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--manifest", help="the release's manifest.json: the model sha256 to expect")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (0: ask once)")
    parser.add_argument("--root", help="the deploy root: the answer must come from its service's daemon")
    parser.add_argument("--service", choices=("pidfile", "systemd"), default="pidfile",
                        help="the service manager that runs the daemon (default pidfile)")
    args = parser.parse_args(argv)
    expected = expected_sha256(args.manifest) if args.manifest else None
    healthy, reason, body = wait_healthy(args.url, expected, args.timeout, args.root, args.service)
    print(json.dumps({"healthy": healthy, "reason": reason, "healthz": body}))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
