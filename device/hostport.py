"""HOST:PORT, as typed by a user: the one parser for every address option and setting."""
from __future__ import annotations

import re

from device.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")   # a host name or an IPv4 address


class HostPortError(UserError):
    """An address that is not HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address with a valid port."""


def parse_host_port(text: str, default_port: int, *, any_port: bool = False) -> tuple[str, int]:
    """(host, port) from `host`, `host:port`, `[::1]:2222`, `[::1]` or `::1`; the port must be 1-65535
    (or 0 with `any_port`: a listening address that takes any free port). An IPv6 host comes back without
    its brackets."""
    if not isinstance(text, str) or not text.strip():
        raise HostPortError(f"{text!r}: expected HOST or HOST:PORT")
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise HostPortError(f"{text!r}: expected [IPv6]:PORT, as in [::1]:2222")
        port_text = rest[1:] if rest else None
        if ":" not in host:
            raise HostPortError(f"{text!r}: brackets are for IPv6 addresses")
    elif text.count(":") > 1:
        host, port_text = text, None                    # a bare IPv6 address: no port
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
        if not host:
            raise HostPortError(f"{text!r}: no host before the port")
        if not _NAME.match(host):
            raise HostPortError(f"{text!r}: {host!r} is not a host name or address")
    if ":" in host and not re.fullmatch(r"[0-9A-Fa-f:.]+(%[\w.-]+)?", host):
        raise HostPortError(f"{text!r}: {host!r} is not an IPv6 address")
    return host, default_port if port_text is None else parse_port(port_text, text, any_port=any_port)


def parse_port(value: object, where: str | None = None, *, any_port: bool = False) -> int:
    """A TCP port, 1-65535 (0 too with `any_port`), from text or an int (a YAML/TOML value); `where` names
    it in the message."""
    label = f"{where!r}: port" if where is not None else "port"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise HostPortError(f"{label} must be a number from 1 to 65535, not {value!r}")
    text = str(value).strip()
    if not text.isdigit():
        raise HostPortError(f"{label} must be a number from 1 to 65535, not {value!r}")
    port = int(text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise HostPortError(f"{label} must be from {0 if any_port else 1} to 65535, not {port}")
    return port
