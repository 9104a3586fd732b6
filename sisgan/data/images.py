"""Decoding source images into square RGB arrays, with reasons for the ones we refuse."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class RejectedImage(Exception):
    """An input image that cannot be used; the message is the reason recorded in the manifest."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels go on white (plain convert would turn them black)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode == "CMYK":
        # JPEG CMYK from Adobe tools is stored inverted; Pillow's converter accounts for it.
        return im.convert("RGB")
    return im.convert("RGB")


def square_resize(im: Image.Image, size: int) -> np.ndarray:
    """Centre square crop, then bicubic resize to [size, size, 3] uint8."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(im, dtype=np.uint8)


def load_image(source: str | Path | bytes, size: int, max_pixels: int) -> np.ndarray:
    """Read an image file (or bytes) into a square [size, size, 3] uint8 array.

    Raises RejectedImage for unreadable, truncated, non-image or oversized inputs.
    """
    try:
        fh = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as e:
        raise RejectedImage(f"cannot open file: {e.strerror or e}") from None
    try:
        with fh, Image.open(fh) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise RejectedImage(f"image is {w}x{h} = {w * h} pixels, over data.max_pixels = {max_pixels}")
            if w < 1 or h < 1:
                raise RejectedImage(f"image has an empty size {w}x{h}")
            # JPEG: decode at a reduced scale in the DCT domain (still >= size on the short side).
            side = min(w, h)
            im.draft("RGB", (max(1, size * w // side), max(1, size * h // side)))
            im.load()
            return square_resize(_to_rgb(im), size)
    except RejectedImage:
        raise
    except UnidentifiedImageError:
        raise RejectedImage("not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise RejectedImage(f"image too large: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise RejectedImage(f"corrupt or truncated image: {e}") from None


def center_crop(arr: np.ndarray, size: int, channels_last: bool = True) -> np.ndarray:
    """Centre size x size crop of [..., S, S, C] arrays (or [..., S, S] masks with channels_last=False).

    The evaluation-time view of a training crop: the same region for sources, outputs and masks.
    """
    s = arr.shape[-3] if channels_last else arr.shape[-1]
    o = (s - size) // 2
    return arr[..., o : o + size, o : o + size, :] if channels_last else arr[..., o : o + size, o : o + size]


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
