"""The one host-side install path, run from the release being installed: deploy/host/install.py from the
release's own wheel, the code `fab deploy` runs on the host over SSH, started here as a subprocess (its
`deploy` action: verify, venv built or reused, unpack, atomic switch, restart, health with the model's
sha256 and this root's daemon, and on failure the switch back). The agent never imports `deploy`."""
from __future__ import annotations

import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

from device.errors import one_line

HOST_SCRIPTS = "deploy/host/"            # inside the bloomkit wheel: install.py and the modules it imports


def install(root: Path, version: str, wheel: str, health_url: str, timeout: float, scratch: Path,
            python: str = "python3") -> dict:
    """Install `releases/.incoming-<version>/` (its venv's wheelhouse in `wheelhouses/<key>/` when the venv
    must be built) and make it current; return install.py's answer {"ok", "new", "stage", "reason"}. The
    scripts are unpacked into `scratch`, the agent's own folder: what runs them may be root."""
    incoming = root / "releases" / f".incoming-{version}"
    with tempfile.TemporaryDirectory(prefix="host-scripts-", dir=scratch) as scripts:
        with zipfile.ZipFile(incoming / wheel) as archive:
            for name in archive.namelist():
                if name.startswith(HOST_SCRIPTS) and name.endswith(".py") and name.count("/") == 2:
                    (Path(scripts) / Path(name).name).write_bytes(archive.read(name))
        command = [python, str(Path(scripts) / "install.py"), "--root", str(root), "--url", health_url,
                   "--timeout", str(timeout), "deploy", version]
        result = subprocess.run(command, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        said = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        return {"ok": False, "new": None, "stage": "install",
                "reason": f"the host-side install could not run: {one_line(said[-1])}"}
