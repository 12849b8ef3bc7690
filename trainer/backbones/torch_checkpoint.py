"""Read a PyTorch state dict saved in the legacy (pre-1.6) format, with numpy and without torch.

The legacy format is five pickles in a row — magic number, protocol version, system info, the
state dict (whose tensors point at storages through persistent ids), the list of storage keys —
followed by each storage's raw bytes (an int64 element count, then the elements). Unpickling runs
code named by the file, so the unpickler here resolves only the few globals a state dict needs and
refuses everything else: a checkpoint can describe tensors, never call `os.system`.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from device.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(UserError):
    """A file that is not a legacy PyTorch state dict we can read safely."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> _TensorRef:
    if not isinstance(storage, _StorageRef) or len(size) != len(stride):
        raise CheckpointError("checkpoint has a malformed tensor")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None) -> _TensorRef:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a plain state dict; persistent ids become storage references."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(f"checkpoint asks for the global {module}.{name}, which a state dict "
                                  "never needs; refusing to load it") from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id in checkpoint: {pid!r:.80}")
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise CheckpointError("checkpoint uses storage views, which this reader does not support")
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("checkpoint storage has no known storage type")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _load_pickle(file: BinaryIO) -> Any:
    try:
        return _RestrictedUnpickler(file).load()
    except CheckpointError:
        raise
    except Exception as error:  # a damaged pickle raises any of a dozen types
        raise CheckpointError(f"not a readable legacy PyTorch checkpoint ({type(error).__name__})") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Return the checkpoint's tensors as numpy arrays, keyed by the state dict's names.

    A file named like torch.hub's downloads (`name-<first 8 hex digits of its SHA-256>.pth`) must
    match that digest, so a damaged install is caught before its weights are used.
    """
    with open(path, "rb") as file:
        data = file.read()
    match = re.fullmatch(r".+-([0-9a-f]{8,})\.pth", os.path.basename(path))
    if match and not hashlib.sha256(data).hexdigest().startswith(match.group(1)):
        raise CheckpointError(f"{os.path.basename(path)} does not match the SHA-256 its name carries; "
                              "the file is damaged, reinstall its package")
    return parse_state_dict(data)


def parse_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """`read_state_dict` for bytes already in memory."""
    if data.startswith(b"PK\x03\x04"):
        raise CheckpointError("zip-format checkpoints (PyTorch >= 1.6) are not supported, only the legacy format")
    file = io.BytesIO(data)
    if _load_pickle(file) != LEGACY_MAGIC:
        raise CheckpointError("not a legacy PyTorch checkpoint (bad magic number)")
    if _load_pickle(file) != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy PyTorch protocol version")
    sys_info = _load_pickle(file)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
        raise CheckpointError("only little-endian checkpoints are supported")
    state = _load_pickle(file)
    keys = _load_pickle(file)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise CheckpointError("checkpoint does not hold a state dict")
    storages = _read_storages(file, [str(key) for key in keys], _storages_used(state))
    return {str(name): _materialize(tensor, storages) for name, tensor in state.items()}


def _storages_used(state: dict) -> dict[str, _StorageRef]:
    used = {}
    for name, tensor in state.items():
        if not isinstance(tensor, _TensorRef):
            raise CheckpointError(f"state dict entry {name!r} is not a tensor")
        used[tensor.storage.key] = tensor.storage
    return used


def _read_storages(file: io.BytesIO, keys: list[str], used: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    storages = {}
    for key in keys:
        if key not in used:
            raise CheckpointError(f"checkpoint has a storage {key!r} that no tensor uses")
        header = file.read(8)
        if len(header) != 8:
            raise CheckpointError("checkpoint is truncated")
        numel = int.from_bytes(header, "little", signed=True)
        if numel != used[key].numel:
            raise CheckpointError(f"checkpoint storage {key!r} holds {numel} elements, "
                                  f"its tensors say {used[key].numel}")
        dtype = np.dtype(used[key].dtype).newbyteorder("<")
        raw = file.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise CheckpointError("checkpoint is truncated")
        storages[key] = np.frombuffer(raw, dtype=dtype)
    return storages


def _materialize(tensor: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    storage = storages.get(tensor.storage.key)
    if storage is None:
        raise CheckpointError(f"checkpoint lacks storage {tensor.storage.key!r}")
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if (tensor.offset < 0 or any(n < 0 for n in tensor.size) or any(s < 0 for s in tensor.stride)
            or (all(tensor.size) and last >= storage.size)):
        raise CheckpointError("checkpoint tensor reaches outside its storage")
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[tensor.offset:], shape=tensor.size,
                                           strides=[s * itemsize for s in tensor.stride], writeable=False)
    return np.array(view)
