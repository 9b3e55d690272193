"""A simulated board's persistent state: its flash (as ``esptool read_flash`` would dump it) and eFuses.

File layout: ``OTABSIM1`` magic, a u32 length, a JSON header (identity, eFuse counter, the last update's result),
then the whole flash, zlib-compressed (4 MB of mostly erased flash shrinks to about the size of the apps in it).
Written atomically (temporary file + ``os.replace``), so a crash never leaves half a board.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BoardState", "load_state", "save_state"]

_MAGIC = b"OTABSIM1"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class BoardState:
    flash: bytes
    chip_id: int
    efuse_secure_version: int
    board_id: bytes
    name: str
    address: str
    last_update_result: int = 0
    update_committed: bool = False


def load_state(path: Path) -> BoardState | None:
    """The state saved in ``path``; None if the file does not exist. ``ValueError`` if it is not a state file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ValueError(f"--state {path} is a folder: give the path of a state file (created if missing)") from None
    except OSError as exc:
        raise ValueError(f"--state {path}: cannot read it ({exc.strerror or exc})") from None
    if raw[: len(_MAGIC)] != _MAGIC:
        raise ValueError(f"{path} is not a simulated board state file")
    try:
        (header_len,) = _LENGTH.unpack_from(raw, len(_MAGIC))
        start = len(_MAGIC) + _LENGTH.size
        meta: dict[str, Any] = json.loads(raw[start : start + header_len])
        flash = zlib.decompress(raw[start + header_len :])
        state = BoardState(
            flash=flash,
            chip_id=int(meta["chip_id"]),
            efuse_secure_version=int(meta["efuse_secure_version"]),
            board_id=bytes.fromhex(meta["board_id"]),
            name=str(meta["name"]),
            address=str(meta["address"]),
            last_update_result=int(meta.get("last_update_result", 0)),
            update_committed=bool(meta.get("update_committed", False)),
        )
        expected = int(meta["flash_bytes"])
    except (struct.error, ValueError, KeyError, TypeError, zlib.error) as exc:
        raise ValueError(f"{path} is a damaged simulated board state file: {exc}") from exc
    if len(flash) != expected:
        raise ValueError(f"{path}: the flash image has {len(flash)} bytes, the header says {expected}")
    return state


def save_state(path: Path, state: BoardState) -> None:
    """Write ``state`` to ``path`` atomically."""
    meta = {
        "flash_bytes": len(state.flash),
        "chip_id": state.chip_id,
        "efuse_secure_version": state.efuse_secure_version,
        "board_id": state.board_id.hex(),
        "name": state.name,
        "address": state.address,
        "last_update_result": state.last_update_result,
        "update_committed": state.update_committed,
    }
    header = json.dumps(meta, sort_keys=True).encode()
    payload = _MAGIC + _LENGTH.pack(len(header)) + header + zlib.compress(state.flash, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
