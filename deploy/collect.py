"""`fab collect` for one host: bring its new samples into INBOX/<host>/, verified, then delete them there.

Three round trips per batch: the host lists its whole samples with their sha256 (deploy/host/samples.py),
sends the missing ones as one tar stream, and deletes the ones whose copy here matched. A file lands
under a temporary name, is hashed as it is written and synced, and takes its name only if the digest
is the host's (never over a file already here). A run after an interruption finds what it already has,
verifies it, and copies only the rest; a sample that does not verify stays on the host.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deploy.errors import DeployError
from deploy.host.layout import Layout
from deploy.inventory import Host
from deploy.ssh import Remote, quote
from device.digest import sha256_file
from device.samples import IMAGE, INBOX_MARKER, SAMPLES_FOLDER, SIDECAR

HOST_SCRIPT = Path(__file__).parent / "host" / "samples.py"
SCRIPT = HOST_SCRIPT.read_text()
END = ".end"  # the stream's last member (deploy/host/samples.py)
BATCH = 250               # samples per tar stream (and per delete): an interruption costs one batch at most
PARTIAL = ".partial"


@dataclass(frozen=True)
class CollectOptions:
    inbox: Path
    keep: bool = False     # leave the samples on the host once copied


def samples_folder(host: Host) -> str:
    """Where the host's daemon keeps samples: its `--collect DIR` if the inventory gives one, else the data
    directory's samples/ (docs/architecture.md: <root>/data/samples)."""
    default = f"{Layout(host.root).data}/{SAMPLES_FOLDER}"
    args = list(host.daemon.args)
    for index, arg in enumerate(args):
        if arg.startswith("--collect="):
            return arg.partition("=")[2] or default
        if arg == "--collect" and index + 1 < len(args) and not args[index + 1].startswith("-"):
            return args[index + 1]
    return default


def prepare_inbox(inbox: Path) -> None:
    """Make INBOX (marked as one, so `trainer review` knows it) or fail in one line before any host."""
    try:
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / INBOX_MARKER).touch()
    except OSError as error:
        raise DeployError(f"--inbox {inbox}: {error.strerror or error}") from None


def collect_host(remote: Remote, host: Host, options: CollectOptions,
                 say: Callable[[str], None] = lambda text: None) -> dict:
    """Copy the host's new samples into INBOX/<host>/; returns the counts for the report."""
    folder = samples_folder(host)
    here = options.inbox / host.name
    here.mkdir(exist_ok=True)
    for leftover in here.glob(f".*{PARTIAL}"):  # an interrupted run's half files
        leftover.unlink()
    listing = json.loads(remote.run(_script(host, "list", folder)) or "{}")
    counts: Counter[str] = Counter(listed=len(listing))
    wanted, verified = [], []
    for name, files in sorted(listing.items()):
        state = _local_state(here, name, files)
        if state == "have":
            verified.append(name)
            counts["already_here"] += 1
        elif state == "conflict":
            counts["conflicts"] += 1
        else:
            wanted.append(name)
    if wanted:
        say(f"copying {len(wanted)} samples")
    for start in range(0, max(len(wanted), 1), BATCH):
        batch = wanted[start: start + BATCH]
        if batch:
            copied = _fetch(remote, host, folder, batch, listing, here, counts)
            verified += copied
        if not options.keep and verified:
            remote.run(_script(host, "delete", folder, *verified))
            counts["deleted"] += len(verified)
            verified = []
    counts["kept_on_host"] = len(listing) - counts["deleted"]
    return {key: counts[key] for key in ("listed", "copied", "bytes", "already_here", "deleted", "kept_on_host",
                                         "mismatched", "conflicts", "vanished")}


def _script(host: Host, action: str, folder: str, *names: str) -> str:
    return quote(host.python, "-c", SCRIPT, action, folder, *names)


def _local_state(here: Path, name: str, files: dict) -> str:
    """"have" (both files here, the host's bytes), "missing" (neither here), or "conflict" (a file of that
    name here with other bytes, or only half the sample: nothing here is ever overwritten)."""
    present = [suffix for suffix in (IMAGE, SIDECAR) if (here / (name + suffix)).exists()]
    if not present:
        return "missing"
    if len(present) == 2 and all(sha256_file(here / (name + s)) == files[s][1] for s in (IMAGE, SIDECAR)):
        return "have"
    return "conflict"


def _fetch(remote: Remote, host: Host, folder: str, batch: list[str], listing: dict, here: Path,
           counts: Counter) -> list[str]:
    """One tar stream of `batch`; returns the samples whose two files arrived whole and took their names.
    Whatever happens, no half sample is left here: an image whose sidecar did not follow goes again."""
    channel = remote.conn.transport.open_session()
    channel.exec_command(_script(host, "send", folder, *batch))
    landed: dict[str, list[str]] = {}
    try:
        failed = _receive(channel, batch, listing, here, landed, counts)
        status = channel.recv_exit_status()
        if status != 0:
            said = channel.makefile_stderr("rb").read().decode(errors="replace").strip().splitlines()
            raise DeployError(f"sending samples failed on the host: {said[-1] if said else f'exit status {status}'}")
    finally:
        channel.close()
        for name, suffixes in landed.items():
            if suffixes == [IMAGE]:
                _unlink(here / (name + IMAGE))
    whole = [name for name in batch if landed.get(name) == [IMAGE, SIDECAR]]
    counts["vanished"] += len(batch) - len(whole) - len(failed)  # evicted by the daemon since the listing
    counts["copied"] += len(whole)
    _sync_filesystem(here)  # the files and their names on disk, before the host forgets the samples
    return whole


def _receive(channel, batch: list[str], listing: dict, here: Path, landed: dict[str, list[str]],
             counts: Counter) -> set[str]:
    """Land each file of the stream as it comes (recorded in `landed`); returns the samples that did not verify."""
    expected, failed = set(batch), set()
    try:
        with tarfile.open(fileobj=channel.makefile("rb"), mode="r|") as stream:
            for member in stream:
                if member.name == END:
                    return failed
                name, suffix = os.path.splitext(member.name)
                if not member.isfile() or name not in expected or suffix not in (IMAGE, SIDECAR):
                    raise DeployError(f"the host sent an unexpected file {member.name!r}")
                if suffix == SIDECAR and landed.get(name) != [IMAGE]:
                    continue  # its image did not verify: the sidecar would make a half sample look whole
                if _land(stream.extractfile(member), here / (name + suffix), listing[name][suffix][1]):
                    landed.setdefault(name, []).append(suffix)
                    counts["bytes"] += member.size
                else:
                    counts["mismatched"] += 1
                    failed.add(name)
    except tarfile.TarError as error:
        raise DeployError(f"the sample stream broke off: {error}") from None
    raise DeployError(f"the sample stream broke off after {len(landed)} of {len(batch)} samples")


def _land(source, target: Path, expected: str) -> bool:
    """Write `source` beside `target`; give it the name only if its sha256 is `expected`. (The batch is
    synced to disk at once afterwards: a sync per file took 8 ms each, most of a collect's time.)"""
    partial = target.with_name(f".{target.name}{PARTIAL}")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    try:
        if digest.hexdigest() != expected:
            return False
        os.link(partial, target)  # never over an existing file
        return True
    except FileExistsError:
        return sha256_file(target) == expected
    finally:
        _unlink(partial)


def _sync_filesystem(folder: Path) -> None:
    """Everything written on `folder`'s filesystem, on disk: Linux's syncfs(2), one call for a whole batch;
    elsewhere sync(2)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _libc_syncfs():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _libc_syncfs()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
