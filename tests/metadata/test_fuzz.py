"""Hostile bytes: mutated real models and random bytes make the reader and writer raise our errors only."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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


class Recipe(NamedTuple):
    """Which seed to start from and the mutations to apply to it, in order: ("flip", at, bit), ("byte", at,
    value), ("word", at, value), ("splice", at, (source, length)) or ("truncate", at, None).

    The strategy returns this, not the mutated bytes: hypothesis keeps every drawn bytes value (for
    shrinking) in a cache of up to 10,000 test cases: 5,000 mutated 4 MB models peaked at 15 GB. A recipe is
    a few dozen bytes, and reads well in a failure report.
    """

    seed: int
    steps: tuple[tuple[str, int, object], ...]

    def apply(self, seeds: tuple[bytes, ...]) -> bytes:
        data = bytearray(seeds[self.seed])
        for step in self.steps:
            data = mutate(data, *step)
        return bytes(data)

    def __repr__(self) -> str:
        steps = (" ".join(str(part) for part in step if part is not None) for step in self.steps)
        return f"<seed {self.seed}: {', '.join(steps)}>"


def mutate(data: bytearray, kind: str, at: int, argument) -> bytearray:
    """`data` after one mutation step (changed in place, or a new bytearray for a truncation)."""
    if kind == "flip":
        data[at] ^= 1 << argument
    elif kind == "byte":
        data[at] = argument
    elif kind == "word":
        data[at:at + 4] = argument.to_bytes(4, "little")
    elif kind == "splice":
        source, length = argument
        data[at:at + length] = data[source:source + length]
    else:
        data = data[:at]
    return data


@st.composite
def mutations(draw, seeds):
    """A Recipe of 1 to 4 mutations; each step is drawn knowing the length the steps before it left."""
    seed = draw(st.integers(0, len(seeds) - 1))
    data, steps = bytearray(seeds[seed]), []
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "word", "splice", "truncate"]))
        at = draw(positions(len(data)))
        if kind == "flip":
            argument = draw(st.integers(0, 7))
        elif kind == "byte":
            argument = draw(st.integers(0, 255))
        elif kind == "word":
            argument = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), max(0, len(data) - 4),
                                             draw(st.integers(0, 2**32 - 1))]))
        elif kind == "splice":
            argument = draw(positions(len(data))), draw(st.integers(1, 64))
        else:
            argument = None
        steps.append((kind, at, argument))
        data = mutate(data, kind, at, argument)
    return Recipe(seed, tuple(steps))


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
    @given(recipe=mutations(seeds), header=st.sampled_from([b"", b"\0\0\0\0TFL3"]), noise=st.binary(max_size=512))
    def run(recipe, header, noise):
        mutated = recipe.apply(seeds)
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
