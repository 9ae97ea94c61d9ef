"""Animated clips of a segment's ``rgb_array`` frames, for the browser labeller (Pillow, animated GIF).

A segment's frames are (T, H, W, 3) uint8 with a mask (T,) that is False on padding (an episode
that ended inside the segment); the clip shows the valid steps only, scaled up by an integer
factor (nearest neighbour, so gridworld cells stay sharp), each frame with a caption band
``step t / n`` under it, and loops. GIF because every browser plays it without script and Pillow
writes it everywhere; colours are reduced to a 256-colour palette per frame, which the testbeds'
flat-coloured frames survive unchanged.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

__all__ = ["clip_scale", "encode_clip"]

#: the caption band under every frame, in pixels
CAPTION_HEIGHT = 22


def clip_scale(height: int, width: int, target: int = 360) -> int:
    """Integer upscale factor that brings the longer side of an H × W frame near ``target`` pixels (≥ 1)."""
    return max(1, round(target / max(height, width, 1)))


@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)  # Pillow >= 10.1: a scalable font
    except TypeError:  # older Pillow: the small bitmap font
        return ImageFont.load_default()


def encode_clip(frames: np.ndarray, mask: np.ndarray | None = None, fps: float = 6.0, target: int = 360) -> bytes:
    """An animated GIF of one segment.

    :param frames: (T, H, W, 3) uint8 ``rgb_array`` frames (an (T, H, W) grey or (T, H, W, 4) RGBA
        array is accepted too).
    :param mask: (T,) bool, False on padding (those frames are left out); None: every frame.
    :param fps: frames per second of the animation.
    :param target: the longer side of a scaled frame, roughly, in pixels (integer scale factor, ≥ 1).
    :return: the GIF file's bytes.
    """
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (3, 4)):
        raise ValueError(
            f"clip frames must be rgb_array images (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}; make the "
            "env with render_mode='rgb_array' (ansi text frames cannot be animated in the browser)"
        )
    valid = frames if mask is None else frames[np.asarray(mask, dtype=bool)]
    if len(valid) == 0:
        raise ValueError("a clip needs at least one valid (unpadded) frame")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    height, width = valid.shape[1:3]
    scale = clip_scale(height, width, target)
    size = (width * scale, height * scale)
    images = []
    for t, frame in enumerate(valid):
        picture = Image.fromarray(frame).convert("RGB").resize(size, Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (size[0], size[1] + CAPTION_HEIGHT), (255, 255, 255))
        canvas.paste(picture, (0, 0))
        ImageDraw.Draw(canvas).text((4, size[1] + 3), f"step {t + 1} / {len(valid)}", fill=(0, 0, 0), font=_font())
        images.append(canvas)
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue()
