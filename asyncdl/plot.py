"""A histogram as a PNG file, drawn without a plotting library (zlib and struct only).

asyncdl's dependencies stay small, so ``inspect --plot`` rasterises the bars itself: one bar per
bin scaled to the tallest, on a white canvas with a baseline and tick marks every ten points of
score. No text is drawn (no font is available); the terminal histogram carries the numbers.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from .errors import StorageError
from .inspect import Histogram

__all__ = ["histogram_png", "write_histogram_png"]

_WHITE = (255, 255, 255)
_BAR = (31, 119, 180)
_AXIS = (60, 60, 60)


def histogram_png(histogram: Histogram, *, width: int = 800, height: int = 400) -> bytes:
    """The PNG bytes of ``histogram`` drawn as bars."""
    margin = 20
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    pixels = [[_WHITE] * width for _ in range(height)]
    tallest = max(histogram.counts, default=0) or 1
    bins = max(len(histogram.counts), 1)
    for index, count in enumerate(histogram.counts):
        left = margin + plot_w * index // bins + 1
        right = margin + plot_w * (index + 1) // bins - 1
        top = margin + plot_h - plot_h * count // tallest
        for y in range(top, margin + plot_h):
            row = pixels[y]
            for x in range(left, right):
                row[x] = _BAR
    baseline = margin + plot_h
    for x in range(margin, margin + plot_w):
        pixels[baseline][x] = _AXIS
    low, high = histogram.edges[0], histogram.edges[-1]
    span = (high - low) or 1.0
    tick = low
    while tick <= high + 1e-9:
        x = margin + round((tick - low) / span * (plot_w - 1))
        for y in range(baseline, min(height, baseline + 6)):
            pixels[y][x] = _AXIS
        tick += 10.0
    return _encode(pixels, width, height)


def _encode(pixels: list[list[tuple[int, int, int]]], width: int, height: int) -> bytes:
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def write_histogram_png(histogram: Histogram, path: Path) -> None:
    """Write the picture; a failure to write is a StorageError naming the path."""
    try:
        path.write_bytes(histogram_png(histogram))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
