"""The promises the repository itself makes: a light device package, and CI running the README's command."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_no_device_module_imports_tensorflow():
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "device").rglob("*.py")
    )
    assert "device.imaging" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"device imports TensorFlow via: {result.stdout.strip()}"


def _readme_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no ```sh quick-start block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_quick_start_is_two_commands_train_then_test():
    train, test = _readme_commands()
    assert "trainer train" in train
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_benchmarks_import_no_test_code():
    offenders = []
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names
                          if name.split(".")[0] in ("tests", "pytest", "conftest")]
    assert offenders == [], "benchmarks share helpers through testkit/, not tests/"


def test_in_ci_a_skip_is_a_failure(tmp_path):
    test = tmp_path / "test_skips.py"
    test.write_text("import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('no such tool')\n")
    run = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(test)]
    for ci, summary in (("", "1 skipped"), ("true", "1 failed")):
        result = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "CI": ci})
        assert summary in result.stdout, result.stdout
    assert "skipped in CI, where nothing may be: no such tool" in result.stdout
