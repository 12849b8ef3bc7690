"""`fab deploy | rollback | status | logs`: options in, hosts from -H or the inventory, a report out."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

from fabric import Connection, task
from fabric.connection import derive_shorthand
from invoke.exceptions import Exit

from device.errors import UserError
from deploy.errors import DeployError, InventoryError, OptionError
from deploy.inventory import Host, Inventory, load_inventory
from deploy.report import HostResult, table, to_json

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
        names = [name for name, _ in typed]
        if c.original_host not in names:                    # a Connection not from the command line
            return [loaded.host(c.original_host)]
        return [loaded.host(name, **ssh) for name, ssh in typed] if c.original_host == names[0] else []
    if not loaded.hosts:
        raise InventoryError(f"no hosts: give -H user@host or an inventory (--inventory, or {DEFAULT_INVENTORY})")
    return loaded.select(group)


def typed_hosts(argv: list[str]) -> list[tuple[str, dict]]:
    """[(host, {"user", "port"})] as typed on fab's -H/--hosts, None where not typed. Fabric's Connection
    fills in its defaults (local user, port 22), so only the command line tells what the user asked for."""
    value = None
    for i, arg in enumerate(argv):
        if arg in ("-H", "--hosts") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--hosts="):
            value = arg.partition("=")[2]
        elif arg.startswith("-H") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:].lstrip("=")
    shorthands = [derive_shorthand(h) for h in value.split(",")] if value else []
    return [(s["host"], {"user": s["user"], "port": s["port"]}) for s in shorthands]


def number(option: str, value: str | float, kind: type[int] | type[float]) -> int | float:
    """An option's value as a number (the numeric options are strings to fab, so that a typo is one line
    here rather than invoke's traceback)."""
    try:
        return kind(value)
    except ValueError:
        raise OptionError(f"{option} must be {'a whole number' if kind is int else 'a number'}, "
                          f"not {value!r}") from None


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
    from deploy.fleet import deploy_fleet

    if model is None:
        raise DeployError("give the model to deploy: fab deploy --model FILE")
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    # With --json, stdout carries the report only: a dry run's commands go to stderr.
    with contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext():
        results = deploy_fleet(hosts, Path(model), keep=number("--keep", keep, int),
                               health_timeout=number("--health-timeout", health_timeout, float),
                               dry_run=dry_run, accept_new_host_keys=accept_new_host_keys, config=c.config,
                               parallel=number("--parallel", parallel, int), canary=canary,
                               max_failures=number("--max-failures", max_failures, float), quiet=json_)
    finish(results, json_)


@task(auto_shortflags=False, help=ROLLBACK_HELP)
@one_line_errors
def rollback(c, inventory=None, group=None, to=None, parallel="4", health_timeout="60", json_=False,
             accept_new_host_keys=False):
    """Return each host to its previous release (or --to VERSION), confirming health."""
    from deploy.fleet import host_job, remote_opener, rollback_work, run_fleet

    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    opener = remote_opener(accept_new_host_keys=accept_new_host_keys, config=c.config)
    job = host_job(opener, rollback_work(to, number("--health-timeout", health_timeout, float)), lock=True)
    finish(run_fleet(hosts, job, parallel=number("--parallel", parallel, int), max_failures=1.0), json_)


@task(auto_shortflags=False, help=FLEET_HELP)
@one_line_errors
def status(c, inventory=None, group=None, parallel="4", json_=False, accept_new_host_keys=False):
    """Release, health, fps and model of each host."""
    from deploy.fleet import host_job, remote_opener, run_fleet, status_work

    opener = remote_opener(accept_new_host_keys=accept_new_host_keys, config=c.config)
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    results = run_fleet(hosts, host_job(opener, status_work), parallel=number("--parallel", parallel, int),
                        max_failures=1.0)
    if json_:
        return finish(results, True)
    for r in results:
        if r.detail:
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
    from deploy.fleet import host_job, remote_opener, run_fleet

    count = number("--lines", lines, int)

    def show(steps, result):
        text = steps.remote.run(steps.service.logs(count))
        print(f"==> {steps.host.name} <==\n{text.rstrip()}\n", file=sys.stdout, flush=True)
        result.status = "OK"

    opener = remote_opener(accept_new_host_keys=accept_new_host_keys, config=c.config)
    hosts = select_hosts(c, inventory, group)
    if not hosts:
        return                                          # covered by the call for the first -H host
    results = run_fleet(hosts, host_job(opener, show), parallel=1, max_failures=1.0)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.host}: {r.reason}", file=sys.stderr)
    if failed:
        raise Exit(code=1)
