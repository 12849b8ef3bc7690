"""Starting and stopping the daemon on a host: its systemd unit on a Pi, else the pidfile manager we ship.

Both give the same semantics: `restart` returns once the daemon was (re)started detached; health is
then checked the same way, over /healthz on the host.
"""
from __future__ import annotations

from dataclasses import dataclass

from deploy.releases import HOST_SCRIPTS, SYSTEMD_UNIT, Layout
from deploy.ssh import quote

UNIT = SYSTEMD_UNIT.rpartition("/")[2]
USER = "bloomkit"   # the unit's User=
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class PidfileService:
    layout: Layout
    python: str

    name = "pidfile"

    def _ctl(self, action: str) -> str:
        script = f"{self.layout.current}/{HOST_SCRIPTS}/service.py"
        return quote(self.python, script, "--root", self.layout.root, action)

    def restart(self) -> list[str]:
        return [self._ctl("restart")]

    def stop(self) -> list[str]:
        script = f"{self.layout.current}/{HOST_SCRIPTS}/service.py"
        return [f"if [ -e {quote(script)} ]; then {self._ctl('stop')}; fi"]

    def logs(self, lines: int) -> str:
        return f"tail -n {int(lines)} {quote(self.layout.root + '/logs/daemon.log')}"

    def health_args(self) -> list[str]:
        return ["--root", self.layout.root]


@dataclass(frozen=True)
class SystemdService:
    """Installs the unit from device/systemd/ (in the release's wheel) with a drop-in that starts the
    current release's launcher, and the unit's system user; `sudo -n` when the deploy user is not root."""

    layout: Layout
    sudo: bool

    name = "systemd"

    def _root(self, command: str) -> str:
        return f"sudo -n {command}" if self.sudo else command

    def restart(self) -> list[str]:
        dropin = f"{UNIT_DIR}/{UNIT}.d"
        override = f"[Service]\nExecStart=\nExecStart={self.layout.current}/run-daemon\n"
        add_user = quote("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                         "--groups", "video", USER)
        return [
            f"id -u {USER} >/dev/null 2>&1 || " + self._root(add_user),
            self._root(quote("install", "-m", "0644", f"{self.layout.current}/{SYSTEMD_UNIT}",
                             f"{UNIT_DIR}/{UNIT}")),
            self._root(quote("mkdir", "-p", dropin)),
            f"printf %s {quote(override)} | {self._root(quote('tee', f'{dropin}/bloomkit-deploy.conf'))} >/dev/null",
            self._root("systemctl daemon-reload"),
            self._root(quote("systemctl", "enable", "--quiet", UNIT)),
            self._root(quote("systemctl", "restart", UNIT)),
        ]

    def stop(self) -> list[str]:
        return [self._root(quote("systemctl", "stop", UNIT))]

    def logs(self, lines: int) -> str:
        return self._root(f"journalctl -u {UNIT} -n {int(lines)} --no-pager")

    def health_args(self) -> list[str]:
        return []


def service_for(setting: str, layout: Layout, python: str, *, systemd: bool, root_user: bool):
    """The host's service manager: `setting` from the inventory, "auto" meaning systemd when it runs."""
    if setting == "systemd" or (setting == "auto" and systemd):
        return SystemdService(layout, sudo=not root_user)
    return PidfileService(layout, python)
