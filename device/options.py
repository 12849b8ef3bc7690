"""Numeric options, checked one way by every command: a finite number within its range, or one line.

`float()` accepts "nan" and "inf", and nan compares false with every bound, so a range check alone lets
it through (`--threshold nan` then hides every category, `--source-fps inf` spins a core).
"""
from __future__ import annotations

import math

from device.errors import UserError


class OptionError(UserError):
    """A numeric option that is not a finite number, or out of its range."""


def check_number(option: str, value: float | None, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None) -> None:
    """Refuse `value` (None: not given) unless it is finite, ≥ `minimum`, > `above` and ≤ `maximum`."""
    if value is None:
        return
    if not math.isfinite(value):
        raise OptionError(f"{option} {value:.15g}: must be a finite number")
    too_low = (minimum is not None and value < minimum) or (above is not None and value <= above)
    if too_low or (maximum is not None and value > maximum):
        bounds = []
        if minimum is not None:
            bounds.append(f"at least {minimum:g}")
        if above is not None:
            bounds.append("positive" if above == 0 else f"more than {above:g}")
        if maximum is not None:
            bounds.append(f"at most {maximum:g}")
        raise OptionError(f"{option} {value:.15g}: must be {' and '.join(bounds)}")


def check_classifier_options(top_k: int | None, threshold: float | None, threads: int | None) -> None:
    """The classifier's options that need no model, checked as soon as they are known: by `device run`'s
    settings (command line, config file, and a deploy inventory's daemon options) before anything loads, and
    by `Classifier` for the other commands and the API. (Whether top-k fits the labels needs the model.)"""
    check_number("--top-k", top_k, minimum=1)
    check_number("--threshold", threshold, minimum=0, maximum=1)
    check_number("--threads", threads, minimum=1)
