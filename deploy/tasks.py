"""`fab deploy | rollback | status | logs | collect`: options in, hosts from -H or the inventory, a report out."""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path

from fabric import Connection, task
from fabric.connection import derive_shorthand
from invoke.exceptions import Exit

from deploy.errors import DeployError, InventoryError, OptionError
from deploy.inventory import Host, Inventory, load_inventory
from deploy.report import HostResult, table, to_json
from device.errors import UserError
from device.hostport import parse_host_port

DEFAULT_INVENTORY = Path("fleet.yaml")

HOST_HELP = {
    "inventory": "hosts file (default: ./fleet.yaml); or give one host with fab -H user@host[:port]",
    "group": "only the hosts of this inventory group",
    "accept-new-host-keys": "record the key of a host not yet in known_hosts (a changed key is still refused)",
}
FLEET_HELP = {**HOST_HELP, "parallel": "hosts at once (default 4)", "json": "print the report as JSON"}


def one_line_errors(body):
    """A user's mistake ends the task with one line and exit 1, never a traceback; Ctrl-C with the report of
    every host (what finished, what was interrupted where) and exit 130."""
    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        from deploy.fleet import FleetInterrupted

        try:
            return body(*args, **kwargs)
        except UserError as error:
            raise Exit(f"fab: error: {error}", code=1) from None
        except FleetInterrupted as stop:
            print(to_json(stop.results) if kwargs.get("json_") else table(stop.results), flush=True)
            if stop.abandoned:          # hosts' threads still run: exit now rather than wait for them
                sys.stderr.flush()
                os._exit(130)
            raise Exit(code=130) from None
        except KeyboardInterrupt:
            raise Exit("fab: interrupted", code=130) from None
    return wrapper


def select_hosts(c, inventory: str | None, group: str | None, argv: list[str] | None = None) -> list[Host]:
    """The hosts of Fabric's -H list (each its inventory entry if listed, else the inventory's defaults, with
    the user and port typed on -H winning), else the inventory's hosts.

    Fabric calls a task once per -H host; the call for the first host runs the whole list as one fleet (so
    --parallel, --canary and --max-failures apply, and there is one report) and the others get no hosts."""
    path = Path(inventory) if inventory else DEFAULT_INVENTORY
    loaded = load_inventory(path) if inventory or path.is_file() else Inventory({}, {})
    if isinstance(c, Connection):
        typed = typed_hosts(sys.argv if argv is None else argv)
        names = [fabric_name for fabric_name, _, _ in typed]
        if c.original_host not in names:                    # a Connection not from the command line
            return [loaded.host(c.original_host)]
        return [loaded.host(name, **ssh) for _, name, ssh in typed] if c.original_host == names[0] else []
    if not loaded.hosts:
        raise InventoryError(f"no hosts: give -H user@host or an inventory (--inventory, or {DEFAULT_INVENTORY})")
    return loaded.select(group)


def typed_hosts(argv: list[str]) -> list[tuple[str, str, dict]]:
    """[(Fabric's name for the host, the host, {"user", "port"})] as typed on fab's -H/--hosts, None where not
    typed. Fabric's Connection fills in its defaults (local user, port 22), so only the command line tells
    what the user asked for; and Fabric reads neither `[::1]:2222` nor a bad port well, so ours is the parser."""
    value = None
    for i, arg in enumerate(argv):
        if arg in ("-H", "--hosts") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--hosts="):
            value = arg.partition("=")[2]
        elif arg.startswith("-H") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:].lstrip("=")
    typed = []
    for text in value.split(",") if value else []:
        user, _, address = text.rpartition("@")
        try:
            host, port = parse_host_port(address, 0)
        except UserError as error:
            raise OptionError(f"-H {text}: {error}") from None
        typed.append((derive_shorthand(text)["host"], host, {"user": user or None, "port": port or None}))
    return typed


def check_typed_hosts(argv: list[str]) -> None:
    """Fabric turns -H into connections before any task runs, and a port it cannot read is a traceback
    there: check the list first (fabfile.py calls this), one line and exit 1 for a mistake."""
    try:
        typed_hosts(argv)
    except UserError as error:
        print(f"fab: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


# Every numeric option of every task: (type, least, most, whether the least itself is allowed).
NUMBERS = {
    "--parallel": (int, 1, None, True),
    "--keep": (int, 1, None, True),
    "--lines": (int, 1, None, True),
    "--health-timeout": (float, 0, None, False),
    "--max-failures": (float, 0, 1, True),
    "--valid-days": (float, 0, 3650, False),
    "--wait": (float, 0, None, True),
}


def number(option: str, value: str | float) -> int | float:
    """An option's value as a number in its range, checked before any host is touched (the numeric options
    are strings to fab, so that a typo is one line here rather than invoke's traceback)."""
    kind, least, most, least_allowed = NUMBERS[option]
    try:
        parsed = kind(value)
    except ValueError:
        parsed = None
    if parsed is None or not math.isfinite(parsed):
        raise OptionError(f"{option} must be {'a whole number' if kind is int else 'a number'}, "
                          f"not {value!r}") from None
    if most is not None and not least <= parsed <= most:
        raise OptionError(f"{option} must be from {least} to {most}, not {value}")
    if parsed < least or (parsed == least and not least_allowed):
        raise OptionError(f"{option} must be {'at least' if least_allowed else 'more than'} {least}, not {value}")
    return parsed


def ssh_options(c, accept_new_host_keys: bool) -> dict:
    return {"accept_new_host_keys": accept_new_host_keys, "config": c.config}


def finish(results: list[HostResult], as_json: bool) -> None:
    print(to_json(results) if as_json else table(results))
    if not all(r.ok for r in results):
        raise Exit(code=1)


DEPLOY_HELP = {
    **FLEET_HELP,
    "model": "the .tflite model to deploy",
    "canary": "deploy to this host first, alone",
    "max-failures": "stop when more than this share of hosts failed (default 0.5)",
    "keep": "releases to keep per host (default 3)",
    "health-timeout": "seconds to wait for /healthz (default 60)",
    "dry-run": "print every command and transfer, touch no host",
}
ROLLBACK_HELP = {
    **FLEET_HELP,
    "to": "the release to return to (default: the newest earlier one that did not fail)",
    "health-timeout": "seconds to wait for /healthz (default 60)",
}


@task(auto_shortflags=False, help=DEPLOY_HELP)
@one_line_errors
def deploy(c, model=None, inventory=None, group=None, parallel="4", canary=None, max_failures="0.5", keep="3",
           health_timeout="60", json_=False, dry_run=False, accept_new_host_keys=False):
    """Deploy a model (and this checkout's device code) to one host or a fleet, with automatic rollback."""
    from deploy.jobs.deploy import deploy_fleet

    if model is None:
        raise DeployError("give the model to deploy: fab deploy --model FILE")
    numbers = {option: number(option, value) for option, value in (
        ("--keep", keep), ("--health-timeout", health_timeout), ("--parallel", parallel),
        ("--max-failures", max_failures))}
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    # With --json, stdout carries the report only: a dry run's commands go to stderr.
    with contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext():
        results = deploy_fleet(hosts, Path(model), keep=numbers["--keep"],
                               health_timeout=numbers["--health-timeout"],
                               dry_run=dry_run, accept_new_host_keys=accept_new_host_keys, config=c.config,
                               parallel=numbers["--parallel"], canary=canary,
                               max_failures=numbers["--max-failures"], quiet=json_)
    finish(results, json_)


@task(auto_shortflags=False, help=ROLLBACK_HELP)
@one_line_errors
def rollback(c, inventory=None, group=None, to=None, parallel="4", health_timeout="60", json_=False,
             accept_new_host_keys=False):
    """Return each host to its previous release (or --to VERSION), confirming health."""
    from deploy.jobs.rollback import rollback_work
    from deploy.outline import run_on_hosts

    work = rollback_work(to, number("--health-timeout", health_timeout))
    parallel = number("--parallel", parallel)
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    results = run_on_hosts(hosts, work, lock=True, parallel=parallel,
                           **ssh_options(c, accept_new_host_keys))
    finish(results, json_)


@task(auto_shortflags=False, help=FLEET_HELP)
@one_line_errors
def status(c, inventory=None, group=None, parallel="4", json_=False, accept_new_host_keys=False):
    """Release, health, fps and model of each host."""
    from deploy.jobs.status import status_work
    from deploy.outline import run_on_hosts

    parallel = number("--parallel", parallel)
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    results = run_on_hosts(hosts, status_work, parallel=parallel,
                           **ssh_options(c, accept_new_host_keys))
    if json_:
        return finish(results, True)
    for r in results:
        if r.ok:
            d = r.detail
            r.reason = f"{d['model']} {d['model_version'] or ''} sha256 {str(d['sha256'])[:12]}, {d['fps']:.1f} fps"
            if d.get("agent"):
                a = d["agent"]
                r.reason += (f"; agent: release {a.get('release') or '-'}, {a.get('state')}"
                             + (f" ({a['last_error']})" if a.get("last_error") else ""))
    finish(results, False)


@task(auto_shortflags=False, help={**HOST_HELP, "lines": "lines of log per host (default 50)"})
@one_line_errors
def logs(c, inventory=None, group=None, lines="50", accept_new_host_keys=False):
    """The daemon's recent log on each host (journald on systemd, else the pidfile manager's log file)."""
    from deploy.jobs.logs import logs_work
    from deploy.outline import run_on_hosts

    count = number("--lines", lines)
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    results = run_on_hosts(hosts, logs_work(count), parallel=1, **ssh_options(c, accept_new_host_keys))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.host}: {r.reason}", file=sys.stderr)
    if failed:
        raise Exit(code=1)


COLLECT_HELP = {
    **FLEET_HELP,
    "inbox": "the folder here that samples go to, one sub-folder per host (default: inbox)",
    "keep": "leave the samples on the hosts once copied (default: delete each once verified here)",
}


@task(auto_shortflags=False, help=COLLECT_HELP)
@one_line_errors
def collect(c, inbox="inbox", inventory=None, group=None, parallel="4", keep=False, json_=False,
            accept_new_host_keys=False):
    """Bring the samples the hosts' daemons kept (device run --collect) into INBOX/<host>/, for trainer review."""
    from deploy.collect import CollectOptions, prepare_inbox
    from deploy.jobs.collect import collect_work
    from deploy.outline import progress, run_on_hosts

    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    options = CollectOptions(Path(inbox), keep)
    prepare_inbox(options.inbox)
    results = run_on_hosts(hosts, collect_work(options, progress(json_)), parallel=number("--parallel", parallel),
                           facts=False, **ssh_options(c, accept_new_host_keys))
    finish(results, json_)

