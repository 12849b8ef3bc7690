"""Hostile bytes: mutated real models and random bytes make the reader and writer raise our errors only."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from device.metadata import MetadataError, read_model_info, write_metadata
from tests.metadata.conftest import FLOWERS

CORPUS = Path(__file__).with_name("fuzz-corpus")
HEAD = TAIL = 8192   # where the structure lives: our root and metadata in front, the archive at the end


class Seeds(tuple):
    """The real models mutations start from, shown briefly in hypothesis's reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed models>"


@pytest.fixture(scope="module")
def seeds(reference_model):
    """Model Maker's model (its metadata near the end) and ours (metadata in front)."""
    reference = reference_model.read_bytes()
    return Seeds([reference, write_metadata(reference, FLOWERS, mean=[0], std=[255], name="flowers")])


def positions(size: int):
    """Mostly in the structural head and tail, sometimes anywhere."""
    return st.one_of(st.integers(0, min(HEAD, size - 1)), st.integers(max(0, size - TAIL), size - 1),
                     st.integers(0, size - 1))


@st.composite
def mutations(draw, seeds):
    data = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "word", "splice", "truncate"]))
        at = draw(positions(len(data)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":
            data[at:at + 4] = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), max(0, len(data) - 4),
                                                    draw(st.integers(0, 2**32 - 1))])).to_bytes(4, "little")
        elif kind == "splice":
            source, length = draw(positions(len(data))), draw(st.integers(1, 64))
            data[at:at + length] = data[source:source + length]
        else:
            data = data[:at]
    return bytes(data)


def read_hostile(data: bytes) -> None:
    try:
        info = read_model_info(data)
    except MetadataError as error:
        assert "\n" not in str(error)
    else:
        assert len(info.input_size) == 2


def write_hostile(data: bytes) -> None:
    try:
        written = write_metadata(data, FLOWERS, mean=[0], std=[255], name="fuzz")
    except MetadataError as error:
        assert "\n" not in str(error)
    else:
        read_hostile(written)


def fuzz(seeds: tuple[bytes, ...], examples: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated=mutations(seeds), header=st.sampled_from([b"", b"\0\0\0\0TFL3"]), noise=st.binary(max_size=512))
    def run(mutated, header, noise):
        read_hostile(mutated)
        write_hostile(mutated)
        read_hostile(header + noise)
    run()


@pytest.mark.parametrize("found", sorted(CORPUS.glob("*.bin")), ids=lambda path: path.stem)
def test_what_the_fuzzer_found(found):
    """Inputs that once got past our errors, kept so they stay fixed."""
    read_hostile(found.read_bytes())
    write_hostile(found.read_bytes())


def test_fuzz_quick(seeds):
    fuzz(seeds, 600)


@pytest.mark.slow
def test_fuzz_long(seeds):
    fuzz(seeds, 5000)
