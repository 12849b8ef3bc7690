"""`fab collect` of 1,000 samples from one loopback host (target: within 15 s), and a second run with nothing
new (target: within 2 s); also a second run with `--keep`, where every sample is still on the host and
already here (listed, hashed on both sides, nothing copied).

The host is a real sshd on loopback (tests/deploy/sshlab.py) whose samples folder is filled with real
flower JPEGs written as the daemon writes them; `fab collect` runs as a user runs it, from the command line.

    .venv/bin/python benchmarks/collect_speed.py [--samples 1000] [--rounds 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.collect import samples_folder  # noqa: E402
from testkit.sshlab import keygen, make_lab  # noqa: E402
from testkit.sample_maker import write_samples  # noqa: E402

FLOWERS = REPO.parent / "shared" / "data" / "flowers-mini"
TARGETS = {"first": 15.0, "nothing_new": 2.0}
CPU: list[float] = []  # CPU seconds of each fab run (the workstation side; the host's sshd and Python not counted)


def fab_collect(inventory: Path, inbox: Path, *extra: str) -> tuple[float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "fab"), "collect", "--inventory", str(inventory),
                           "--inbox", str(inbox), "--json", *extra], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    CPU.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return seconds, json.loads(done.stdout)[0]["detail"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"first": [], "nothing_new": [], "keep_all_here": []}
    cpu: dict[str, list[float]] = {"first": [], "nothing_new": [], "keep_all_here": []}
    with tempfile.TemporaryDirectory(prefix="bloomkit-collect-speed-") as scratch:
        base = Path(scratch)
        lab = make_lab(base / "lab", keygen(base / "id_ed25519"), FLOWERS)
        try:
            host = lab.host("pi-1", lab.start_server("pi-1"))
            inventory = lab.inventory([host])
            folder = Path(samples_folder(host))
            for number in range(args.rounds):
                write_samples(FLOWERS, folder, args.samples)
                inbox = base / f"inbox-{number}"
                seconds, detail = fab_collect(inventory, inbox)
                assert detail["copied"] == args.samples and detail["deleted"] == args.samples, detail
                times["first"].append(seconds)
                cpu["first"].append(CPU[-1])
                seconds, detail = fab_collect(inventory, inbox)
                assert detail["listed"] == 0, detail
                times["nothing_new"].append(seconds)
                cpu["nothing_new"].append(CPU[-1])
                write_samples(FLOWERS, folder, args.samples)
                shutil.rmtree(inbox)
                fab_collect(inventory, inbox, "--keep")
                seconds, detail = fab_collect(inventory, inbox, "--keep")
                assert detail["already_here"] == args.samples and detail["copied"] == 0, detail
                times["keep_all_here"].append(seconds)
                cpu["keep_all_here"].append(CPU[-1])
                fab_collect(inventory, inbox)  # empty the host for the next round
            size = sum(p.stat().st_size for p in (base / "inbox-0" / "pi-1").iterdir())
        finally:
            lab.close()
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    cpu_medians = {name: round(statistics.median(values), 2) for name, values in cpu.items()}
    result = {"samples": args.samples, "megabytes": round(size / 1e6, 1), "medians_s": medians,
              "fab_cpu_s": cpu_medians, "load_average": os.getloadavg()[0],
              "rounds_s": {name: [round(v, 2) for v in values] for name, values in times.items()},
              "ok": all(medians[name] <= limit for name, limit in TARGETS.items())}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fab collect of {args.samples} samples ({result['megabytes']} MB) from one loopback host, "
              f"{args.rounds} rounds (medians; load average {result['load_average']:.1f}); fab's own CPU: "
              f"{cpu_medians}")
        print(f"  first run:           {medians['first']:6.2f} s  (target <= {TARGETS['first']:g} s)  "
              f"{result['rounds_s']['first']}")
        print(f"  nothing new:         {medians['nothing_new']:6.2f} s  (target <= {TARGETS['nothing_new']:g} s)  "
              f"{result['rounds_s']['nothing_new']}")
        print(f"  --keep, all here:    {medians['keep_all_here']:6.2f} s  (for information)  "
              f"{result['rounds_s']['keep_all_here']}")
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
