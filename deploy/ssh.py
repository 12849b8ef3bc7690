"""The one way to reach a host: Fabric's Connection with strict host keys, commands echoed in --dry-run,
and every SSH failure turned into a one-line reason."""
from __future__ import annotations

import logging
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import NoValidConnectionsError

from deploy.errors import ConnectError, DeployError, HostKeyError
from deploy.inventory import Host

CONNECT_TIMEOUT_S = 10
HELD_EXIT_TIMEOUT_S = 10     # for a held command to exit after end-of-input, on a slow host
# paramiko logs what goes wrong in its transport thread (a peer that is not SSH, a cut connection) as a
# traceback on stderr; each failure is already one line in the report.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


def connect(host: Host, *, config: Config | None = None, accept_new_host_keys: bool = False,
            timeout: float = CONNECT_TIMEOUT_S) -> Connection:
    """Open an SSH connection (key auth) that refuses unknown host keys unless told to record them."""
    connect_kwargs = {"key_filename": [str(host.identity)]} if host.identity else {}
    conn = Connection(host.hostname or host.name, user=host.user, port=host.port, config=config or Config(),
                      connect_timeout=int(timeout), connect_kwargs=connect_kwargs)
    conn.connect_kwargs.update(allow_agent=True, password=None, banner_timeout=timeout, auth_timeout=timeout)
    # The target, and every ProxyJump hop Fabric made from ssh_config (it gives those AutoAddPolicy).
    hop = conn
    while isinstance(hop, Connection):
        _check_host_keys(hop, _known_hosts_file(host, hop), accept_new_host_keys)
        hop = hop.gateway
    try:
        conn.open()
    except BaseException as error:
        conn.close()
        if isinstance(error, DeployError):
            raise
        raise ConnectError(describe_ssh_error(error, conn, _known_hosts_file(host, conn))) from None
    _send_at_once(conn)
    return conn


def remote_opener(*, dry_run: bool = False, accept_new_host_keys: bool = False,
                  config: Config | None = None) -> Callable[[Host], Remote]:
    """How a job reaches each host: a connection, or in a dry run none (commands are printed)."""
    def open_remote(host: Host) -> Remote:
        if dry_run:
            return Remote(host.name, None)
        return Remote(host.name, connect(host, config=config, accept_new_host_keys=accept_new_host_keys))
    return open_remote


def _send_at_once(conn: Connection) -> None:
    """Turn off Nagle's algorithm on the TCP socket of `conn` (and of its jump hosts): a deploy is many short
    request-reply exchanges, and with it each waited for the peer's delayed ACK (about 40 ms on Linux)."""
    hop = conn
    while isinstance(hop, Connection):
        sock = hop.transport.sock if hop.transport is not None else None
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hop = hop.gateway


def _check_host_keys(conn: Connection, known_hosts: Path | None, accept_new: bool) -> None:
    """Trust only the keys in `known_hosts` (default: the system's and the user's files)."""
    client = conn.client
    if known_hosts is None:
        for path in (SYSTEM_KNOWN_HOSTS, USER_KNOWN_HOSTS):
            if path.is_file():
                client.load_system_host_keys(str(path))
    elif known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    record_to = known_hosts or USER_KNOWN_HOSTS
    client.set_missing_host_key_policy(_RecordNewKey(record_to) if accept_new else _RefuseUnknownKey(record_to))


def _known_hosts_file(host: Host, conn: Connection) -> Path | None:
    if host.known_hosts is not None:
        return host.known_hosts
    configured = conn.ssh_config.get("userknownhostsfile")
    return Path(configured.split()[0]).expanduser() if configured else None


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _RefuseUnknownKey(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, with a message that says how to accept the key on purpose."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        host, _, port = hostname.strip("[").partition("]:")
        keyscan = f"ssh-keyscan {'-p ' + port + ' ' if port else ''}{host} >> {self.known_hosts}"
        raise HostKeyError(
            f"unknown host key for {hostname} ({_fingerprint(key)}), not in {self.known_hosts}: "
            f"check it, then re-run with --accept-new-host-keys or add it with `{keyscan}`")


class _RecordNewKey(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: record a first-seen key; a changed key is still refused."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as file:
            file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        print(f"recorded new host key for {hostname} ({_fingerprint(key)}) in {self.known_hosts}", file=sys.stderr)


def describe_ssh_error(error: BaseException, conn: Connection | None = None,
                       known_hosts: Path | None = None) -> str:
    """One line for anything that can go wrong talking to a host."""
    where = f"{conn.host}:{conn.port}" if conn is not None else "host"
    if isinstance(error, paramiko.BadHostKeyException):
        # known_hosts names a host on another port than 22 as [host]:port, and so must ssh-keygen -R.
        port = conn.port if conn is not None else 22
        entry = error.hostname if port == 22 else f"[{error.hostname}]:{port}"
        remove = quote("ssh-keygen", "-R", entry, *(("-f", known_hosts) if known_hosts else ()))
        return (f"host key of {where} CHANGED ({_fingerprint(error.key)}): refusing; if the host was "
                f"reinstalled, remove the old key with `{remove}` and check the new one")
    if isinstance(error, paramiko.AuthenticationException):
        user = conn.user if conn is not None else "user"
        return f"authentication failed for {user}@{where} (key auth: check the identity file and authorized_keys)"
    if isinstance(error, NoValidConnectionsError):
        return f"unreachable: connection refused by {where}"
    if isinstance(error, socket.gaierror):
        return f"unreachable: unknown host name {conn.host if conn else ''}".rstrip()
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"unreachable: {where} did not answer in time"
    if isinstance(error, paramiko.SSHException) and "protocol banner" in str(error):
        return f"{where} does not speak SSH (something else answers on that port)"
    if isinstance(error, (paramiko.SSHException, EOFError, OSError)):
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"connection to {where} lost: {text}"
    return f"{type(error).__name__}: {error}".splitlines()[0]


@dataclass
class Remote:
    """Runs commands and copies files on one host; in a dry run prints them and touches nothing."""

    name: str
    conn: Connection | None          # None in a dry run
    held: list[paramiko.Channel] = field(default_factory=list)    # commands kept running until close()

    @property
    def dry_run(self) -> bool:
        return self.conn is None

    def run(self, command: str, *, dry_output: str = "", shown: str | None = None) -> str:
        """Run `command`, return its stdout; a non-zero exit raises DeployError with its last line of output.
        A dry run prints `shown` (a shorter form of a long command) or the command, and returns `dry_output`."""
        if self.conn is None:
            print(f"[{self.name}] $ {shown or command}")
            return dry_output
        result = self.conn.run(command, hide=True, warn=True, in_stream=False)
        if result.exited != 0:
            lines = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.exited}").splitlines()
            raise DeployError(f"`{_short(command)}` failed: {lines[-1]}")
        return result.stdout

    def hold(self, command: str, timeout: float) -> tuple[int, str] | None:
        """Start `command` on a channel of its own, kept open until `close()`, and wait (up to `timeout`) for
        its first line: for what must last exactly as long as this connection (the host's deploy lock). None
        once it printed; (exit status, last line of output) if it ended without printing."""
        if self.conn is None:
            print(f"[{self.name}] $ {command}    # held open until the end")
            return None
        channel = self.conn.transport.open_session()
        channel.settimeout(timeout)
        channel.exec_command(command)
        if channel.makefile("r").readline():
            self.held.append(channel)
            return None
        status = channel.recv_exit_status()
        said = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
        lines = said.splitlines() or [f"exit status {status}"]
        channel.close()
        return status, lines[-1]

    def put(self, local: Path, remote: str) -> None:
        if self.conn is None:
            print(f"[{self.name}] put {local} -> {remote}")
            return
        self.conn.put(str(local), remote)

    def close(self) -> None:
        """Close the connection; one that was cut already (its SFTP channel cannot say goodbye) is done. The
        held commands get end-of-input first and are waited for, so what they hold (the deploy lock) is free on
        the host once this returns: a closed channel alone ends them a moment later, and a deploy run right
        after this one could find the lock still taken."""
        if self.conn is not None:
            try:
                for channel in self.held:
                    channel.shutdown_write()
                    channel.status_event.wait(HELD_EXIT_TIMEOUT_S)     # set at once if the connection is gone
                    channel.close()
                self.conn.close()
            except (EOFError, OSError, paramiko.SSHException):
                pass


def _short(command: str, limit: int = 80) -> str:
    first = command.splitlines()[0]
    return first if len(first) <= limit and "\n" not in command else first[:limit] + " …"


def quote(*parts: object) -> str:
    """A shell command line from parts, each quoted."""
    return " ".join(shlex.quote(str(p)) for p in parts)
