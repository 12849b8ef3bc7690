"""Build once on the workstation: validate the model, the bloomkit wheel, and a wheelhouse of its device
dependencies for the target's platform and Python, cached so an offline Pi installs with `--no-index`."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from device.cache import cache_root
from device.digest import sha256_file
from deploy.errors import DeployError, ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("device", "trainer", "deploy")
EXTRA = "device"
INSTALLER = "pip"          # downloaded beside the wheels and run from its wheel: the venv needs no pip of its own
WHEELHOUSE_FORMAT = 2      # part of the key: bump when the wheelhouse's layout changes
OLDEST_GLIBC_MINOR = 17  # manylinux2014


@dataclass(frozen=True)
class Target:
    """What a host can run: its CPU, Python and C library, as pre-flight read them."""

    machine: str                 # "aarch64" or "x86_64"
    python: tuple[int, int]
    glibc: tuple[int, int]

    def platforms(self) -> list[str]:
        """Every manylinux tag this host accepts, newest first (pip does not expand them itself)."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)]
        return tags + [f"manylinux2014_{self.machine}"]

    def environment(self) -> dict[str, str]:
        """PEP 508 marker values for the host."""
        version = "%d.%d" % self.python
        return {"python_version": version, "python_full_version": version + ".0", "platform_machine": self.machine,
                "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": EXTRA}


@dataclass(frozen=True)
class Wheelhouse:
    """Dependency wheels plus `requirements.txt` and `SHA256SUMS`; `key` names the venv built from it."""

    key: str
    path: Path
    requirements: tuple[str, ...]

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_file())

    @property
    def installer(self) -> str:
        """The pip wheel's file name: `python <wheelhouse>/<it>/pip install …` runs pip straight from it
        (a pattern in a dry run, where the wheelhouse was not downloaded)."""
        files = self.files() if self.path.is_dir() else []
        return next((p.name for p in files if p.name.startswith(f"{INSTALLER}-")), f"{INSTALLER}-*.whl")


def validate_model(path: Path) -> dict:
    """Read the model as the device will (TFLite identifier, metadata, labels count) before shipping it."""
    from device.metadata import read_model_info

    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    info = read_model_info(path)
    return {"name": info.name, "version": info.version, "labels": len(info.labels),
            "input": list(info.input.shape), "sha256": sha256_file(path)}


def write_sums(directory: Path, names: list[str]) -> dict[str, str]:
    """Write `SHA256SUMS` (the format `sha256sum -c` checks on the host) and return the sums."""
    sums = {name: sha256_file(directory / name) for name in sorted(names)}
    (directory / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums


class Builder:
    """Builds the wheel once per source tree and a wheelhouse once per (platform, Python, requirements).

    Thread-safe: hosts deploying in parallel wait for one build of what they share. In a dry run it
    prints the wheelhouse download it would run instead of running it (the wheel is built: it is local).
    """

    def __init__(self, cache_dir: Path | None = None, *, repo: Path = REPO, dry_run: bool = False) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.repo = repo
        self.dry_run = dry_run
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._pyproject = tomllib.loads((repo / "pyproject.toml").read_text())

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    def wheel(self) -> Path:
        """`pip wheel --no-deps .`, reproducible and cached by a hash of the sources, so an unchanged tree
        gives the same bytes (and a repeat deploy is recognised as already current)."""
        project = self._pyproject["project"]
        name = f"{project['name']}-{project['version']}-py3-none-any.whl"
        out = self.cache_dir / "wheels" / self._source_hash()
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(self.repo)]
        with self._lock("wheel"):
            if not (out / name).is_file():
                env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
                _run(command, "building the bloomkit wheel", env=env)
            return out / name

    def requirements(self, target: Target) -> list[str]:
        """The device extra's requirements that apply on `target`, from pyproject.toml."""
        project = self._pyproject["project"]
        wanted = []
        for line in project.get("dependencies", []) + project["optional-dependencies"][EXTRA]:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(target.environment()):
                requirement.marker = None
                if str(requirement) not in wanted:
                    wanted.append(str(requirement))
        return sorted(wanted)

    def key(self, target: Target) -> str:
        identity = json.dumps([WHEELHOUSE_FORMAT, target.platforms(), target.python, self.requirements(target)])
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def wheelhouse(self, target: Target) -> Wheelhouse:
        """`pip download --only-binary=:all:` for the target, cached in the cache dir by key."""
        key = self.key(target)
        path = self.cache_dir / "wheelhouses" / key
        requirements = self.requirements(target)
        python = "%d%d" % target.python
        command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python,
                   "--implementation", "cp", "--abi", f"cp{python}"]
        for platform in target.platforms():
            command += ["--platform", platform]
        if self.dry_run:
            print("$ " + " ".join(command + ["-d", str(path), INSTALLER] + requirements))
            return Wheelhouse(key, path, tuple(requirements))
        with self._lock(key):
            if not (path / "SHA256SUMS").is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=path.parent))
                try:
                    _run(command + ["-d", str(partial), INSTALLER] + requirements,
                         f"downloading wheels for Python {target.python[0]}.{target.python[1]} on {target.machine}")
                    (partial / "requirements.txt").write_text("".join(r + "\n" for r in requirements))
                    write_sums(partial, [p.name for p in partial.iterdir()])
                    os.replace(partial, path)
                finally:
                    shutil.rmtree(partial, ignore_errors=True)
        return Wheelhouse(key, path, tuple(requirements))

    def _source_hash(self) -> str:
        digest = hashlib.sha256()
        files = [self.repo / "pyproject.toml"]
        for package in PACKAGES:
            files += (p for p in (self.repo / package).rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for path in sorted(files):
            digest.update(str(path.relative_to(self.repo)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    return cache_root() / "deploy"


def _run(command: list[str], what: str, env: dict | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or \
            result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
        reason = f"no wheel of {missing.group(1)} for this platform and Python" if missing else lines[-1]
        raise DeployError(f"{what} failed: {reason}", stage="build")
