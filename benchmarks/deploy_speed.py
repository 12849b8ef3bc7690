"""How long `fab deploy` takes on loopback sshd hosts: one host against four in parallel (target: at most
1.5x the wall time of one), and a model-only redeploy (target: at most 10 s).

    .venv/bin/python benchmarks/deploy_speed.py [--hosts 4] [--json]

Needs /usr/sbin/sshd and the reference model. The wheel and wheelhouse are built once before timing,
as a second `fab deploy` from the same checkout finds them cached; each timing is wall time of
`deploy_fleet`, fresh hosts for the first deploys. Results: docs/deploy.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.build import Builder, Target  # noqa: E402
from deploy.fleet import deploy_fleet  # noqa: E402
from tests.deploy.sshlab import keygen, make_lab, snapshot_sources  # noqa: E402

MODEL = REPO.parent / "shared" / "models" / "model-maker-flowers-int8.tflite"
PHOTOS = REPO.parent / "shared" / "data" / "flowers-mini"


def timed(hosts, model, builder) -> tuple[float, list]:
    started = time.monotonic()
    results = deploy_fleet(hosts, model, builder=builder, quiet=True, parallel=len(hosts))
    seconds = time.monotonic() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"deploy failed: {failed[0].host}: {failed[0].stage}: {failed[0].reason}")
    return seconds, results


def stages(results) -> dict:
    """The slowest host's seconds per stage."""
    slowest = max(results, key=lambda r: r.seconds)
    return {k: round(v, 2) for k, v in slowest.detail["stages"].items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from device.metadata import read_model_info, write_metadata

    work = Path(tempfile.mkdtemp(prefix="deploy-speed-"))
    lab = None
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
        lab = make_lab(work / "lab", keygen(work / "id_ed25519"), photos)
        hosts = [lab.host(f"pi{i}", lab.start_server(f"pi{i}")) for i in range(args.hosts + 1)]
        one, many = hosts[:1], hosts[1:]

        first_one, results_one = timed(one, MODEL, builder)
        first_many, results_many = timed(many, MODEL, builder)
        redeploy_one, results_redeploy = timed(one, second, builder)
        redeploy_many, results_redeploy_many = timed(many, second, builder)
        numbers = {
            "hosts": args.hosts,
            "first_deploy_1_host_s": round(first_one, 1),
            f"first_deploy_{args.hosts}_hosts_s": round(first_many, 1),
            "first_deploy_ratio": round(first_many / first_one, 2),
            "model_only_redeploy_1_host_s": round(redeploy_one, 1),
            f"model_only_redeploy_{args.hosts}_hosts_s": round(redeploy_many, 1),
            "model_only_redeploy_ratio": round(redeploy_many / redeploy_one, 2),
            "stages_first_1_host": stages(results_one),
            f"stages_first_{args.hosts}_hosts_slowest": stages(results_many),
            "stages_model_only_1_host": stages(results_redeploy),
            f"stages_model_only_{args.hosts}_hosts_slowest": stages(results_redeploy_many),
        }
    finally:
        if lab is not None:
            lab.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    for key, value in numbers.items():
        print(f"{key:40} {value}")
    print(f"targets: {args.hosts} hosts <= 1.5x one host: first deploy {numbers['first_deploy_ratio']}x, "
          f"model-only {numbers['model_only_redeploy_ratio']}x; model-only redeploy <= 10 s: "
          f"{numbers['model_only_redeploy_1_host_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
