"""The torch-free reader of legacy PyTorch checkpoints: exact tensors, and no code execution."""
from __future__ import annotations

import os
import pickle

import pytest

from trainer import model_spec
from trainer.backbones import weight_cache
from trainer.backbones.torch_checkpoint import LEGACY_MAGIC, LEGACY_PROTOCOL, CheckpointError, parse_state_dict, read_state_dict

# weight_cache.digest of `torch.load(efficientnet-lite0-57934424.pth, weights_only=True)`, computed with torch 2.13.
LITE0_TORCH_DIGEST = "fca21c2fde34715b80c25b2cee3e41e348fcc4b67eabb9cf88a5702493ecca29"


@pytest.fixture(scope="module")
def lite0_checkpoint():
    return model_spec.get("efficientnet_lite0").checkpoint()


def test_lite0_tensors_are_bit_identical_to_torch_load(lite0_checkpoint):
    state = read_state_dict(lite0_checkpoint)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_bn0.num_batches_tracked"].dtype.name == "int64"
    assert weight_cache.digest(state) == LITE0_TORCH_DIGEST


class Exploit:
    """Unpickling this runs `command` through whatever global `call` names."""

    def __init__(self, call, command):
        self.call, self.command = call, command

    def __reduce__(self):
        return self.call, (self.command,)


def _legacy_file(payload) -> bytes:
    header = b"".join(pickle.dumps(part, protocol=2) for part in
                      (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True, "protocol_version": LEGACY_PROTOCOL}))
    return header + pickle.dumps(payload, protocol=2) + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("call", [os.system, eval, getattr(__import__("subprocess"), "getoutput")],
                         ids=["os.system", "builtins.eval", "subprocess.getoutput"])
def test_a_checkpoint_asking_for_any_other_global_is_refused(tmp_path, call):
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w')" if call is eval else f"touch {marker}"
    data = _legacy_file({"weight": Exploit(call, command)})
    with pytest.raises(CheckpointError, match=r"asks for the global .*(system|eval|getoutput).*refusing"):
        parse_state_dict(data)
    assert not marker.exists()


def test_an_exploit_in_the_header_pickles_is_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="os.system|posix.system"):
        parse_state_dict(pickle.dumps(Exploit(os.system, f"touch {marker}"), protocol=2))
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path, lite0_checkpoint):
    cut = tmp_path / "lite0.pth"
    cut.write_bytes(lite0_checkpoint.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(cut)


def test_a_checkpoint_not_matching_the_digest_in_its_name_is_refused(tmp_path, lite0_checkpoint):
    damaged = bytearray(lite0_checkpoint.read_bytes())
    damaged[-5] ^= 0xFF
    copy = tmp_path / lite0_checkpoint.name
    copy.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        read_state_dict(copy)


def test_a_zip_format_checkpoint_is_named_as_unsupported(tmp_path):
    with pytest.raises(CheckpointError, match="zip-format"):
        parse_state_dict(b"PK\x03\x04" + bytes(100))
