"""The torch-free reader of legacy PyTorch checkpoints: exact tensors, and no code execution."""
from __future__ import annotations

import collections
import io
import os
import pickle
import sys
import types

import numpy as np
import pytest

from trainer import model_spec
from trainer.backbones import weight_cache
from trainer.backbones.torch_checkpoint import (LEGACY_MAGIC, LEGACY_PROTOCOL, CheckpointError, parse_state_dict,
                                                read_state_dict)

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


def _legacy_file_header() -> bytes:
    return b"".join(pickle.dumps(part, protocol=2) for part in
                    (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True, "protocol_version": LEGACY_PROTOCOL}))


def _legacy_file(payload) -> bytes:
    return _legacy_file_header() + pickle.dumps(payload, protocol=2) + pickle.dumps([], protocol=2)


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


def _write_legacy(monkeypatch, tensors: dict, storages: dict) -> bytes:
    """A legacy checkpoint as torch.save wrote it, made without torch: `tensors` name ->
    (storage key, offset, size, stride), `storages` key -> float32 array."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        __module__, __qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Storage:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (Storage(key), offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return "storage", FloatStorage, obj.key, "cpu", storages[obj.key].size, None
            return None

    body = io.BytesIO()
    Pickler(body, protocol=2).dump(collections.OrderedDict((name, Tensor(*spec)) for name, spec in tensors.items()))
    keys = pickle.dumps(list(storages), protocol=2)
    raw = b"".join(np.int64(array.size).tobytes() + array.astype("<f4").tobytes() for array in storages.values())
    return _legacy_file_header() + body.getvalue() + keys + raw


def test_offsets_and_strides_are_honoured(monkeypatch):
    storage = np.arange(12, dtype=np.float32)
    data = _write_legacy(monkeypatch, {"plain": ("0", 0, (3, 4), (4, 1)), "transposed": ("0", 0, (4, 3), (1, 4)),
                                       "tail": ("0", 10, (2,), (1,))}, {"0": storage})
    state = parse_state_dict(data)
    np.testing.assert_array_equal(state["plain"], storage.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed"], storage.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], [10, 11])


@pytest.mark.parametrize("offset, size, stride", [(10, (3,), (1,)), (0, (-1,), (1,)), (0, (2, 2), (1,))],
                         ids=["past_the_end", "negative_size", "stride_rank"])
def test_a_tensor_outside_its_storage_is_refused(monkeypatch, offset, size, stride):
    data = _write_legacy(monkeypatch, {"bad": ("0", offset, size, stride)}, {"0": np.zeros(12, np.float32)})
    with pytest.raises(CheckpointError, match="outside its storage|malformed tensor"):
        parse_state_dict(data)
