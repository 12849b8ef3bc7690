"""What the agent remembers between polls (`state.json`) and what it reports (`status.json`), both in
`<root>/agent-state/` (STATE_DIR), written atomically. `fab status` reads the status file over SSH.

Not in the data directory: under systemd the daemon's user owns that, and the highest release and serial seen
are what stops a downgrade or replay, so only the agent may write them."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from device.atomic import atomic_write

STATE_DIR = "agent-state"      # under the deploy root; deploy/host/layout.py's AGENT_STATUS names it too
PROVEN = "proven.json"         # in STATE_DIR, read by deploy/host/agent_trial.py (the agent's launcher)
TRIAL = "trial.json"           # in STATE_DIR, written by agent_trial.py: the starts of an agent on trial


@dataclass
class State:
    """Kept across restarts: never go below a serial or release seen, never retry a release that failed here."""

    serial: int = 0                    # the highest manifest serial verified: an older manifest is a replay
    release: int = 0                   # the release number installed by the agent (0: none yet)
    version: str | None = None
    failed: dict[str, str] = field(default_factory=dict)     # release number → why it failed here
    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def load(cls, path: Path) -> "State":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, path: Path) -> None:
        with atomic_write(path) as file:
            json.dump(asdict(self), file, indent=1)


@dataclass
class Status:
    """The device's report: the status file, and the retained MQTT message."""

    device: str
    channel: str
    release: int | None = None          # installed release number
    version: str | None = None          # the `current` release's name
    model_sha256: str | None = None
    health: str = "unknown"             # ok | unhealthy | unknown
    state: str = "starting"             # idle | waiting | refused | store-down | installed | rolled-back | failed
    last_check: str | None = None
    last_error: str | None = None
    failed_release: int | None = None   # the channel's release that failed on this device, if it did
    offered_release: int | None = None  # the channel's release at the last check
    agent_version: str | None = None    # the release whose code the agent runs (None: not run from a release)

    def carry_over(self, path: Path) -> None:
        """A rollback reported before this process started (by the agent before a restart, or by its launcher
        going back from a release whose agent failed) stays the news, as it would have in that process, until
        the channel changes."""
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(before, dict) and before.get("state") == "rolled-back":
            self.state, self.last_error = "rolled-back", before.get("last_error")
            self.failed_release = before.get("failed_release")

    def as_report(self) -> dict:
        return asdict(self)

    def changed_from(self, other: "Status | None") -> bool:
        """Worth a new MQTT message: anything but the time of the check."""
        if other is None:
            return True
        return {**asdict(self), "last_check": None} != {**asdict(other), "last_check": None}

    def write(self, path: Path) -> None:
        with atomic_write(path) as file:
            json.dump(self.as_report(), file, indent=1)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def proven(directory: Path) -> dict | None:
    """{"version", "release"}: the release whose agent code last proved itself (agent_trial.py reads it)."""
    try:
        return json.loads((directory / PROVEN).read_text())
    except (OSError, ValueError):
        return None


def prove(directory: Path, version: str, release: int) -> None:
    """Record that release `version`'s agent code runs (`release`: the agent's installed release number then):
    its trial is over, and it is where the launcher goes back to if a later release's agent fails at start."""
    with atomic_write(directory / PROVEN) as file:
        json.dump({"version": version, "release": release}, file)
    (directory / TRIAL).unlink(missing_ok=True)
