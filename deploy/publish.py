"""`fab publish`: build the release `fab deploy` builds, put its files into a release store by sha256, and
sign the channel manifest that points devices at it; or change only the manifest's rollout.

A file already in the store (an unchanged wheel, the same model) is never sent again: a model-only release
adds the model and the release's small manifest files, and rewrites `channels/<name>.json`.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from device.agent.manifest import FORMAT, RELEASE_FILES, WHEELHOUSE, encode
from device.agent.rollout import bucket
from deploy.build import Builder, Target, sha256_file, validate_model
from deploy.errors import DeployError, OptionError
from deploy.inventory import Host
from deploy.releases import new_version, stage
from deploy.stores import Store, channel_key, object_key

DEFAULT_TARGETS = ("aarch64-cp311-glibc2.36", "aarch64-cp313-glibc2.41")   # Raspberry Pi OS Bookworm, Trixie
DAY_S = 86400


class RolloutRefused(DeployError):
    """Widening a rollout whose last wave failed on too many devices."""

    stage = "rollout"


def parse_target(text: str) -> Target:
    """`aarch64-cp311-glibc2.36` → Target: the CPU, Python and oldest glibc a release is built for."""
    match = re.fullmatch(r"(aarch64|x86_64)-cp(\d)(\d+)-glibc(\d+)\.(\d+)", text.strip())
    if not match:
        raise OptionError(f"--target {text!r}: expected MACHINE-cpXY-glibcN.M, as in aarch64-cp311-glibc2.36")
    machine, major, minor, g_major, g_minor = match.groups()
    return Target(machine, (int(major), int(minor)), (int(g_major), int(g_minor)))


def parse_percent(text: str) -> float:
    try:
        value = float(str(text).rstrip("%"))
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:
        raise OptionError(f"--rollout {text!r}: expected a percentage from 0% to 100%")
    return value


def read_channel(store: Store, channel: str) -> dict | None:
    """The payload of the channel's current manifest (the publisher reads its own store: no check needed to
    number the next release; devices check everything)."""
    data = store.get_bytes(channel_key(channel))
    if data is None:
        return None
    try:
        return json.loads(json.loads(data)["payload"])
    except (ValueError, KeyError, TypeError):
        raise DeployError(f"{store.url}: {channel_key(channel)} is damaged: remove it to start the channel afresh")


@dataclass
class Published:
    """What one `fab publish` did, for its one-line summary and --json."""

    channel: str
    release: int
    version: str
    rollout: dict
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0

    def summary(self) -> str:
        state = "halted" if self.rollout["halted"] else f"rolling out to {self.rollout['percent']:g}%"
        return (f"{self.channel}: release {self.release} ({self.version}), {state}; uploaded {self.uploaded_files} "
                f"files ({self.uploaded_bytes / 1e6:.1f} MB), {self.reused_files} already in the store")


def publish_release(store: Store, sign: Callable, *, model: Path, channel: str, builder: Builder,
                    targets: list[Target], daemon_host: Host, percent: float = 100.0, valid_days: float = 30,
                    say: Callable[[str], None] = print) -> Published:
    """A new release on `channel`, numbered one above the previous."""
    previous = read_channel(store, channel)
    model_info = validate_model(model)
    version = new_version(model_info["sha256"], [previous["version"]] if previous else [])
    wheel = builder.wheel()
    result = Published(channel, (previous or {}).get("release", 0) + 1, version, {"percent": percent, "halted": False})
    entries = []
    with tempfile.TemporaryDirectory(prefix="bloomkit-publish-") as staging:
        for target in targets:
            say(f"building for {target.machine}, Python {target.python[0]}.{target.python[1]}")
            wheelhouse = builder.wheelhouse(target)
            bundle = stage(daemon_host, model, model_info, wheel, wheelhouse,
                           Path(staging) / f"{target.machine}-{target.python}" / version, version)
            files = {RELEASE_FILES: bundle.files(), WHEELHOUSE: wheelhouse.files()}
            entry = {"machine": target.machine, "python": list(target.python), "glibc": list(target.glibc),
                     "venv": wheelhouse.key}
            for part, paths in files.items():
                entry[part] = {p.name: _upload(store, p, result) for p in paths}
            entries.append(entry)
    payload = {"format": FORMAT, "channel": channel, "release": result.release, "version": version,
               "serial": (previous or {}).get("serial", 0) + 1, "model": model_info, "targets": entries,
               "rollout": result.rollout}
    _sign_and_write(store, sign, payload, valid_days)
    return result


def change_rollout(store: Store, sign: Callable, *, channel: str, percent: float | None, halt: bool,
                   max_failures: float, reports: Callable[[], list[dict]] | None, valid_days: float = 30,
                   say: Callable[[str], None] = print) -> Published:
    """Re-sign the channel's manifest with a new rollout (or only a new expiry); widening first reads the
    current wave's reports and refuses if more than `max_failures` of its reporting devices failed."""
    payload = read_channel(store, channel)
    if payload is None:
        raise DeployError(f"no channel {channel!r} in {store.url}: publish a release first (--model)")
    rollout = dict(payload["rollout"])
    if percent is not None and percent > rollout["percent"]:
        if reports is None:
            raise RolloutRefused("widening reads the last wave's reports: give --mqtt URL (or --force to skip)")
        failed, reporting = wave_failures(reports(), payload["release"], rollout["percent"])
        if failed and len(failed) > max_failures * reporting:
            raise RolloutRefused(
                f"release {payload['release']} failed on {len(failed)} of {reporting} reporting devices in the "
                f"{rollout['percent']:g}% wave ({', '.join(failed)}), more than --max-failures {max_failures:g}: "
                "not widening; fix and publish a new release, or --halt")
        say(f"the {rollout['percent']:g}% wave: {reporting} devices reported, {len(failed)} failed")
    if percent is not None:
        rollout["percent"] = percent
    rollout["halted"] = halt
    payload.update(rollout=rollout, serial=payload["serial"] + 1)
    _sign_and_write(store, sign, payload, valid_days)
    return Published(channel, payload["release"], payload["version"], rollout)


def wave_failures(reports: list[dict], release: int, percent: float) -> tuple[list[str], int]:
    """(ids of the devices in the first `percent` that failed `release`, how many of that wave reported)."""
    wave = [r for r in reports if isinstance(r.get("device"), str) and bucket(r["device"]) < percent]
    failed = sorted(r["device"] for r in wave if r.get("failed_release") == release)
    return failed, len(wave)


def _upload(store: Store, path: Path, result: Published) -> dict:
    digest, size = sha256_file(path), path.stat().st_size
    if store.has(object_key(digest)):
        result.reused_files += 1
    else:
        store.put_file(object_key(digest), path)
        result.uploaded_files += 1
        result.uploaded_bytes += size
    return {"sha256": digest, "size": size}


def _sign_and_write(store: Store, sign: Callable, payload: dict, valid_days: float) -> None:
    if not 0 < valid_days <= 3650:
        raise OptionError(f"--valid-days {valid_days:g}: expected more than 0 and at most 3650")
    now = time.time()
    payload.update(published=int(now), expires=int(now + valid_days * DAY_S))
    store.put_bytes(channel_key(payload["channel"]), encode(payload, sign), cache=False)
