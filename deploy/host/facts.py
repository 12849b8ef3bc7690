"""What pre-flight needs to know about a host, as one JSON line: CPU, OS, Python, glibc, free disk, the
releases and venvs under the deploy root, the service manager, and what listens on the daemon's port.

The workstation sends this file's text with `python3 -c` before anything of ours is on the host, so it
imports nothing of ours and keeps to old syntax: a Python too old to run bloomkit still gets reported.
Usage: facts.py ROOT FAILED_MARKER HEALTHZ_URL UNIT DAEMON_HOST DAEMON_PORT
"""
import json
import os
import platform
import socket
import subprocess
import sys


def listing(path):
    return sorted(n for n in os.listdir(path) if not n.startswith(".")) if os.path.isdir(path) else []


def link(path):
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def healthz_of(url):
    """The daemon's answer now (also a 503 body), so that deciding to skip or hot-reload needs no other call."""
    from urllib.error import HTTPError
    from urllib.request import urlopen
    try:
        return json.loads(urlopen(url, timeout=3).read().decode())
    except HTTPError as error:
        try:
            return json.loads(error.read().decode())
        except Exception:
            return None
    except Exception:
        return None


def port_taken(host, port):
    """Whether anything accepts connections on the daemon's address (ours or not)."""
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False


def service_pids(root, unit):
    """The daemon's pid as each service manager knows it (0 or None: not running)."""
    pids = {"pidfile": None, "systemd": None}
    try:
        with open(os.path.join(root, "run", "daemon.pid")) as f:
            pids["pidfile"] = int(f.read().strip())
    except (OSError, ValueError):
        pass
    if os.path.isdir("/run/systemd/system"):
        try:
            out = subprocess.check_output(["systemctl", "show", "--property", "MainPID", "--value", unit],
                                          stderr=subprocess.STDOUT)
            pids["systemd"] = int(out.decode().strip() or 0)
        except (OSError, ValueError, subprocess.CalledProcessError):
            pass
    return pids


def os_name():
    if os.path.exists("/etc/os-release"):
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.rstrip("\n").split("=", 1)[1].strip('"')
    return platform.system()


def facts(root, failed_marker, healthz_url, unit, daemon_host, daemon_port):
    probe = root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    disk = os.statvfs(probe)
    manifest = read_json(os.path.join(root, "current", "manifest.json"))
    taken = port_taken(daemon_host, daemon_port)
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
        has_venv = True
    except ImportError:
        has_venv = False
    releases = listing(os.path.join(root, "releases"))
    failed = [r for r in releases if os.path.exists(os.path.join(root, "releases", r, failed_marker))]
    venvs = [n for n in listing(os.path.join(root, "venvs"))
             if os.path.exists(os.path.join(root, "venvs", n, ".complete"))]
    return {
        "machine": platform.machine(), "os": os_name(),
        "python": list(sys.version_info[:2]), "glibc": platform.libc_ver()[1], "free": disk.f_bavail * disk.f_frsize,
        "current": link(os.path.join(root, "current")), "manifest": manifest, "releases": releases,
        "venv_of": dict((r, link(os.path.join(root, "releases", r, "venv"))) for r in releases), "venvs": venvs,
        "failed": failed, "healthz": healthz_of(healthz_url) if taken else None, "port_taken": taken,
        "service_pids": service_pids(root, unit),
        "agent": os.path.isdir(os.path.join(root, "agent")),
        "systemd": os.path.isdir("/run/systemd/system"), "root_user": os.geteuid() == 0, "has_venv": has_venv,
        "writable": os.access(probe, os.W_OK), "probe": probe}


if __name__ == "__main__":
    print(json.dumps(facts(*sys.argv[1:7])))
