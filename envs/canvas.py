"""Tiny numpy raster drawing for the testbeds' ``rgb_array`` frames.

Gymnasium's classic-control renderers need pygame, which ruagent does not depend on; the
testbeds only need filled rectangles, discs and thick segments, drawn here on an
``(H, W, 3)`` uint8 canvas with pixel-centre sampling (no anti-aliasing, deterministic).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Canvas"]

Colour = tuple[int, int, int]


class Canvas:
    """An ``(height, width, 3)`` uint8 image; coordinates are pixels, origin top-left, (x right, y down).

    :param height: frame height H in pixels.
    :param width: frame width W in pixels.
    :param background: RGB fill.
    """

    def __init__(self, height: int, width: int, background: Colour = (255, 255, 255)) -> None:
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)
        self.pixels[:] = background
        # Pixel-centre coordinates, shared by every shape test.
        self._ys, self._xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.pixels.shape

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        """Fill the axis-aligned rectangle [x0, x1) x [y0, y1) (clipped to the frame)."""
        h, w, _ = self.pixels.shape
        c0, c1 = int(np.clip(round(min(x0, x1)), 0, w)), int(np.clip(round(max(x0, x1)), 0, w))
        r0, r1 = int(np.clip(round(min(y0, y1)), 0, h)), int(np.clip(round(max(y0, y1)), 0, h))
        self.pixels[r0:r1, c0:c1] = colour

    def disc(self, cx: float, cy: float, radius: float, colour: Colour) -> None:
        """Fill the disc of ``radius`` pixels centred at (cx, cy)."""
        inside = (self._xs - cx) ** 2 + (self._ys - cy) ** 2 <= radius**2
        self.pixels[inside] = colour

    def segment(self, x0: float, y0: float, x1: float, y1: float, width: float, colour: Colour) -> None:
        """Fill every pixel within ``width / 2`` of the segment (x0, y0)-(x1, y1)."""
        dx, dy = x1 - x0, y1 - y0
        length_sq = max(dx * dx + dy * dy, 1e-12)
        # Projection of each pixel centre onto the segment, clamped to its ends.
        t = np.clip(((self._xs - x0) * dx + (self._ys - y0) * dy) / length_sq, 0.0, 1.0)
        dist_sq = (self._xs - (x0 + t * dx)) ** 2 + (self._ys - (y0 + t * dy)) ** 2
        self.pixels[dist_sq <= (width / 2) ** 2] = colour
