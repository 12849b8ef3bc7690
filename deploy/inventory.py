"""The hosts to deploy to: a `fleet.yaml` inventory (defaults, hosts, groups) or one `-H user@host:port`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from deploy.errors import InventoryError

SERVICE_MANAGERS = ("auto", "systemd", "pidfile")


@dataclass(frozen=True)
class DaemonOptions:
    """How `device run` is started on a host; part of a release, so a change is deployed and rolled back."""

    http: str = "127.0.0.1:8080"
    source: str | None = None        # None: the daemon's own default (the Pi camera)
    config: Path | None = None       # a local file, shipped inside the release
    args: tuple[str, ...] = ()       # further `device run` options

    @property
    def port(self) -> int:
        return int(self.http.rpartition(":")[2])


@dataclass(frozen=True)
class Host:
    """One target. Unset SSH fields (None) come from ssh_config, as Fabric resolves them."""

    name: str
    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    known_hosts: Path | None = None
    root: str = "/opt/bloomkit"
    python: str = "python3"
    service: str = "auto"
    daemon: DaemonOptions = field(default_factory=DaemonOptions)


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]
    defaults: Mapping = field(default_factory=dict)
    base: Path = Path(".")

    def select(self, group: str | None = None) -> list[Host]:
        """All hosts, or the hosts of one group, in inventory order."""
        if not self.hosts:
            raise InventoryError("the inventory lists no hosts")
        if group is None:
            return list(self.hosts.values())
        if group not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none"
            raise InventoryError(f"no group {group!r} in the inventory (groups: {known})")
        return [self.hosts[name] for name in self.groups[group]]

    def host(self, name: str, **ssh: Any) -> Host:
        """The listed host `name`, else one with the inventory's defaults; the given SSH settings (typed on
        Fabric's -H) win over both."""
        given = {key: value for key, value in ssh.items() if value is not None}
        if name in self.hosts:
            return dataclasses.replace(self.hosts[name], **given)
        return _host(name, self.defaults, {"hostname": name, **given}, self.base)


_HOST_KEYS = {f.name for f in dataclasses.fields(Host)} - {"name"}
_DAEMON_KEYS = {f.name for f in dataclasses.fields(DaemonOptions)}


def load_inventory(path: str | Path) -> Inventory:
    """Read and check an inventory file; paths in it are relative to the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise InventoryError(f"cannot read inventory {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise InventoryError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    _expect_mapping(data, f"{path}")
    _check_keys(data, {"defaults", "hosts", "groups"}, str(path))
    defaults = data.get("defaults") or {}
    _expect_mapping(defaults, "defaults")
    hosts_data = data.get("hosts") or {}
    _expect_mapping(hosts_data, "hosts")
    hosts = {}
    for name, settings in hosts_data.items():
        settings = settings or {}
        _expect_mapping(settings, f"host {name}")
        hosts[str(name)] = _host(str(name), defaults, settings, path.parent)
    groups = {}
    for group, members in (data.get("groups") or {}).items():
        if not isinstance(members, list):
            raise InventoryError(f"group {group!r} must be a list of host names")
        unknown = [m for m in members if m not in hosts]
        if unknown:
            raise InventoryError(f"group {group!r} names unknown hosts: {', '.join(map(str, unknown))}")
        groups[str(group)] = tuple(members)
    return Inventory(hosts, groups, defaults, path.parent)


def _host(name: str, defaults: Mapping, settings: Mapping, base: Path) -> Host:
    merged = {**defaults, **settings}
    merged["daemon"] = {**(defaults.get("daemon") or {}), **(settings.get("daemon") or {})}
    _check_keys(merged, _HOST_KEYS, f"host {name}")
    _check_keys(merged["daemon"], _DAEMON_KEYS, f"host {name} daemon")
    daemon = dict(merged.pop("daemon"))
    if "config" in daemon:
        daemon["config"] = _path(daemon["config"], base)
    if "args" in daemon:
        daemon["args"] = tuple(str(a) for a in daemon["args"])
    if "http" in daemon and not str(daemon["http"]).rpartition(":")[2].isdigit():
        raise InventoryError(f"host {name}: daemon http must be HOST:PORT, not {daemon['http']!r}")
    for key in ("identity", "known_hosts"):
        if key in merged:
            merged[key] = _path(merged[key], base)
    if "port" in merged:
        merged["port"] = int(merged["port"])
    if not str(merged.get("root", "/")).startswith("/"):
        raise InventoryError(f"host {name}: root must be an absolute path on the host, not {merged['root']!r}")
    if merged.get("service", "auto") not in SERVICE_MANAGERS:
        raise InventoryError(f"host {name}: service must be one of {', '.join(SERVICE_MANAGERS)}")
    return Host(name=name, daemon=DaemonOptions(**daemon), **merged)


def _path(value: Any, base: Path) -> Path:
    return (base / Path(str(value)).expanduser()).resolve()


def _expect_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise InventoryError(f"{where} must be a mapping of settings")


def _check_keys(settings: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise InventoryError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
