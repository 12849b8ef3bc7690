"""The TFLite interpreter the device runs on: LiteRT, else tflite-runtime, else TensorFlow's own.

TensorFlow is only a workstation fallback (when neither Pi runtime is installed); it is imported
here and nowhere else in `device`, and only when it is the interpreter actually used. The imports
are plain `from … import` statements so that import-linter sees them: this one is the named
exception of pyproject.toml's "device never imports TensorFlow" contract.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from device import native_stderr
from device.errors import UserError
from device.metadata import read_model_file
from device.options import check_number


class RuntimeMissingError(UserError):
    """No TFLite interpreter is installed."""


class ModelLoadError(UserError):
    """The interpreter refused the model (not a flatbuffer, an unsupported op, …)."""


class _Runtime(NamedTuple):
    package: str      # the distribution to pip install
    top_level: str    # its import name, probed without importing it


_RUNTIMES = (
    _Runtime("ai-edge-litert", "ai_edge_litert"),
    _Runtime("tflite-runtime", "tflite_runtime"),
    _Runtime("tensorflow", "tensorflow"),
)


def _runtime() -> _Runtime:
    for runtime in _RUNTIMES:
        if importlib.util.find_spec(runtime.top_level) is not None:
            return runtime
    raise RuntimeMissingError(
        "no TFLite runtime installed: pip install 'bloomkit[device]' (ai-edge-litert), "
        "or 'bloomkit[device-legacy]' (tflite-runtime) on older Pis")


def is_tensorflow() -> bool:
    """Whether the runtime is TensorFlow's own (a workstation without LiteRT), so loading one imports it."""
    return _runtime().package == "tensorflow"


def runtime_name() -> str:
    """The runtime `load_interpreter` would use and its version, e.g. "ai-edge-litert 2.3.0"."""
    runtime = _runtime()
    try:
        return f"{runtime.package} {version(runtime.package)}"
    except PackageNotFoundError:
        return runtime.package


def default_threads() -> int:
    """One interpreter thread per core this process may use (LiteRT's own default is 1)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _interpreter_class(runtime: _Runtime) -> type:
    """The runtime's `Interpreter`, imported only now: importing any of them is slow."""
    if runtime.top_level == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter
    elif runtime.top_level == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter
    else:
        from tensorflow.lite.python.interpreter import Interpreter
    return Interpreter


def load_interpreter(model: bytes | str | os.PathLike, threads: int | None = None) -> Any:
    """A ready (tensors allocated) interpreter for a model (its bytes or its path), on `threads` threads."""
    if not isinstance(model, bytes):
        model = read_model_file(model)
    threads = default_threads() if threads is None else threads
    check_number("--threads", threads, minimum=1)
    if is_tensorflow():  # it is the fallback on purpose: its advice to move to LiteRT is noise here
        warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
    interpreter_class = _interpreter_class(_runtime())
    try:
        with native_stderr.filtered(lambda line: line.startswith("INFO:")):  # "Created XNNPACK delegate"
            interpreter = interpreter_class(model_content=model, num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ModelLoadError(f"the TFLite runtime cannot load the model: {' '.join(str(error).split())}") from None
    return interpreter
