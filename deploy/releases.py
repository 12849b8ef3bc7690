"""What a release is (its files, manifest and identity), where releases live on a host, and which to keep.

    <root>/releases/<version>/   model, wheel, run-daemon, manifest.json, SHA256SUMS,
                                 lib/ (the unpacked wheel: also the host scripts and the systemd unit),
                                 venv -> ../../venvs/<key>
    <root>/current -> releases/<version>       switched atomically (symlink to a temp name, then mv -T)
    <root>/venvs/<key>/          dependencies, shared by every release with the same wheelhouse key
    <root>/wheelhouses/<key>/    uploaded wheels, removed once their venv is built
    <root>/run/, <root>/logs/    the pidfile service manager's state and the daemon's log
    <root>/.deploy.lock          held (flock) by the deploy or rollback running on the host, if any
"""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.build import Wheelhouse, sha256_file, write_sums
from deploy.inventory import Host

MODEL_NAME = "model.tflite"
FAILED_MARKER = ".failed"      # in a release that failed its health check: pruned first, skipped by a rollback
                               # without --to (an explicit, healthy rollback to it clears the mark)
HOST_SCRIPTS = "lib/deploy/host"                       # in a release, from the unpacked wheel
SYSTEMD_UNIT = "lib/device/systemd/bloomkit-device.service"
AGENT_STATUS = "data/agent/status.json"   # under the root: the update agent's report (`device agent`)
DEVICE_ARGS = "data/daemon.args"       # under the root: this device's own `device run` options, one per line


@dataclass(frozen=True)
class Layout:
    """Paths on the host under its deploy root."""

    root: str

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def lock(self) -> str:
        """flock(1)ed for the whole of a deploy or rollback."""
        return f"{self.root}/.deploy.lock"

    def release(self, version: str) -> str:
        return f"{self.releases}/{version}"

    def failed_marker(self, version: str) -> str:
        return f"{self.release(version)}/{FAILED_MARKER}"

    def incoming(self, version: str) -> str:
        return f"{self.releases}/.incoming-{version}"

    def venv(self, key: str) -> str:
        return f"{self.root}/venvs/{key}"

    def wheelhouse(self, key: str) -> str:
        return f"{self.root}/wheelhouses/{key}"

    def switch(self, version: str) -> str:
        """The shell command that points `current` at a release atomically."""
        temporary = f"{self.root}/.current.new"
        return (f"ln -sfn {shlex.quote('releases/' + version)} {shlex.quote(temporary)} && "
                f"mv -T {shlex.quote(temporary)} {shlex.quote(self.current)}")


@dataclass(frozen=True)
class Bundle:
    """A release staged locally for one host, ready to upload."""

    version: str
    directory: Path
    identity: str        # equal identities mean the same release: a repeat deploy is skipped
    model_sha256: str

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
    launcher = directory / "run-daemon"
    launcher.write_text(_launcher(host, config_name))
    launcher.chmod(0o755)
    payload = {p.name: sha256_file(p) for p in sorted(directory.iterdir())}
    identity = hashlib.sha256(json.dumps([payload, wheelhouse.key], sort_keys=True).encode()).hexdigest()[:16]
    model_sha256 = payload[MODEL_NAME]
    manifest = {"version": version, "identity": identity, "venv": wheelhouse.key,
                "model": {**model_info, "sha256": model_sha256, "file": MODEL_NAME},
                "requirements": list(wheelhouse.requirements), "files": payload}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_sums(directory, [*payload, "manifest.json"])
    return Bundle(version, directory, identity, model_sha256)


def _launcher(host: Host, config_name: str | None) -> str:
    options = ["--http", host.daemon.http]
    if host.daemon.source is not None:
        options += ["--source", host.daemon.source]
    options += list(host.daemon.args)
    config = f' --config "$here/{config_name}"' if config_name else ""
    return ("#!/bin/sh\n"
            "# Starts this release's daemon (written by `fab deploy`; run by systemd or service.py).\n"
            'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)\n'
            'export PYTHONPATH="$here/lib"\n'
            "# Under systemd the release is read-only: keep the bytecode Python compiles in the state directory.\n"
            'if [ -n "$STATE_DIRECTORY" ]; then export PYTHONPYCACHEPREFIX="$STATE_DIRECTORY/pycache"; fi\n'
            "# The model through `current`: a model-only deploy switches it and the daemon reloads it, no restart.\n"
            "# Device-local options last, so they win: the data folder's daemon.args, one per line (a pulled\n"
            "# release is the same for every device; each keeps its own port and camera there).\n"
            'set --\n'
            f'if [ -f "$here/../../{DEVICE_ARGS}" ]; then\n'
            f'    while IFS= read -r option; do set -- "$@" "$option"; done < "$here/../../{DEVICE_ARGS}"\n'
            'fi\n'
            f'exec "$here/venv/bin/python" -m device.cli run --model "$here/../../current/{MODEL_NAME}"{config} '
            f'{shlex.join(options)} "$@"\n')


def to_prune(releases: list[str], venv_of: dict[str, str], venvs: list[str], keep: int,
             current: str, failed: list[str] = ()) -> tuple[list[str], list[str]]:
    """(releases, venvs) to delete: all but the newest `keep` releases that did not fail (current always
    kept), and the venvs no kept release uses."""
    newest = sorted((r for r in releases if r not in failed), reverse=True)[:max(keep, 1)]
    kept = set(newest) | {current}
    used = {venv_of.get(release) for release in kept}
    return sorted(set(releases) - kept), sorted(set(venvs) - used)


def previous_release(releases: list[str], current: str | None, failed: list[str]) -> str | None:
    """The newest release older than `current` that did not fail: where a rollback returns to."""
    older = [r for r in sorted(releases) if (current is None or r < current) and r not in failed]
    return older[-1] if older else None
