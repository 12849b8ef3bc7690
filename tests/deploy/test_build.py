"""The workstation side of a deploy: model validation, requirements for a target, the wheelhouse."""
from __future__ import annotations

import pytest

from deploy.build import Builder, Target, validate_model
from deploy.errors import DeployError
from device.errors import UserError

PI = Target("aarch64", (3, 11), (2, 36))


def test_the_reference_model_validates_with_its_labels(reference_model):
    info = validate_model(reference_model)
    assert info["labels"] == 5 and info["input"] == [1, 224, 224, 3] and len(info["sha256"]) == 64


def test_a_file_that_is_not_a_model_is_refused_before_any_host(tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x89PNG not a model at all" * 10)
    with pytest.raises(UserError) as caught:
        validate_model(fake)
    assert "\n" not in str(caught.value)
    with pytest.raises(DeployError, match="model not found"):
        validate_model(tmp_path / "missing.tflite")


def test_requirements_follow_the_targets_python(tmp_path):
    builder = Builder(tmp_path)
    on_311 = builder.requirements(PI)
    assert any(r.startswith("ai-edge-litert") for r in on_311) and not any(r.startswith("tomli") for r in on_311)
    assert any(r.startswith("tomli") for r in builder.requirements(Target("aarch64", (3, 10), (2, 36))))
    assert builder.key(PI) != builder.key(Target("x86_64", (3, 11), (2, 36)))


def test_a_python_newer_than_the_wheels_is_refused_naming_the_missing_wheel(tmp_path):
    missing = r"Python 3.99 on aarch64 failed: no wheel of \S+ for this platform"
    with pytest.raises(DeployError, match=missing) as caught:
        Builder(tmp_path).wheelhouse(Target("aarch64", (3, 99), (2, 36)))
    assert caught.value.stage == "build"
    assert not list((tmp_path / "wheelhouses").iterdir())     # nothing half-built left in the cache
