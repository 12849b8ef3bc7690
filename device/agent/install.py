"""The one host-side install path, run from the release being installed: the same code `fab deploy` runs on
the host over SSH (deploy/host/ in the release's wheel), started here as a subprocess, so that push and pull
install, switch, check health and roll back identically. The agent never imports `deploy`."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from device.errors import one_line

HOST_SCRIPTS = "deploy/host/"            # inside the bloomkit wheel
HOST_INSTALL = "install.py"              # CALL SITE: the host-side install entry point (deploy reshape, issue 13)


def install(root: Path, version: str, venv_key: str, wheel: str, health_url: str, timeout: float,
            python: str = sys.executable) -> dict:
    """Install `releases/.incoming-<version>/` (verified files, wheelhouse in `wheelhouses/<venv_key>/` when
    the venv must be built) with the host scripts from its own wheel; return their JSON answer:
    {"status": "OK" | "ROLLED_BACK" | "FAILED", "reason": str | None, "current": version or None}."""
    incoming = root / "releases" / f".incoming-{version}"
    with tempfile.TemporaryDirectory(prefix="host-scripts-", dir=root / "data" / "agent") as scripts:
        with zipfile.ZipFile(incoming / wheel) as archive:
            for name in archive.namelist():
                if name.startswith(HOST_SCRIPTS) and name.endswith(".py"):
                    (Path(scripts) / Path(name).name).write_bytes(archive.read(name))
        command = [python, str(Path(scripts) / HOST_INSTALL), "--root", str(root), "--version", version,
                   "--venv", venv_key, "--wheel", wheel, "--url", health_url, "--timeout", str(timeout)]
        result = subprocess.run(command, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        said = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        return {"status": "FAILED", "reason": f"the host-side install could not run: {one_line(said[-1])}",
                "current": None}
