"""`fab collect`'s work on one host, over a real sshd: copy, verify, delete; resume; never overwrite; mismatch."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from deploy.collect import CollectOptions, collect_host, prepare_inbox, samples_folder
from deploy.errors import DeployError
from deploy.ssh import Remote, connect
from device.digest import sha256_file
from device.samples import complete_names, read_sample
from testkit.sample_maker import write_samples


@pytest.fixture
def host(lab, flowers_dir):
    server = lab.start_server("pi-1")
    host = lab.host("pi-1", server)
    names = write_samples(flowers_dir, Path(samples_folder(host)), 12)
    return host, names


def run(host, inbox: Path, keep: bool = False) -> dict:
    prepare_inbox(inbox)
    remote = Remote(host.name, connect(host))
    try:
        return collect_host(remote, host, CollectOptions(inbox, keep))
    finally:
        remote.close()


def host_python(lab, name: str, body: str) -> str:
    """A python3 for the test host that runs the real one and does `body` (shell) to what `send` writes."""
    wrapper = lab.base / f"python-{name}"
    wrapper.write_text(f'#!/bin/sh\nif [ "$3" = send ]; then /usr/bin/python3 "$@" | {body}; '
                       f'else exec /usr/bin/python3 "$@"; fi\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_copies_verifies_and_deletes_on_the_host_then_has_nothing_new(host, tmp_path):
    host, names = host
    inbox = tmp_path / "inbox"
    first = run(host, inbox)
    assert (first["listed"], first["copied"], first["deleted"], first["kept_on_host"]) == (12, 12, 12, 0)
    assert complete_names(inbox / "pi-1") == names
    for name in names:
        read_sample(inbox / "pi-1", name)  # whole: the JPEG is the one its sidecar names
    assert complete_names(Path(samples_folder(host))) == []
    assert run(host, inbox)["listed"] == 0


def test_keep_leaves_the_samples_and_a_second_run_copies_nothing_again(host, tmp_path):
    host, names = host
    inbox = tmp_path / "inbox"
    assert run(host, inbox, keep=True)["copied"] == 12
    again = run(host, inbox, keep=True)
    assert (again["copied"], again["already_here"], again["kept_on_host"]) == (0, 12, 12)
    assert complete_names(Path(samples_folder(host))) == names
    assert run(host, inbox)["deleted"] == 12, "a run without --keep deletes what is verified here"


def test_a_local_file_is_never_overwritten_and_that_sample_stays_on_the_host(host, tmp_path):
    host, names = host
    here = tmp_path / "inbox" / "pi-1"
    here.mkdir(parents=True)
    (here / f"{names[3]}.jpg").write_bytes(b"someone's own file")
    done = run(host, tmp_path / "inbox")
    assert (done["copied"], done["conflicts"], done["kept_on_host"]) == (11, 1, 1)
    assert (here / f"{names[3]}.jpg").read_bytes() == b"someone's own file"
    assert complete_names(Path(samples_folder(host))) == [names[3]]


def test_a_copy_that_does_not_match_the_hosts_sha256_is_dropped_and_the_host_keeps_it(lab, host, tmp_path):
    host, names = host
    # Flip one byte 100 bytes into the first file's data (after its 512-byte tar header): a corrupted transfer.
    corrupt = ('/usr/bin/python3 -c "import sys; d = bytearray(sys.stdin.buffer.read()); d[612] ^= 1; '
               'sys.stdout.buffer.write(d)"')
    damaged = dataclasses.replace(host, python=host_python(lab, "corrupt", corrupt))
    done = run(damaged, tmp_path / "inbox")
    assert (done["copied"], done["mismatched"], done["deleted"], done["kept_on_host"]) == (11, 1, 11, 1)
    assert complete_names(tmp_path / "inbox" / "pi-1") == names[1:]
    assert not [p for p in (tmp_path / "inbox" / "pi-1").iterdir() if p.name.startswith(names[0])]
    assert complete_names(Path(samples_folder(host))) == [names[0]]
    assert run(host, tmp_path / "inbox")["copied"] == 1, "the next run brings it"


def test_an_interrupted_collect_resumes_copying_only_what_is_missing(lab, host, tmp_path):
    host, names = host
    inbox = tmp_path / "inbox"
    size = sum(os.path.getsize(Path(samples_folder(host)) / f"{n}.jpg") for n in names[:5])
    cut = dataclasses.replace(host, python=host_python(lab, "cut", f"head -c {size + 5 * 2048}"))
    with pytest.raises(DeployError, match="the sample stream broke off"):
        run(cut, inbox)
    arrived = complete_names(inbox / "pi-1")
    assert 1 <= len(arrived) < 12
    assert sorted(p.name for p in (inbox / "pi-1").iterdir()) == sorted(f"{n}{s}" for n in arrived
                                                                        for s in (".jpg", ".json")), "no half files"
    before = {name: sha256_file(inbox / "pi-1" / f"{name}.jpg") for name in arrived}
    done = run(host, inbox)
    assert (done["already_here"], done["copied"], done["deleted"]) == (len(arrived), 12 - len(arrived), 12)
    assert complete_names(inbox / "pi-1") == names
    assert all(sha256_file(inbox / "pi-1" / f"{name}.jpg") == digest for name, digest in before.items())
    assert not [p for p in (inbox / "pi-1").iterdir() if p.name.startswith(".")], "no half files left"


def test_fab_collect_brings_every_hosts_samples_and_reports_an_unreachable_host(lab, flowers_dir, builder, tmp_path):
    from testkit.processes import free_port
    from testkit.sshlab import run_fab

    first, second = (lab.host(name, lab.start_server(name)) for name in ("pi-1", "pi-2"))
    gone = lab.host("pi-3", port=free_port())
    names = {first.name: write_samples(flowers_dir, Path(samples_folder(first)), 5, first.name),
             second.name: write_samples(flowers_dir, Path(samples_folder(second)), 3, second.name)}
    inventory = str(lab.inventory([first, second, gone]))
    inbox = tmp_path / "inbox"
    done = run_fab(builder, "collect", "--inventory", inventory, "--inbox", str(inbox), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = {entry["host"]: entry for entry in json.loads(done.stdout)}
    for host in (first, second):
        assert report[host.name]["status"] == "OK" and report[host.name]["detail"]["copied"] == len(names[host.name])
        assert complete_names(inbox / host.name) == names[host.name]
        assert complete_names(Path(samples_folder(host))) == []
    assert (report["pi-3"]["status"], report["pi-3"]["stage"]) == ("FAILED", "connect")
    assert "unreachable" in report["pi-3"]["reason"]

    done = run_fab(builder, "collect", "--inventory", str(lab.inventory([first, second])), "--inbox", str(inbox))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 new samples (0.0 MB)" in done.stdout and "2 of 2 hosts ok" in done.stdout


def test_fab_collect_into_a_file_is_one_line(lab, builder, tmp_path):
    from testkit.sshlab import run_fab

    host = lab.host("pi-1", lab.start_server("pi-1"))
    blocker = tmp_path / "inbox"
    blocker.write_text("not a folder")
    done = run_fab(builder, "collect", "--inventory", str(lab.inventory([host])), "--inbox", str(blocker / "x"))
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("fab: error: --inbox ") and "Not a directory" in done.stderr
