"""A bounds-checked reader for FlatBuffers tables, safe on hostile bytes.

flatbuffers' own `Table` trusts every offset it follows, so a corrupt model could make it read
garbage or raise anything. Here every offset, length and vtable entry is checked against the
buffer before it is used, and every failure is a `FormatError`, which the metadata reader turns
into one of its one-line errors. Nothing recurses; every loop runs over a vector whose length is
bounded by the buffer's size.
"""
from __future__ import annotations

import struct


class FormatError(Exception):
    """The bytes do not form the FlatBuffer expected (a bad vtable, a non-UTF-8 string, …)."""


class OutOfBoundsError(FormatError):
    """An offset or length points outside the buffer."""


def read(buf: bytes, fmt: str, pos: int):
    """One little-endian scalar of struct format `fmt` at `pos`, or `OutOfBoundsError`."""
    size = struct.calcsize(fmt)
    if pos < 0 or pos + size > len(buf):
        raise OutOfBoundsError(f"a field at byte {pos} lies past the end ({len(buf)} bytes)")
    return struct.unpack_from("<" + fmt, buf, pos)[0]


def root(buf: bytes) -> "Table":
    """The root table of the FlatBuffer `buf`."""
    return Table(buf, read(buf, "I", 0))


class Table:
    """One table at `pos` in `buf`; fields are addressed by their slot (0 = first in the schema)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - read(buf, "i", pos)
        self.vtable_size = read(buf, "H", self.vtable)
        if self.vtable_size < 4 or self.vtable_size % 2:
            raise FormatError(f"bad vtable at byte {self.vtable}")
        table_size = read(buf, "H", self.vtable + 2)
        if pos + table_size > len(buf):
            raise OutOfBoundsError(f"a table at byte {pos} runs past the end ({len(buf)} bytes)")
        if self.vtable + self.vtable_size > len(buf):
            raise OutOfBoundsError(f"a vtable at byte {self.vtable} runs past the end ({len(buf)} bytes)")

    @property
    def slots(self) -> int:
        """How many fields the vtable describes (later ones are absent)."""
        return (self.vtable_size - 4) // 2

    def field(self, slot: int) -> int | None:
        """Absolute position of the field in `slot`, or None when it is absent."""
        if slot >= self.slots:
            return None
        relative = read(self.buf, "H", self.vtable + 4 + 2 * slot)
        return self.pos + relative if relative else None

    def scalar(self, slot: int, fmt: str, default):
        position = self.field(slot)
        return default if position is None else read(self.buf, fmt, position)

    def target(self, slot: int) -> int | None:
        """Absolute position of the object an offset field points to, or None when absent."""
        position = self.field(slot)
        return None if position is None else position + read(self.buf, "I", position)

    def table(self, slot: int) -> Table | None:
        position = self.target(slot)
        return None if position is None else Table(self.buf, position)

    def string(self, slot: int) -> str | None:
        position = self.target(slot)
        if position is None:
            return None
        start, length = _vector_at(self.buf, position, 1)
        try:
            return self.buf[start:start + length].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"a string at byte {position} is not UTF-8") from None

    def vector(self, slot: int, element_size: int) -> tuple[int, int]:
        """(start of the first element, number of elements) of a vector field; (0, 0) when absent."""
        position = self.target(slot)
        return (0, 0) if position is None else _vector_at(self.buf, position, element_size)

    def scalars(self, slot: int, fmt: str) -> tuple:
        start, length = self.vector(slot, struct.calcsize(fmt))
        return struct.unpack_from(f"<{length}{fmt}", self.buf, start) if length else ()

    def bytes(self, slot: int) -> bytes:
        start, length = self.vector(slot, 1)
        return self.buf[start:start + length]

    def table_positions(self, slot: int) -> list[int]:
        """Absolute positions of the tables a vector of tables points to (not yet parsed)."""
        start, length = self.vector(slot, 4)
        offsets = struct.unpack_from(f"<{length}I", self.buf, start) if length else ()
        return [start + 4 * i + offset for i, offset in enumerate(offsets)]

    def tables(self, slot: int) -> list[Table]:
        return [Table(self.buf, position) for position in self.table_positions(slot)]


def _vector_at(buf: bytes, position: int, element_size: int) -> tuple[int, int]:
    length = read(buf, "I", position)
    start = position + 4
    if start + length * element_size > len(buf):
        raise OutOfBoundsError(f"a vector of {length} at byte {position} runs past the end ({len(buf)} bytes)")
    return start, length
