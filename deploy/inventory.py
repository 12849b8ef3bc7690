"""The hosts to deploy to: a `fleet.yaml` inventory (defaults, hosts, groups) or one `-H user@host:port`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from deploy.errors import InventoryError
from device.errors import UserError
from device.hostport import parse_host_port, parse_port

SERVICE_MANAGERS = ("auto", "systemd", "pidfile")
DAEMON_PORT = 8080


@dataclass(frozen=True)
class DaemonOptions:
    """How `device run` is started on a host; part of a release, so a change is deployed and rolled back."""

    http: str = "127.0.0.1:8080"
    source: str | None = None        # None: the daemon's own default (the Pi camera)
    config: Path | None = None       # a local file, shipped inside the release
    args: tuple[str, ...] = ()       # further `device run` options
    mqtt_credentials: Path | None = None  # a local user:password file (0600): to <root>/data/secrets/, never a release

    def run_options(self) -> list[str]:
        """These options as `device run` takes them (the config file aside: it is a file of the release)."""
        return ["--http", self.http, *(["--source", self.source] if self.source is not None else []), *self.args]

    @property
    def address(self) -> tuple[str, int]:
        return parse_host_port(self.http, DAEMON_PORT)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def local_address(self) -> tuple[str, int]:
        """Where the daemon answers on the host itself (it listens on localhost unless configured otherwise)."""
        bind, port = self.address
        return ("127.0.0.1" if bind in ("0.0.0.0", "::", "*") else bind), port

    @property
    def healthz_url(self) -> str:
        host, port = self.local_address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


@dataclass(frozen=True)
class AgentOptions:
    """The update agent (`device agent`, docs/ota.md) that `fab deploy` installs beside the daemon. Device-local
    settings, not part of a release: a pulled release is the same for every device."""

    channel: str                     # …/channels/<name>.json on the store's web server
    trust: tuple[Path, ...]          # local public key files (`fab keygen`'s KEY.pub): copied to the host
    interval: float = 300.0          # seconds between polls
    mqtt: str | None = None          # mqtt://host:port for the retained reports
    device_id: str | None = None     # None: the inventory's host name


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
    agent: AgentOptions | None = None     # None: no agent (one a deploy installed earlier is removed)

    def agent_args(self) -> list[str]:
        """The agent's `device agent` options on this host, but for the trusted keys (their copies' paths are
        the host's business)."""
        agent = self.agent
        args = ["--channel", agent.channel, "--device-id", agent.device_id or self.name,
                "--daemon-http", self.daemon.healthz_url.removeprefix("http://").removesuffix("/healthz"),
                "--interval", f"{agent.interval:g}", "--python", self.python]
        return args + (["--mqtt", agent.mqtt] if agent.mqtt else [])


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
_AGENT_KEYS = {f.name for f in dataclasses.fields(AgentOptions)}


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
    """One host's settings, every value checked (type, range, files) so that a mistake is one line naming
    the key, before any host is touched."""
    where = f"host {name}"
    merged = {**defaults, **settings}
    daemon_defaults, daemon_settings = defaults.get("daemon") or {}, settings.get("daemon") or {}
    _expect_mapping(daemon_defaults, "defaults: daemon")
    _expect_mapping(daemon_settings, f"{where}: daemon")
    merged["daemon"] = {**daemon_defaults, **daemon_settings}
    _check_keys(merged, _HOST_KEYS, where)
    _check_keys(merged["daemon"], _DAEMON_KEYS, f"{where} daemon")
    daemon = _daemon_options(merged.pop("daemon"), base, f"{where}: daemon")
    agent = _agent_options(defaults.get("agent"), settings.get("agent"), base, f"{where}: agent")
    merged.pop("agent", None)
    for key in ("hostname", "user", "root", "python", "service", "identity", "known_hosts"):
        if key in merged:
            merged[key] = _text(merged[key], f"{where}: {key}")
    if "hostname" in merged:
        _check_hostname(merged["hostname"], where)
    if "user" in merged and any(c in merged["user"] for c in "@: \t"):
        raise InventoryError(f"{where}: user must be a user name, not {merged['user']!r}")
    for key in ("identity", "known_hosts"):
        if key in merged:
            merged[key] = _path(merged[key], base)
    if "identity" in merged and not merged["identity"].is_file():
        raise InventoryError(f"{where}: identity file {merged['identity']} not found")
    if "port" in merged:
        merged["port"] = _port(merged["port"], where)
    if not merged.get("root", "/").startswith("/"):
        raise InventoryError(f"{where}: root must be an absolute path on the host, not {merged['root']!r}")
    if merged.get("service", "auto") not in SERVICE_MANAGERS:
        raise InventoryError(f"{where}: service must be one of {', '.join(SERVICE_MANAGERS)}")
    return Host(name=name, daemon=daemon, agent=agent, **merged)


def _daemon_options(options: Mapping, base: Path, where: str) -> DaemonOptions:
    """`device run`'s options from the inventory, checked as the daemon will check them."""
    from device.daemon.config import check_options

    daemon = dict(options)
    for key in ("http", "source", "config"):
        if key in daemon:
            daemon[key] = _text(daemon[key], f"{where} {key}")
    if "http" in daemon:
        try:
            _, port = parse_host_port(daemon["http"], 0)
        except UserError as error:
            raise InventoryError(f"{where} http: {error}") from None
        if not port:
            raise InventoryError(f"{where} http must be HOST:PORT, not {daemon['http']!r}")
    if "config" in daemon:
        daemon["config"] = _path(daemon["config"], base)
        if not daemon["config"].is_file():
            raise InventoryError(f"{where} config: {daemon['config']} not found")
    if "mqtt_credentials" in daemon:
        daemon["mqtt_credentials"] = _secret_file(_path(_text(daemon["mqtt_credentials"], where), base), where)
    if "args" in daemon:
        args = daemon["args"]
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                                 for a in args):
            raise InventoryError(f"{where} args must be a list of options and values, as in [--top-k, 3], "
                                 f"not {args!r}")
        daemon["args"] = tuple(str(a) for a in args)
    try:
        check_options(list(daemon.get("args", ())), daemon.get("config"))
    except UserError as error:
        raise InventoryError(f"{where}: {error}") from None
    return DaemonOptions(**daemon)


def _agent_options(defaults: Any, settings: Any, base: Path, where: str) -> AgentOptions | None:
    """The agent's settings: the defaults' merged with the host's; `agent: false` on a host turns it off."""
    from device.agent.manifest import ManifestError, load_public_key
    from device.agent.mqtt import MqttError, parse_url
    from urllib.parse import urlsplit

    if settings is False or (settings is None and not defaults):
        return None
    for value, name in ((defaults, "defaults: agent"), (settings, where)):
        if value is not None:
            _expect_mapping(value, name)
    agent = {**(defaults or {}), **(settings or {})}
    _check_keys(agent, _AGENT_KEYS, where)
    if "channel" not in agent or "trust" not in agent:
        raise InventoryError(f"{where}: needs channel (the channel manifest's URL) and trust (the public key file)")
    channel = _text(agent["channel"], f"{where} channel")
    url = urlsplit(channel)
    if url.scheme not in ("http", "https") or not url.netloc or "/channels/" not in url.path \
            or not url.path.endswith(".json"):
        raise InventoryError(f"{where} channel: expected http(s)://HOST/…/channels/NAME.json, not {channel!r}")
    trust = agent["trust"] if isinstance(agent["trust"], list) else [agent["trust"]]
    keys = tuple(_path(_text(key, f"{where} trust"), base) for key in trust)
    for key in keys:
        try:
            load_public_key(key.read_text(errors="replace"))
        except OSError as error:
            raise InventoryError(f"{where} trust: cannot read {key}: {error.strerror}") from None
        except ManifestError as error:
            raise InventoryError(f"{where} trust: {key}: {error}") from None
    interval = agent.get("interval", 300)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < float("inf"):
        raise InventoryError(f"{where} interval must be a positive number of seconds, not {interval!r}")
    mqtt = _text(agent["mqtt"], f"{where} mqtt") if agent.get("mqtt") is not None else None
    if mqtt is not None:
        try:
            parse_url(mqtt)
        except MqttError as error:
            raise InventoryError(f"{where} mqtt: {error}") from None
    device_id = _text(agent["device_id"], f"{where} device_id") if "device_id" in agent else None
    return AgentOptions(channel, keys, float(interval), mqtt, device_id)


def _secret_file(path: Path, where: str) -> Path:
    """A credentials file as the daemon will take it: private (0600) and `user:password`, checked before any host."""
    from device.daemon.mqtt import MqttError, read_credentials

    try:
        read_credentials(path)
    except MqttError as error:
        raise InventoryError(f"{where} mqtt_credentials: {error}") from None
    return path


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise InventoryError(f"{where} must be a text value, not {value!r}")
    return str(value)


def _port(value: Any, where: str) -> int:
    try:
        return parse_port(value)
    except UserError as error:
        raise InventoryError(f"{where}: {error}") from None


def _check_hostname(hostname: str, where: str) -> None:
    try:
        host, port = parse_host_port(hostname, 0)
    except UserError as error:
        raise InventoryError(f"{where}: hostname {error}") from None
    if port:
        raise InventoryError(f"{where}: hostname {hostname!r} has a port: give it as port: {port}")


def _path(value: Any, base: Path) -> Path:
    return (base / Path(str(value)).expanduser()).resolve()


def _expect_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise InventoryError(f"{where} must be a mapping of settings")


def _check_keys(settings: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise InventoryError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
