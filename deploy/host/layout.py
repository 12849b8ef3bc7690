"""Where things live under a host's deploy root, and which releases to keep: the one description of the
layout, read by the workstation (to upload and to show commands) and by the scripts that run on the host.

    <root>/releases/<version>/   model.tflite, the wheel, run-daemon, manifest.json, SHA256SUMS,
                                 lib/ (the unpacked wheel: device code, these scripts, the systemd unit),
                                 venv -> ../../venvs/<key>, .failed (if its health check failed)
    <root>/releases/.incoming-<version>/   an upload not yet verified and installed
    <root>/current -> releases/<version>   switched atomically (a symlink renamed over it)
    <root>/venvs/<key>/          dependencies, shared by every release with the same requirements
    <root>/wheelhouses/<key>/    uploaded wheels, removed once their venv is built
    <root>/data/                 the daemon's files (`device run --data-dir`): outside the releases, kept
                                 across deploys and rollbacks, writable by the service user; daemon.args
                                 (this device's own daemon options)
    <root>/agent/                the update agent's settings where `fab deploy` installs one: agent.args
                                 (its options), trusted-N.pub (the keys it trusts), run-agent (its launcher),
                                 agent_trial.py (the trial of a release's new agent code, run by the launcher);
                                 owned by the deploy user, not by the daemon's (it decides what gets installed)
    <root>/agent-state/          the update agent's own files: state.json (the highest release and serial
                                 seen: its anti-downgrade and anti-replay memory), status.json, its staging
                                 area, proven.json (the release whose agent last completed a poll) and
                                 trial.json (the starts of a newer one's); written by the agent and its
                                 launcher only (root under systemd), kept when it is removed
    <root>/run/, <root>/logs/    the pidfile service manager's state and the daemon's (and agent's) log
    <root>/.deploy.lock          held (flock) by the deploy or rollback running on the host, if any

Stdlib only, and importable both as `deploy.host.layout` and, on the host, as the sibling `layout`.
"""
import os

MODEL_NAME = "model.tflite"
FAILED_MARKER = ".failed"      # pruned first, skipped by a rollback without --to; a healthy explicit rollback clears it
HOST_SCRIPTS = "lib/deploy/host"                       # in a release, from the unpacked wheel
SYSTEMD_UNIT = "lib/device/systemd/bloomkit-device.service"
AGENT_SYSTEMD_UNIT = "lib/device/systemd/bloomkit-agent.service"
LAUNCHER = "run-daemon"
AGENT_LAUNCHER = "run-agent"             # in <root>/agent/, written by install.py for this root
AGENT_TRIAL = "agent_trial.py"           # in <root>/agent/, copied by install.py: what the launcher asks first
INCOMING_PREFIX = ".incoming-"
DEVICE_ARGS = "data/daemon.args"          # this device's own `device run` options, one per line (docs/ota.md)
AGENT_STATE = "agent-state"               # device/agent/state.py's STATE_DIR
AGENT_STATUS = AGENT_STATE + "/status.json"   # the update agent's report (`device agent`)


class Layout:
    """Paths on the host under its deploy root."""

    def __init__(self, root):
        self.root = str(root)

    def __eq__(self, other):
        return isinstance(other, Layout) and other.root == self.root

    def __repr__(self):
        return "Layout(%r)" % self.root

    @property
    def releases(self):
        return self.root + "/releases"

    @property
    def current(self):
        return self.root + "/current"

    @property
    def data(self):
        return self.root + "/data"

    @property
    def agent(self):
        """The update agent's settings and launcher (not in data/: the daemon's user must not change them)."""
        return self.root + "/agent"

    @property
    def secrets(self):
        """Credentials for the daemon (mode 0700, files 0600), in the data directory: never in a release."""
        return self.data + "/secrets"

    @property
    def lock(self):
        """flock(1)ed for the whole of a deploy or rollback."""
        return self.root + "/.deploy.lock"

    @property
    def log(self):
        return self.root + "/logs/daemon.log"

    def release(self, version):
        return "%s/%s" % (self.releases, version)

    def failed_marker(self, version):
        return "%s/%s" % (self.release(version), FAILED_MARKER)

    def incoming(self, version):
        return "%s/%s%s" % (self.releases, INCOMING_PREFIX, version)

    def venv(self, key):
        return "%s/venvs/%s" % (self.root, key)

    def wheelhouse(self, key):
        return "%s/wheelhouses/%s" % (self.root, key)

    def scripts(self, release_dir):
        """The host scripts inside a release (or an incoming one)."""
        return "%s/%s" % (release_dir, HOST_SCRIPTS)

    def current_version(self):
        try:
            return os.path.basename(os.readlink(self.current))
        except OSError:
            return None


def to_prune(releases, venv_of, venvs, keep, current, failed=()):
    """(releases, venvs) to delete: all but the newest `keep` releases that did not fail (current always
    kept), and the venvs no kept release uses."""
    newest = sorted((r for r in releases if r not in failed), reverse=True)[:max(keep, 1)]
    kept = set(newest) | {current}
    used = {venv_of.get(release) for release in kept}
    return sorted(set(releases) - kept), sorted(set(venvs) - used)


def previous_release(releases, current, failed):
    """The newest release older than `current` that did not fail: where a rollback returns to."""
    older = [r for r in sorted(releases) if (current is None or r < current) and r not in failed]
    return older[-1] if older else None
