"""Associated files: a zip archive appended to the model, as tflite-support's MetadataPopulator packs them.

The archive's offsets count from the start of the whole file, so the model is at once a valid
FlatBuffer (interpreters ignore the bytes after it) and a valid zip file (its central directory
is at the end).
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib

from device.metadata.errors import MalformedMetadataError, TruncatedModelError

MAX_FILE_SIZE = 16 << 20   # a labels file is a few kB; refuse to inflate anything huge
_LOCAL_HEADER = b"PK\x03\x04"
# what zipfile raises on hostile archives, besides BadZipFile
_ZIP_FAILURES = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError,
                 OSError, EOFError, KeyError, IndexError, OverflowError, struct.error, zlib.error,
                 UnicodeDecodeError)


def _open(model: bytes) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(io.BytesIO(model))
    except _ZIP_FAILURES:
        return None


def read_file(model: bytes, name: str) -> bytes:
    """The associated file `name` packed into `model`."""
    archive = _open(model)
    if archive is None:
        tail = model[-(1 << 20):]
        if _LOCAL_HEADER in tail and name.encode() in tail:
            raise TruncatedModelError(f"model is truncated: the archive holding {name!r} has no end")
        raise MalformedMetadataError(f"the metadata names {name!r}, but the model has no archive of files")
    try:
        with archive:
            info = archive.getinfo(name)
            if info.file_size > MAX_FILE_SIZE:
                raise MalformedMetadataError(f"{name!r} in the model claims {info.file_size} bytes, too many")
            with archive.open(info) as file:
                return file.read(MAX_FILE_SIZE + 1)[:MAX_FILE_SIZE]
    except KeyError:
        raise MalformedMetadataError(f"the metadata names {name!r}, but the model's archive lacks it") from None
    except _ZIP_FAILURES as error:
        raise MalformedMetadataError(f"cannot read {name!r} from the model's archive ({error})") from None


def without_archive(model: bytes) -> bytes:
    """The model with its appended archive (if any) cut off, as tflite-support re-packs one."""
    archive = _open(model)
    if archive is None:
        return model
    with archive:
        starts = [info.header_offset for info in archive.infolist()]
    return model[:min(starts)] if starts and 8 <= min(starts) <= len(model) else model


def append(model: bytes, files: dict[str, bytes]) -> bytes:
    """`model` followed by a zip archive of `files`, stored uncompressed with fixed timestamps."""
    buffer = io.BytesIO(model)
    buffer.seek(len(model))
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # never into an old archive
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
