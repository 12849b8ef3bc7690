"""How long `fab deploy` takes on loopback sshd hosts: one host against four in parallel (target: at most
1.5x the wall time of one), and a model-only redeploy (target: at most 10 s).

    .venv/bin/python benchmarks/deploy_speed.py [--hosts 4] [--host-cpu 0.25] [--json]

Needs /usr/sbin/sshd and the reference model. The wheel and wheelhouse are built once before timing,
as a second `fab deploy` from the same checkout finds them cached; each timing is wall time of
`deploy_fleet`, fresh hosts for the first deploys. Only the daemons of the hosts being deployed run
during a timing (the others are stopped and started again in between), as each Pi runs only its own.

Everything is measured twice, on fresh hosts each time. Unconstrained: the loopback hosts share this
machine's cores with the workstation side. With per-host CPU budgets (`--host-cpu` cores each, a cgroup
holding the host's sshd and everything it starts, the daemon included): each host has a CPU of its own,
as each Pi of a fleet has, while the workstation side stays this process on this machine's shared cores.
`--host-cpu 0` measures only the first; without cgroups (cgroup v1 `cpu`, root) it says so and does the same.

The CPU time each timing used (this process, plus every sshd with what it ran and every daemon) is
reported too: N hosts' CPU seconds over the machine's cores is a wall time no schedule can beat, which
bounds the unconstrained ratio from below; and what other processes used meanwhile, in cores.
Results: docs/deploy.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.build import Builder, Target  # noqa: E402
from deploy.jobs.deploy import deploy_fleet  # noqa: E402
from testkit.cpubudget import MIN_CORES, unavailable_reason  # noqa: E402
from testkit.sshlab import keygen, make_lab, snapshot_sources, stop_daemon  # noqa: E402

MODEL = REPO.parent / "shared" / "models" / "model-maker-flowers-int8.tflite"
PHOTOS = REPO.parent / "shared" / "data" / "flowers-mini"
SETTLE_S = 0.3     # after a timing, for the hosts' exiting sessions to be reaped before their CPU is read


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def supervisor(host) -> psutil.Process | None:
    """The host's running daemon supervisor (its pidfile outlives a killed one)."""
    try:
        process = psutil.Process(int((Path(host.root) / "run" / "supervisor.pid").read_text()))
        return process if "service.py" in " ".join(process.cmdline()) else None
    except (OSError, ValueError, psutil.Error):
        return None


def lab_cpu_seconds(lab, hosts) -> float:
    """CPU time of the hosts' side so far: each sshd, its sessions and what they ran, each daemon and its
    supervisor (a process that exited counts through the parent that reaped it)."""
    tops = [psutil.Process(server.process.pid) for server in lab.servers]
    tops += [process for process in map(supervisor, hosts) if process is not None]
    total = 0.0
    for top in tops:
        try:
            processes = [top, *top.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def machine_busy_seconds() -> float:
    fields = [int(n) for n in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait


def timed(hosts, everyone, model, builder, lab) -> dict:
    """Deploy to `hosts` in parallel, with only their daemons running: wall and CPU seconds, stages."""
    for other in everyone:
        if other not in hosts:
            stop_daemon(Path(other.root))
    for host in hosts:
        if (Path(host.root) / "current").exists() and supervisor(host) is None:
            lab.start_daemon(host)
    own, hosts_cpu = own_cpu_seconds(), lab_cpu_seconds(lab, everyone)
    busy, started = machine_busy_seconds(), time.monotonic()
    results = deploy_fleet(hosts, model, builder=builder, quiet=True, parallel=len(hosts))
    seconds = time.monotonic() - started
    time.sleep(SETTLE_S)
    own, hosts_cpu = own_cpu_seconds() - own, lab_cpu_seconds(lab, everyone) - hosts_cpu
    others = machine_busy_seconds() - busy - own - hosts_cpu
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"deploy failed: {failed[0].host}: {failed[0].stage}: {failed[0].reason}")
    slowest = max(results, key=lambda r: r.seconds)
    return {"s": round(seconds, 2), "cpu_s": round(own + hosts_cpu, 2), "workstation_cpu_s": round(own, 2),
            "others_cores": round(max(others, 0) / seconds, 2),
            "stages": {k: round(v, 2) for k, v in slowest.detail["stages"].items()}}


def compare(one: dict, many: dict, hosts: int, cores: int) -> dict:
    """The ratio, and the least ratio the CPU work allows here: N hosts' CPU seconds spread over every core."""
    return {"1_host": one, f"{hosts}_hosts": many, "ratio": round(many["s"] / one["s"], 2),
            "cpu_bound_ratio": round(many["cpu_s"] / cores / one["s"], 2)}


def measure(lab, hosts: int, models: tuple[Path, Path], builder) -> dict:
    """First deploy and model-only redeploy, to one host and then to `hosts` others in parallel."""
    everyone = [lab.host(f"pi{i}", lab.start_server(f"pi{i}")) for i in range(hosts + 1)]
    one, many = everyone[:1], everyone[1:]
    cores = os.cpu_count()
    load = os.getloadavg()[0]
    model, second = models
    first = compare(timed(one, everyone, model, builder, lab), timed(many, everyone, model, builder, lab),
                    hosts, cores)
    model_only = compare(timed(one, everyone, second, builder, lab), timed(many, everyone, second, builder, lab),
                         hosts, cores)
    return {"load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
            "first_deploy": first, "model_only_redeploy": model_only}


def print_mode(title: str, numbers: dict, hosts: int, cores: int) -> None:
    first, model_only = numbers["first_deploy"], numbers["model_only_redeploy"]
    print(f"{title}: load average {numbers['load_average'][0]} before, {numbers['load_average'][1]} after")
    for name, row in (("first deploy", first), ("model-only redeploy", model_only)):
        print(f"  {name}:")
        for key in ("1_host", f"{hosts}_hosts"):
            r = row[key]
            print(f"    {key:8} {r['s']:6.2f} s wall  {r['cpu_s']:6.2f} s CPU (workstation "
                  f"{r['workstation_cpu_s']:.2f})  others {r['others_cores']:.2f} cores\n"
                  f"             slowest host's stages {r['stages']}")
        print(f"    ratio {row['ratio']}x (target <= 1.5x); no schedule on {cores} shared cores beats "
              f"{row['cpu_bound_ratio']}x with this CPU work")
    print(f"  targets: {hosts} hosts <= 1.5x one host: first deploy {first['ratio']}x, model-only "
          f"{model_only['ratio']}x; model-only redeploy <= 10 s: {model_only['1_host']['s']} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--host-cpu", type=float, default=0.25, metavar="CORES",
                        help="each host's CPU budget in the second measurement, in cores (0: no second measurement)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if 0 < args.host_cpu < MIN_CORES:
        parser.error(f"--host-cpu: at least {MIN_CORES} cores, or 0")
    from device.metadata import read_model_info, write_metadata

    host_cpu = args.host_cpu
    if host_cpu:
        reason = unavailable_reason()
        if reason is not None:
            print(f"per-host CPU budgets unavailable ({reason}): measuring unconstrained only", file=sys.stderr)
            host_cpu = 0
    work = Path(tempfile.mkdtemp(prefix="deploy-speed-"))
    numbers = {"hosts": args.hosts, "cores": os.cpu_count(), "host_cpu": host_cpu}
    try:
        (work / "src").mkdir()
        builder = Builder(work / "cache", repo=snapshot_sources(work / "src"))
        photos = work / "photos"
        photos.mkdir()
        for photo in sorted(PHOTOS.glob("*/*.jpg"))[::100][:4]:
            shutil.copy(photo, photos / photo.name)
        info = read_model_info(MODEL)
        second = work / "v2.tflite"
        second.write_bytes(write_metadata(MODEL.read_bytes(), info.labels, mean=info.mean, std=info.std,
                                          name=info.name, version="v2"))
        builder.wheel()
        builder.wheelhouse(Target("x86_64", sys.version_info[:2], (2, 36)))   # loopback hosts: this machine
        key = keygen(work / "id_ed25519")
        modes = {"unconstrained": 0.0} | ({"per_host_cpu": host_cpu} if host_cpu else {})
        for mode, cores in modes.items():
            lab = make_lab(work / mode, key, photos, cores)
            try:
                numbers[mode] = measure(lab, args.hosts, (MODEL, second), builder)
            finally:
                lab.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    print(f"{args.hosts} hosts against 1 on {numbers['cores']} cores")
    print_mode("unconstrained (the hosts share this machine's cores)", numbers["unconstrained"], args.hosts,
               numbers["cores"])
    if host_cpu:
        print_mode(f"each host's CPU capped at {host_cpu} cores (a CPU of its own, as each Pi has)",
                   numbers["per_host_cpu"], args.hosts, numbers["cores"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
