"""scripts/check-native-libs: CI's set-up proves itself, naming what is missing before any test runs."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "check-native-libs"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_every_library_the_test_environment_loads_is_installed():
    result = check("--env", sys.prefix)
    assert result.returncode == 0, result.stderr


def extension_linking_a_system_library() -> tuple[bytes, str]:
    """A standard-library extension module's bytes and the system library it links (zlib, libffi, …)."""
    for name in ("zlib", "_ctypes", "_bz2", "_lzma", "_ssl"):
        path = getattr(importlib.import_module(name), "__file__", None)  # None where built in
        if path:
            linked = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            for library in re.findall(r"^\s*(lib\S+\.so\.\d+) => /", linked, re.M):
                if not library.startswith(("libc.", "libm.", "libpthread.", "libdl.")):
                    return Path(path).read_bytes(), library
    raise AssertionError("no standard-library extension module links a system library")


def test_a_missing_library_is_named_with_the_file_that_needs_it(tmp_path):
    # A real extension module whose system library is renamed to one no system has.
    module, library = extension_linking_a_system_library()
    absent = "libq" + library[4:]
    environment = tmp_path / "env"
    (environment / "bin").mkdir(parents=True)
    (environment / "bin" / "python").symlink_to(sys.executable)
    (environment / "lib").mkdir()
    (environment / "lib" / "needs.so").write_bytes(module.replace(library.encode() + b"\0", absent.encode() + b"\0"))
    (environment / "lib" / "libvendored.so.1").write_bytes(module)  # a wheel's own libraries are not missing
    result = check("--env", str(environment), "--program", "no-such-server")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "check-native-libs: program no-such-server not found",
        f"check-native-libs: {absent} missing (needed by lib/needs.so): "
        "`apt-file search` names the Debian package that has it"]
