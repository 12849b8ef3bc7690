"""What pulling updates costs a device (`device agent` against real nginx on loopback):

1. resume: a 64 MB file cut at 50% by a proxy: bytes fetched after the cut (target: remaining + ≤ 1 MB);
2. poll: a poll of an unchanged channel: requests sent, and the agent's CPU time (target: one 304, ≤ 20 ms);
3. model-only: the bytes one device downloads for a release that changes only the model;
4. rollout: seconds from `--rollout 100%` to 95% of 20 devices healthy on the release, at 5 s polls; then
   the agents' CPU per unchanged poll with their daemons running.

    flock /tmp/bloomkit-bench.lock .venv/bin/python benchmarks/ota_pull.py [--only resume,poll,...] [--json]

3 and 4 install real releases (the host-side install path, a venv built once and shared by the devices as
one image would be, daemons at 1 frame a second). Needs nginx, and the reference model for 3 and 4.
Results: docs/ota.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.build import Builder, sha256_file  # noqa: E402
from deploy.keys import keygen  # noqa: E402
from device.agent import fetch  # noqa: E402
from device.agent.agent import Agent, AgentConfig  # noqa: E402
from device.agent.manifest import key_id, load_public_key  # noqa: E402
from device.agent.state import STATE_DIR, State  # noqa: E402
from testkit.processes import free_port  # noqa: E402
from testkit.sshlab import snapshot_sources  # noqa: E402
from testkit.agentlab import AgentFleet, publish, set_rollout  # noqa: E402
from testkit.webservers import CuttingProxy, start_nginx  # noqa: E402

MODEL = REPO.parent / "shared" / "models" / "model-maker-flowers-int8.tflite"
PHOTOS = REPO.parent / "shared" / "data" / "flowers-mini"
LARGE = 64 << 20


def resume(work: Path) -> dict:
    root = work / "www"
    (root / "objects").mkdir(parents=True)
    data = os.urandom(LARGE)
    digest = hashlib.sha256(data).hexdigest()
    (root / "objects" / digest).write_bytes(data)
    server = start_nginx(root, work / "nginx-resume")
    proxy = CuttingProxy(server.port, cut_after=LARGE // 2)
    try:
        received = fetch.download(f"{proxy.url}/objects/{digest}", work / "file", digest, LARGE)
    finally:
        proxy.close()
        server.stop()
    resumed_from = int(proxy.requests[1].split(b"Range: bytes=")[1].split(b"-")[0])
    after_cut = received - resumed_from
    return {"file_bytes": LARGE, "cut_at": resumed_from, "fetched_after_cut": after_cut,
            "remaining": LARGE - resumed_from, "overhead_bytes": after_cut - (LARGE - resumed_from),
            "requests": len(proxy.requests)}


def keys(work: Path) -> tuple[Path, dict]:
    key = work / "keys" / "signing-key"
    keygen(key)
    raw = load_public_key(Path(f"{key}.pub").read_text())
    return key, {key_id(raw): raw}


def poll(work: Path, builder: Builder, rounds: int = 50) -> dict:
    """An agent that already has the channel's release: after the first check, every poll is a 304."""
    key, trusted = keys(work / "poll")
    store = work / "poll" / "store"
    publish(store, MODEL, builder, key)
    server = start_nginx(store, work / "nginx-poll")
    try:
        root = work / "poll" / "device"
        (root / STATE_DIR).mkdir(parents=True)
        State(release=1).save(root / STATE_DIR / "state.json")
        agent = Agent(AgentConfig(channel_url=f"{server.url}/channels/stable.json", trusted=trusted, root=root,
                                  device_id="pi", daemon_http=f"127.0.0.1:{free_port()}"))
        agent.check()
        log = work / "nginx-poll" / "access.log"
        lines_before = len(log.read_text().splitlines())
        cpu = []
        for _ in range(rounds):
            started = time.process_time()
            agent.check()
            cpu.append((time.process_time() - started) * 1000)
        answers = [line.split('"')[2].split()[0] for line in log.read_text().splitlines()[lines_before:]]
    finally:
        server.stop()
    return {"polls": rounds, "requests_per_poll": len(answers) / rounds, "answers": sorted(set(answers)),
            "cpu_ms_median": round(statistics.median(cpu), 2), "cpu_ms_max": round(max(cpu), 2),
            "note": "CPU includes the local /healthz probe for the status (no daemon here: refused at once)"}


def first_install(work: Path, builder: Builder, key: Path, names: list[str], interval: float):
    """A store with release 1, and a fleet whose first device built the venv the others share."""
    store = work / "store"
    publish(store, MODEL, builder, key)
    server = start_nginx(store, work / "nginx")
    seed = AgentFleet(work / "seed", ["seed"], PHOTOS)
    seed.start(f"{server.url}/channels/stable.json", Path(f"{key}.pub"), interval=1)
    wait(lambda: seed.on(1, ["seed"]), 600)
    seed.close()
    venv = next((seed.roots["seed"] / "venvs").iterdir())
    fleet = AgentFleet(work / "fleet", names, PHOTOS, venv=venv)
    fleet.start(f"{server.url}/channels/stable.json", Path(f"{key}.pub"), interval=interval)
    wait(lambda: len(fleet.on(1, names)) == len(names), 600)
    return store, server, fleet


def wait(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit("timed out")
        time.sleep(0.2)
    return time.monotonic() - started


def model_only(work: Path, builder: Builder) -> dict:
    key, _ = keys(work)
    store, server, fleet = first_install(work, builder, key, ["pi"], interval=1)
    try:
        log = work / "nginx" / "access.log"
        before = len(log.read_text().splitlines())
        second = work / "model-v2.tflite"
        from device.metadata import read_model_info, write_metadata
        info = read_model_info(MODEL)
        second.write_bytes(write_metadata(MODEL.read_bytes(), info.labels, mean=info.mean, std=info.std,
                                          name=info.name, version="v2"))
        publish(store, second, builder, key)
        wait(lambda: fleet.on(2, ["pi"]), 120)
        sent = [(line.split('"')[1].split()[1], int(line.split('"')[2].split()[1]))
                for line in log.read_text().splitlines()[before:]]
    finally:
        fleet.close()
        server.stop()
    objects = sum(size for path, size in sent if path.startswith("/objects/"))
    return {"model_bytes": second.stat().st_size, "object_bytes": objects, "files": len([p for p, _ in sent
            if p.startswith("/objects/")]), "channel_bytes": sum(s for p, s in sent if p.startswith("/channels/")),
            "requests": len(sent)}


def rollout(work: Path, builder: Builder, devices: int = 20, interval: float = 5.0) -> dict:
    key, _ = keys(work)
    names = [f"pi-{i:02d}" for i in range(devices)]
    store, server, fleet = first_install(work, builder, key, names, interval=interval)
    try:
        second = work / "model-v2.tflite"
        from device.metadata import read_model_info, write_metadata
        info = read_model_info(MODEL)
        second.write_bytes(write_metadata(MODEL.read_bytes(), info.labels, mean=info.mean, std=info.std,
                                          name=info.name, version="v2"))
        publish(store, second, builder, key, percent=0)
        time.sleep(interval * 1.5)                          # every device has seen release 2 at 0%
        set_rollout(store, key, 100)
        needed = -(-devices * 95 // 100)
        to_95 = wait(lambda: len(fleet.on(2, names)) >= needed, 600)
        to_all = wait(lambda: len(fleet.on(2, names)) == devices, 600) + to_95
        idle_ms = idle_poll_cpu_ms(fleet, interval)
    finally:
        fleet.close()
        server.stop()
    return {"devices": devices, "poll_s": interval, "to_95_percent_s": round(to_95, 1),
            "to_all_s": round(to_all, 1), "idle_poll_cpu_ms": idle_ms}


def idle_poll_cpu_ms(fleet: AgentFleet, interval: float, seconds: float = 30.0) -> float:
    """The agents' CPU per poll while nothing changes, each with its daemon running (the status's /healthz
    probe answered by a real daemon): CPU time of all agent processes over `seconds`, per poll made."""
    import psutil

    def cpu() -> float:
        return sum(sum(psutil.Process(a.pid).cpu_times()[:2]) for a in fleet.agents if a.poll() is None)
    time.sleep(interval)                                     # past the install's own poll
    before = cpu()
    time.sleep(seconds)
    polls = len([a for a in fleet.agents if a.poll() is None]) * seconds / interval
    return round((cpu() - before) / polls * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="resume,poll,model-only,rollout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bloomkit-ota-bench-") as temporary:
        work = Path(temporary)
        builder = Builder(work / "cache", repo=snapshot_sources(Path(tempfile.mkdtemp(dir=work))))
        runs = {"resume": lambda: resume(work / "resume"), "poll": lambda: poll(work, builder),
                "model-only": lambda: model_only(work / "model-only", builder),
                "rollout": lambda: rollout(work / "rollout", builder)}
        for name in args.only.split(","):
            (work / name).mkdir(exist_ok=True)
            results[name] = runs[name]()
            if not args.json:
                print(name, json.dumps(results[name]), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
