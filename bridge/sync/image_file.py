"""A local image file read in small pieces near the send cursor, hashed off the event loop.

Memory stays bounded by what is in flight: the engine never holds the whole image, only the current window.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import ImageError

__all__ = ["ImageFile", "ImageReader", "sha256_file"]

_HASH_BLOCK_BYTES = 256 * 1024


def _sha256_blocking(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


async def sha256_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of ``path``, computed in a worker thread."""
    try:
        return await asyncio.to_thread(_sha256_blocking, path)
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}", code="unreadable") from exc


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image on disk with its size and SHA-256; :meth:`read` returns one slice near the send cursor."""

    path: Path
    size: int
    sha256: str

    @classmethod
    async def open(cls, path: Path) -> ImageFile:
        sha256, size = await sha256_file(path)
        return cls(path=path, size=size, sha256=sha256)

    def reader(self, *, block_bytes: int = 16 * 1024) -> ImageReader:
        return ImageReader(self, block_bytes=block_bytes)


class ImageReader:
    """Reads slices of an :class:`ImageFile` through one cached block (a small ``pread``: fine on the event loop).

    Use as a context manager; the file descriptor is closed on exit.
    """

    def __init__(self, image: ImageFile, *, block_bytes: int) -> None:
        if block_bytes < 512:
            raise ValueError("block_bytes must be >= 512")
        self._image = image
        self._block_bytes = block_bytes
        self._fd: int | None = None
        self._block_offset = 0
        self._block = b""

    def __enter__(self) -> ImageReader:
        try:
            self._fd = os.open(self._image.path, os.O_RDONLY)
        except OSError as exc:
            raise ImageError(f"cannot read {self._image.path}: {exc.strerror or exc}", code="unreadable") from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of the image (shorter at its end)."""
        size = self._image.size
        if offset < 0 or length < 0 or offset > size:
            raise ValueError(f"read outside the image: offset {offset}, length {length}, size {size}")
        length = min(length, size - offset)
        end = offset + length
        if not (self._block_offset <= offset and end <= self._block_offset + len(self._block)):
            if self._fd is None:
                raise RuntimeError("ImageReader used outside its `with` block")
            self._block_offset = offset
            self._block = os.pread(self._fd, max(self._block_bytes, length), offset)
            if len(self._block) < length:
                raise ImageError(f"{self._image.path} changed while it was being sent", code="unreadable")
        start = offset - self._block_offset
        return self._block[start : start + length]
