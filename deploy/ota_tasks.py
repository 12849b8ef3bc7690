"""`fab keygen | publish | fleet-status`: the pull side of updates (see docs/ota.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fabric import task

from deploy.errors import DeployError, OptionError
from deploy.tasks import DEFAULT_INVENTORY, number, one_line_errors

PUBLISH_HELP = {
    "model": "the .tflite model of a new release (without it, only the rollout or the expiry changes)",
    "channel": "the channel devices follow (default stable)",
    "store": "a directory, s3://bucket/prefix or sftp://[user@]host[:port]/path (default ./store)",
    "key": "the signing key (default ~/.config/bloomkit/signing-key)",
    "rollout": "the share of devices that install it, e.g. 10%, 50%, 100% (default 100% for a new release)",
    "halt": "stop the rollout: devices that have not installed it yet do not",
    "max-failures": "widening is refused if more than this share of the last wave failed (default 0)",
    "mqtt": "mqtt://host:port where devices report: read before widening a rollout",
    "force": "widen without reading reports",
    "target": "MACHINE-cpXY-glibcN.M builds, comma-separated (default aarch64-cp311-glibc2.36,"
              "aarch64-cp313-glibc2.41: Raspberry Pi OS Bookworm and Trixie)",
    "valid-days": "days until the manifest expires and devices refuse it unless re-published (default 30)",
    "inventory": "daemon options for the release from this inventory's defaults (default ./fleet.yaml if any)",
    "accept-new-host-keys": "for an sftp:// store: record its host key if new",
    "json": "print what was published as JSON",
}


@task(auto_shortflags=False, help={"key": "where to write the private key (default ~/.config/bloomkit/signing-key)",
                                   "force": "replace an existing key (devices trusting the old one stop updating)"})
@one_line_errors
def keygen(c, key=None, force=False):
    """Make the Ed25519 key that signs channel manifests; devices trust its public half (KEY.pub)."""
    from deploy.keys import DEFAULT_KEY, keygen as make

    public, keyid = make(Path(key) if key else DEFAULT_KEY, force=force)
    print(f"signing key {keyid}: private key {public.with_suffix('')} (mode 0600, keep it off every repository "
          f"and device); give devices {public}")


@task(auto_shortflags=False, help=PUBLISH_HELP)
@one_line_errors
def publish(c, model=None, channel="stable", store="store", key=None, rollout=None, halt=False, max_failures="0",
            mqtt=None, force=False, target=None, valid_days="30", inventory=None, accept_new_host_keys=False,
            json_=False):
    """Publish a signed release (or a rollout change) to a release store that devices pull from."""
    from deploy.build import Builder
    from deploy.inventory import Inventory, load_inventory
    from deploy.keys import DEFAULT_KEY, signer
    from deploy.publish import (DEFAULT_TARGETS, change_rollout, parse_percent, parse_target,
                                publish_release)
    from deploy.stores import open_store
    from device.agent.mqtt import read_retained

    percent = parse_percent(rollout) if rollout is not None else None
    share = number("--max-failures", max_failures)
    days = number("--valid-days", valid_days)
    if not channel.replace("-", "").replace("_", "").isalnum():
        raise OptionError(f"--channel {channel!r}: letters, digits, - and _ only")
    sign = signer(Path(key) if key else DEFAULT_KEY)
    path = Path(inventory) if inventory else DEFAULT_INVENTORY
    loaded = load_inventory(path) if inventory or path.is_file() else Inventory({}, {})
    options = {"accept_new_host_keys": accept_new_host_keys, "config": c.config, "open_host": loaded.host}
    opened = open_store(store, **options) if store.startswith("sftp:") else open_store(store)
    try:
        if model is not None:
            if halt:
                raise OptionError("--halt stops a rollout: publish the release, or halt it, not both")
            targets = [parse_target(t) for t in (target.split(",") if target else DEFAULT_TARGETS)]
            done = publish_release(opened, sign, model=Path(model), channel=channel, builder=Builder(),
                                   targets=targets, daemon_host=loaded.host("published"),
                                   percent=100.0 if percent is None else percent, valid_days=days, say=progress)
        else:
            reports = (lambda: []) if force else (lambda: read_retained(mqtt)) if mqtt else None
            done = change_rollout(opened, sign, channel=channel, percent=percent, halt=halt, max_failures=share,
                                  reports=reports, valid_days=days, say=progress)
    finally:
        opened.close()
    print(json.dumps(done.__dict__) if json_ else done.summary())


def progress(text: str) -> None:
    """What publishing is doing, on stderr: stdout carries the summary (or --json) only."""
    print(text, file=sys.stderr, flush=True)


@task(auto_shortflags=False, name="fleet-status",
      help={"mqtt": "mqtt://host:port that the agents report to", "json": "print the reports as JSON",
            "wait": "seconds to gather retained reports (default 1)"})
@one_line_errors
def fleet_status(c, mqtt=None, wait="1", json_=False):
    """Every agent's last report (release, health, last error), from their retained MQTT messages."""
    from device.agent.mqtt import read_retained

    if mqtt is None:
        raise DeployError("give the broker the agents report to: fab fleet-status --mqtt mqtt://host:port")
    reports = read_retained(mqtt, number("--wait", wait))
    if json_:
        print(json.dumps(reports, indent=1))
        return
    print(fleet_table(reports))


def fleet_table(reports: list[dict]) -> str:
    rows = [("DEVICE", "RELEASE", "HEALTH", "STATE", "LAST CHECK", "LAST ERROR")]
    for r in reports:
        rows.append((str(r.get("device")), str(r.get("release") or "-"), str(r.get("health")), str(r.get("state")),
                     str(r.get("last_check") or "-"), str(r.get("last_error") or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5] for row in rows]
    healthy = sum(r.get("health") == "ok" for r in reports)
    lines.append(f"{len(reports)} devices, {healthy} healthy")
    return "\n".join(lines)
