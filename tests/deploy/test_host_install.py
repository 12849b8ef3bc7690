"""The host side on its own, as a device agent runs it without SSH: `install.py deploy` makes an upload a
release (verify, venv, lib/), switches to it, starts the daemon and waits for its health; a release that
does not get healthy is marked failed and the host returns to the previous one. The same code `fab deploy`
runs stage by stage over SSH."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.build import Target
from deploy.host.layout import Layout
from deploy.inventory import DaemonOptions, Host
from deploy.releases import new_version, stage
from testkit.processes import free_port
from testkit.sshlab import stop_daemon

pytestmark = pytest.mark.slow

INSTALL = Path(__file__).resolve().parents[2] / "deploy" / "host" / "install.py"


def this_machine() -> Target:
    import platform

    major, minor = (int(n) for n in platform.libc_ver()[1].split(".")[:2])
    return Target(platform.machine(), sys.version_info[:2], (major, minor))


def upload(root: Path, host: Host, model: Path, builder, staging: Path) -> str:
    """What an agent would have downloaded: a release in releases/.incoming-VERSION, its wheelhouse beside."""
    from deploy.build import validate_model

    info = validate_model(model)
    layout = Layout(str(root))
    releases = [p.name for p in (root / "releases").iterdir()] if (root / "releases").is_dir() else []
    version = new_version(info["sha256"], releases)
    wheelhouse = builder.wheelhouse(this_machine())
    bundle = stage(host, model, info, builder.wheel(), wheelhouse, staging / version, version)
    shutil.copytree(bundle.directory, layout.incoming(version))
    if not (root / "venvs" / wheelhouse.key / ".complete").exists():
        shutil.copytree(wheelhouse.path, layout.wheelhouse(wheelhouse.key))
    return version


def install(root: Path, *args: str) -> tuple[int, dict | None, str]:
    done = subprocess.run([sys.executable, str(INSTALL), "--root", str(root), "--service", "pidfile", *args],
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else None, done.stderr


def test_an_agent_installs_activates_and_rolls_back_on_the_host_itself(tmp_path, builder, models, photos):
    root = tmp_path / "opt" / "bloomkit"
    host = Host(name="local", root=str(root), python=sys.executable,
                daemon=DaemonOptions(http=f"127.0.0.1:{free_port()}", source=f"folder:{photos}",
                                     args=("--source-fps", "4")))
    try:
        first = upload(root, host, models.first, builder, tmp_path / "staging")
        code, outcome, stderr = install(root, "--timeout", "60", "deploy", first)
        assert (code, outcome) == (0, {"ok": True, "new": first, "stage": None, "reason": None,
                                       "reloaded": False}), stderr
        assert os.readlink(root / "current") == f"releases/{first}" and (root / "data").is_dir()
        code, health, _ = install(root, "--timeout", "0", "health")
        assert code == 0 and health["healthz"]["release"]["version"] == first

        (root / "data" / "kept.txt").write_text("kept\n")
        broken = upload(root, host, models.broken, builder, tmp_path / "staging")
        code, outcome, stderr = install(root, "--timeout", "30", "deploy", broken)
        assert code == 1 and (outcome["ok"], outcome["new"], outcome["stage"]) == (False, first, "health"), stderr
        assert "cannot load the model" in outcome["reason"]
        assert (root / "releases" / broken / ".failed").read_text().startswith("health: ")
        assert os.readlink(root / "current") == f"releases/{first}"
        assert (root / "data" / "kept.txt").read_text() == "kept\n"

        code, outcome, _ = install(root, "rollback")                    # nothing older that did not fail
        assert (code, outcome["stage"], outcome["reason"]) == (1, "rollback", "no earlier release to roll back to")
    finally:
        stop_daemon(root)
