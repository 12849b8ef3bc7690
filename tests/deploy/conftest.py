"""Fixtures for the deploy tests: a client key, photos for the daemons, per-test sshd hosts, one build cache."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from testkit.sshlab import PHOTOS_PER_HOST, SSHD, keygen, make_lab, snapshot_sources


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> Path:
    require(SSHD.exists(), "OpenSSH server not installed (/usr/sbin/sshd): apt-get install openssh-server")
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen not installed")
    return keygen(tmp_path_factory.mktemp("client") / "id_ed25519")


@pytest.fixture(scope="session")
def photos(flowers_dir, tmp_path_factory) -> Path:
    """A few real flower photos for the daemons' `--source folder:`."""
    folder = tmp_path_factory.mktemp("photos")
    for photo in sorted(flowers_dir.glob("*/*.jpg"))[::100][:PHOTOS_PER_HOST]:
        shutil.copy(photo, folder / photo.name)
    return folder


@pytest.fixture
def lab(tmp_path, client_key, photos):
    lab = make_lab(tmp_path, client_key, photos)
    yield lab
    lab.close()


@pytest.fixture(scope="session")
def source_snapshot(tmp_path_factory) -> Path:
    return snapshot_sources(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="session")
def builder(tmp_path_factory, source_snapshot):
    """One cache for the session: the wheel and the loopback hosts' wheelhouse are built once."""
    from deploy.build import Builder

    return Builder(tmp_path_factory.mktemp("bloomkit-cache") / "deploy", repo=source_snapshot)


@dataclass(frozen=True)
class Models:
    first: Path        # the reference model
    second: Path       # the same network with metadata version v2: different bytes and sha256
    broken: Path       # passes local validation, but no runtime can prepare it: the daemon never gets healthy


@pytest.fixture(scope="session")
def models(reference_model, tmp_path_factory) -> Models:
    from device.metadata import read_model_info, write_metadata

    folder = tmp_path_factory.mktemp("models")
    original = reference_model.read_bytes()
    info = read_model_info(original)
    second = folder / "flowers-v2.tflite"
    second.write_bytes(write_metadata(original, info.labels, mean=info.mean, std=info.std, name=info.name,
                                      version="v2"))
    # Every [1, 224, 224, 3] shape becomes 4 channels: the metadata still reads fine, the convolutions
    # no longer fit their weights, so the interpreter fails to prepare.
    shape = b"".join(n.to_bytes(4, "little") for n in (4, 1, 224, 224, 3))
    assert shape in original
    broken = folder / "flowers-4-channels.tflite"
    broken.write_bytes(original.replace(shape, shape[:-4] + (4).to_bytes(4, "little")))
    return Models(reference_model, second, broken)
