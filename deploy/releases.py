"""What a release is: its files, manifest and identity, staged on the workstation for one host. Where it goes
on the host is `deploy.host.layout`."""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.build import Wheelhouse, sha256_file, write_sums
from deploy.host.layout import DEVICE_ARGS, LAUNCHER, MODEL_NAME
from deploy.inventory import Host


@dataclass(frozen=True)
class Bundle:
    """A release staged locally for one host, ready to upload."""

    version: str
    directory: Path
    identity: str        # equal identities mean the same release: a repeat deploy is skipped
    model_sha256: str
    wheel: str           # the bloomkit wheel's file name

    def files(self) -> list[Path]:
        return sorted(self.directory.iterdir())

    def manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())


def new_version(model_sha256: str, taken: list[str]) -> str:
    """Sortable in deploy order: UTC time to the millisecond, then the model's hash prefix. If the host's
    newest release sorts later (two deploys within a millisecond, or another workstation's clock ahead),
    the name is that one's plus a suffix, so it still sorts after it."""
    now = time.time()
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1000):03d}Z-{model_sha256[:8]}"
    newest = max(taken, default="")
    return version if version > newest else f"{newest}.{model_sha256[:8]}"


def stage(host: Host, model: Path, model_info: dict, wheel: Path, wheelhouse: Wheelhouse, directory: Path,
          version: str) -> Bundle:
    """Lay out one host's release in `directory`, with a manifest listing every file's sha256."""
    directory.mkdir(parents=True)
    shutil.copyfile(model, directory / MODEL_NAME)
    shutil.copyfile(wheel, directory / wheel.name)
    config_name = None
    if host.daemon.config is not None:
        config_name = "device-config" + host.daemon.config.suffix
        shutil.copyfile(host.daemon.config, directory / config_name)
    launcher = directory / LAUNCHER
    launcher.write_text(_launcher(host, config_name))
    launcher.chmod(0o755)
    payload = {p.name: sha256_file(p) for p in sorted(directory.iterdir())}
    identity = hashlib.sha256(json.dumps([payload, wheelhouse.key], sort_keys=True).encode()).hexdigest()[:16]
    model_sha256 = payload[MODEL_NAME]
    manifest = {"version": version, "identity": identity, "venv": wheelhouse.key, "healthz": host.daemon.healthz_url,
                "model": {**model_info, "sha256": model_sha256, "file": MODEL_NAME},
                "requirements": list(wheelhouse.requirements), "files": payload}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_sums(directory, [*payload, "manifest.json"])
    return Bundle(version, directory, identity, model_sha256, wheel.name)


def _launcher(host: Host, config_name: str | None) -> str:
    options = host.daemon.run_options()
    config = f' --config "$here/{config_name}"' if config_name else ""
    return ("#!/bin/sh\n"
            "# Starts this release's daemon (written by `fab deploy`; run by systemd or service.py).\n"
            'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)\n'
            "# The root by its own path, not through this release: the daemon outlives the release it started\n"
            "# from, which a later deploy may prune (a path through a deleted directory no longer resolves).\n"
            'root=$(CDPATH= cd -- "$here/../.." && pwd -P)\n'
            'export PYTHONPATH="$here/lib" BLOOMKIT_RELEASE="$here"\n'
            "# Where this release's log begins (fab status quotes the current release's errors, not another's).\n"
            'echo "bloomkit: starting release ${here##*/}" >&2\n'
            "# Under systemd the release is read-only: keep the bytecode Python compiles in the state directory.\n"
            'if [ -n "$STATE_DIRECTORY" ]; then export PYTHONPYCACHEPREFIX="$STATE_DIRECTORY/pycache"; fi\n'
            "# The model through `current`: a model-only deploy switches it and the daemon reloads it, no restart.\n"
            "# The data directory is outside the releases: kept across deploys and rollbacks.\n"
            "# Device-local options last, so they win: the data folder's daemon.args, one per line (a pulled\n"
            "# release is the same for every device; each keeps its own port and camera there).\n"
            "set --\n"
            f'if [ -f "$root/{DEVICE_ARGS}" ]; then\n'
            f'    while IFS= read -r option; do set -- "$@" "$option"; done < "$root/{DEVICE_ARGS}"\n'
            "fi\n"
            f'exec "$here/venv/bin/python" -m device.cli run --model "$root/current/{MODEL_NAME}"{config} '
            f'--data-dir "$root/data" {shlex.join(options)} "$@"\n')
