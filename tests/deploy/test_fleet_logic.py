"""The fleet runner's policy (parallel bound, canary, failure share), the report, pruning and the
pre-flight refusals, on plain data: no host needed."""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from deploy.errors import DeployError, InventoryError
from deploy.fleet import FleetInterrupted, Interrupt, run_fleet
from deploy.host.layout import previous_release, to_prune
from deploy.inventory import Host
from deploy.releases import new_version
from deploy.report import CANCELLED, FAILED, INTERRUPTED, OK, ROLLED_BACK, SKIPPED, HostResult, table, to_json
from deploy.steps import DRY_RUN_FACTS, Facts, HostSteps


def hosts(n: int) -> list[Host]:
    return [Host(name=f"pi{i}") for i in range(n)]


class Job:
    """Records concurrency; fails the hosts named in `failing`."""

    def __init__(self, failing=(), delay=0.05):
        self.failing, self.delay = set(failing), delay
        self.order, self.running, self.most = [], 0, 0
        self.lock = threading.Lock()

    def __call__(self, host):
        with self.lock:
            self.order.append(host.name)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return HostResult(host.name, FAILED if host.name in self.failing else OK)


def test_parallelism_is_bounded_and_results_keep_the_host_order():
    job = Job()
    results = run_fleet(hosts(7), job, parallel=3)
    assert job.most == 3
    assert [r.host for r in results] == [f"pi{i}" for i in range(7)]
    assert all(r.status == OK for r in results)


def test_canary_goes_first_alone_and_a_failed_canary_stops_the_rest():
    job = Job(failing={"pi2"})
    results = run_fleet(hosts(4), job, parallel=4, canary="pi2")
    assert job.order == ["pi2"]
    assert [r.status for r in results] == [CANCELLED, CANCELLED, FAILED, CANCELLED]
    assert "canary pi2" in results[0].reason
    job = Job()
    run_fleet(hosts(4), job, parallel=4, canary="pi3")
    assert job.order[0] == "pi3" and sorted(job.order) == ["pi0", "pi1", "pi2", "pi3"]


def test_stops_starting_hosts_once_more_than_the_failure_share_failed():
    job = Job(failing={"pi0", "pi1", "pi2"})
    results = run_fleet(hosts(8), job, parallel=1, max_failures=0.25)
    assert job.order == ["pi0", "pi1", "pi2"]           # 3 of 8 > 25%: no fourth host started
    assert [r.status for r in results[3:]] == [CANCELLED] * 5
    job = Job(failing={"pi0", "pi1"})
    run_fleet(hosts(8), job, parallel=1, max_failures=0.25)
    assert len(job.order) == 8                          # 2 of 8 is not more than 25%


class Stoppable:
    """A host's job that runs until Ctrl-C is asked for and then stops (as a deploy stops at a stage before
    the switch), or, with `stubborn`, keeps running in stage "health" until released."""

    def __init__(self, interrupt: Interrupt, stubborn: bool = False):
        self.interrupt, self.stubborn = interrupt, stubborn
        self.started, self.release = threading.Semaphore(0), threading.Event()

    def __call__(self, host):
        self.interrupt.stage_of[host.name] = "health"
        self.started.release()
        if self.stubborn:
            self.release.wait(10)
            return HostResult(host.name, OK)
        self.interrupt.requested.wait(10)
        return HostResult(host.name, INTERRUPTED, stage="upload", reason="interrupted")


def ctrl_c_when(started: threading.Semaphore, count: int, times: int = 1) -> None:
    """Ctrl-C in the main thread (as the terminal delivers it), `times` times, once `count` jobs started."""
    def press():
        for _ in range(count):
            started.acquire(timeout=10)
        for _ in range(times):
            time.sleep(0.2)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    threading.Thread(target=press, daemon=True).start()


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal, even when pytest inherited SIGINT ignored (a job
    started in the background of a non-interactive shell does)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_stops_the_running_hosts_at_a_safe_point_and_reports_every_host():
    interrupt = Interrupt()
    job = Stoppable(interrupt)
    ctrl_c_when(job.started, 2)
    with pytest.raises(FleetInterrupted) as caught:
        run_fleet(hosts(4), job, parallel=2, interrupt=interrupt)
    stop = caught.value
    assert not stop.abandoned and interrupt.requested.is_set()
    assert [(r.status, r.stage) for r in stop.results] == [(INTERRUPTED, "upload")] * 2 + [(CANCELLED, "fleet")] * 2
    assert stop.results[2].reason == "interrupted before it started"


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_second_ctrl_c_stops_waiting_and_reports_the_running_hosts_in_their_stage():
    interrupt = Interrupt()
    job = Stoppable(interrupt, stubborn=True)
    ctrl_c_when(job.started, 1, times=2)
    try:
        with pytest.raises(FleetInterrupted) as caught:
            run_fleet(hosts(2), job, parallel=1, canary="pi1", interrupt=interrupt)
    finally:
        job.release.set()
    assert caught.value.abandoned
    assert [(r.host, r.status, r.stage) for r in caught.value.results] == [
        ("pi0", CANCELLED, "fleet"), ("pi1", INTERRUPTED, "health")]


def test_bad_fleet_options_are_user_errors():
    with pytest.raises(InventoryError, match="canary 'pi9'"):
        run_fleet(hosts(2), Job(), canary="pi9")
    with pytest.raises(InventoryError, match="--parallel"):
        run_fleet(hosts(2), Job(), parallel=0)


def test_report_table_and_json():
    results = [HostResult("pi0", OK, "v1", "v2", 3.21), HostResult("pi1", SKIPPED, "v2", "v2", 0.5),
               HostResult("pi2", ROLLED_BACK, "v1", "v1", 9.0, "health", "unhealthy: no frames"),
               HostResult("pi3", FAILED, None, None, 10.0, "connect", "unreachable: connection refused by x:22")]
    text = table(results)
    assert "v1 → v2" in text and "ROLLED_BACK (health: unhealthy: no frames)" in text
    assert text.splitlines()[-1] == "2 of 4 hosts ok, 2 not"
    data = json.loads(to_json(results))
    assert data[3] == {"host": "pi3", "status": FAILED, "old": None, "new": None, "seconds": 10.0,
                       "stage": "connect", "reason": "unreachable: connection refused by x:22", "detail": None}


def test_prune_keeps_the_newest_and_current_and_the_venvs_they_use():
    releases = ["20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c", "20260104T000000Z-d"]
    venv_of = dict(zip(releases, ["k1", "k1", "k2", "k3"]))
    gone, venvs = to_prune(releases, venv_of, ["k1", "k2", "k3", "k0"], keep=2, current=releases[0])
    assert gone == ["20260102T000000Z-b"]              # current (rolled back to) stays
    assert venvs == ["k0"]
    assert to_prune(releases, venv_of, ["k1", "k2", "k3"], keep=1, current=releases[3]) == (releases[:3], ["k1", "k2"])


def test_failed_releases_are_pruned_first_and_never_rolled_back_to():
    good1, good2, bad3, bad4, new5 = (f"2026010{i}T000000Z-x" for i in range(1, 6))
    releases = [good1, good2, bad3, bad4, new5]
    gone, _ = to_prune(releases, dict.fromkeys(releases, "k1"), ["k1"], keep=3, current=new5, failed=[bad3, bad4])
    assert gone == [bad3, bad4]
    assert previous_release(releases, new5, failed=[bad3, bad4]) == good2
    assert previous_release(releases, good1, failed=[]) is None
    assert previous_release(releases, None, failed=[new5]) == bad4


def test_versions_sort_by_time_and_never_collide():
    first = new_version("ab" * 32, [])
    assert first.endswith("-abababab") and new_version("ab" * 32, [first]) > first


@pytest.mark.parametrize("change, message", [
    ({"machine": "armv7l"}, "armv7l is a 32-bit OS"),
    ({"machine": "riscv64"}, "unsupported CPU architecture riscv64"),
    ({"python": (3, 9)}, "Python 3.9: bloomkit needs 3.10 or newer"),
    ({"glibc": ""}, "has no glibc"),
    ({"has_venv": False}, "install python3-venv"),
    ({"writable": False}, "not writable"),
])
def test_preflight_refuses_hosts_that_cannot_run_the_device(change, message):
    steps = HostSteps(Host(name="pi"), remote=None)
    steps.facts = Facts(**{**DRY_RUN_FACTS, "python": (3, 11), **change})
    with pytest.raises(DeployError, match=message):
        steps.check_can_run()


def test_preflight_accepts_a_bookworm_pi():
    steps = HostSteps(Host(name="pi"), remote=None)
    steps.facts = Facts(**{**DRY_RUN_FACTS, "python": (3, 11)})
    steps.check_can_run()
    assert steps.facts.target.platforms()[0] == "manylinux_2_36_aarch64"
    assert steps.facts.target.platforms()[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


@pytest.mark.parametrize("healthz, serving", [
    ({"status": "ok", "model": {"sha256": "abc"}}, True),
    ({"status": "ok", "model": {"sha256": "old"}}, False),        # still the previous model
    ({"status": "unhealthy", "model": {"sha256": "abc"}}, False),
    ({"status": "ok"}, False),
    (None, False),                                                # no answer: not running
])
def test_preflight_knows_whether_the_daemon_serves_the_current_release(healthz, serving):
    facts = Facts(**{**DRY_RUN_FACTS, "manifest": {"model": {"sha256": "abc"}}, "healthz": healthz})
    assert facts.serving_current is serving
    assert Facts(**{**DRY_RUN_FACTS, "healthz": healthz}).serving_current is False   # nothing deployed
