"""The one image reader: every frame iterate decodes goes through :func:`read_image`.

* Any file name works, including one that is not valid UTF-8 (read as bytes, decoded by OpenCV from memory:
  ``cv2.imread`` on such a path can crash the process).
* The header's size is checked before decoding (a PNG claiming 100,000 × 100,000 pixels is refused, not
  allocated); degenerate frames (a side under 16 px, an aspect beyond 20:1) are refused after decoding, by
  :func:`size_problem`, which ingest applies to the frames it cuts from videos too.
* A refusal is a reason string, never an exception: callers name the file and skip it.
"""

from __future__ import annotations

import io
import os
import threading
import warnings

import cv2
import numpy as np

MAX_PIXELS = 80_000_000  # ~ 10,000 × 8,000: larger frames are refused before they are decoded
MIN_SIDE = 16
MAX_ASPECT = 20.0
_PIL_LOCK = threading.Lock()

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def printable(path) -> str:
    """A path as text that can be printed and stored: non-UTF-8 bytes shown as escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def nameable(path) -> bool:
    """True when the path is valid UTF-8 (it can be stored in the ledger and sent to Label Studio)."""
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def size_problem(width: int, height: int) -> str | None:
    if width * height > MAX_PIXELS:
        return f"{width}×{height} pixels is more than the {MAX_PIXELS // 1_000_000} megapixel limit"
    if min(width, height) < MIN_SIDE:
        return f"{width}×{height} pixels: a side is under {MIN_SIDE} px"
    if max(width, height) / max(1, min(width, height)) > MAX_ASPECT:
        return f"{width}×{height} pixels: aspect beyond {MAX_ASPECT:g}:1"
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file's header alone, without decoding the pixels (None: unknown format)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib brings Pillow
        return None
    with _PIL_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the limit is checked by the caller
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as im:
                    return im.size
        except Exception:  # noqa: BLE001 - not an image PIL knows: OpenCV decides below
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def read_bytes(path) -> bytes | None:
    try:
        with open(os.fsencode(path) if isinstance(path, str) else path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def decode(data: bytes | None, flags: int = cv2.IMREAD_COLOR) -> tuple[np.ndarray | None, str | None]:
    """Bytes → (image, None) or (None, why it was refused)."""
    if not data:
        return None, "empty or unreadable file"
    hdr = _header_size(data)
    if hdr is not None and hdr[0] * hdr[1] > MAX_PIXELS:
        return None, size_problem(*hdr)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        return None, f"cannot decode ({str(e).strip().splitlines()[-1][:120]})"
    if img is None:
        return None, "not a decodable image"
    why = size_problem(img.shape[1], img.shape[0])
    return (None, why) if why else (img, None)


def read_image(path, flags: int = cv2.IMREAD_COLOR) -> tuple[np.ndarray | None, str | None]:
    """Read and decode one frame → (image, None) or (None, why it was refused)."""
    return decode(read_bytes(path), flags)
