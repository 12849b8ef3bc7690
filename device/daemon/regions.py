"""Regions of a frame (`--region NAME=x,y,w,h`), each classified as an image of its own: two pots, one camera.

Coordinates are fractions of the frame, so a region means the same part of the view at any resolution.
Names go into MQTT topics and Home Assistant ids, hence the narrow alphabet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from device.errors import UserError

NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class RegionError(UserError):
    """A region that cannot be used: malformed, outside the frame, of zero size, or a name given twice."""


@dataclass(frozen=True)
class Region:
    name: str
    x: float
    y: float
    w: float
    h: float

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels (a view, not a copy), at least one pixel each way."""
        height, width = image.shape[:2]
        left, top = int(round(self.x * width)), int(round(self.y * height))
        right = max(left + 1, int(round((self.x + self.w) * width)))
        bottom = max(top + 1, int(round((self.y + self.h) * height)))
        return image[top:min(bottom, height), left:min(right, width)]

    @property
    def box(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]


def parse_region(text: str) -> Region:
    """`NAME=x,y,w,h` with fractions of the frame, as in `pot1=0,0,0.5,1`."""
    usage = f"--region {text}: expected NAME=x,y,w,h with fractions of the frame, as in left=0,0,0.5,1"
    name, equals, numbers = text.partition("=")
    name = name.strip()
    if not equals:
        raise RegionError(usage)
    if not NAME.fullmatch(name):
        raise RegionError(f"--region {text}: the name may use letters, digits, - and _ (up to 32)")
    try:
        x, y, w, h = (float(part) for part in numbers.split(","))
    except ValueError:
        raise RegionError(usage) from None
    if w <= 0 or h <= 0:
        raise RegionError(f"--region {text}: width and height must be above 0")
    if x < 0 or y < 0 or x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
        raise RegionError(f"--region {text}: outside the frame (x + w and y + h must be at most 1)")
    return Region(name, x, y, w, h)


def parse_regions(texts: Iterable[str]) -> tuple[Region, ...]:
    regions = tuple(parse_region(text) for text in texts)
    names = [region.name for region in regions]
    for name in names:
        if names.count(name) > 1:
            raise RegionError(f"--region {name}: two regions with one name")
    return regions
