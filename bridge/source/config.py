"""Limits and settings of the update source: every untrusted input has its bound here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "SourceConfig", "default_data_dir", "resolve_data_dir"]

#: Environment variable that overrides where trusted roots and caches live.
DATA_DIR_ENV = "BRIDGE_DATA_DIR"


@dataclass(frozen=True)
class SourceConfig:
    timeout_s: float = 30.0
    """Gap timeout for one HTTP read or connect (httpx semantics: time without progress)."""
    transfer_deadline_s: float = 900.0
    """Overall deadline for one file, so a server trickling bytes cannot hold the bridge forever."""
    max_image_bytes: int = 16 * 1024 * 1024
    """Largest firmware image accepted (ESP32 flash tops out at 16 MiB)."""
    max_offline_age_s: float = 7 * 24 * 3600.0
    """An offline push uses a cached release only if it was verified online at most this long ago.

    Keep it at or below the timestamp expiry (7 days by default) so offline use cannot stretch TUF's freeze bound."""
    root_max_bytes: int = 512_000
    timestamp_max_bytes: int = 16_384
    snapshot_max_bytes: int = 2_000_000
    targets_max_bytes: int = 5_000_000
    index_max_bytes: int = 2_000_000
    offer_to_unknown: bool = True
    """Offer the newest release to a board whose running version the server does not know (docs/SERVER.md)."""
    verify_tls: bool | str = True
    """``True`` (system CAs via httpx), ``False`` (never in production) or a path to a CA bundle."""
    user_agent: str = "ota-bridge"
    conditional_metadata: bool = True
    """Send If-None-Match for ``timestamp.json`` (the only file that changes) and reuse it on 304."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "transfer_deadline_s", "max_offline_age_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SourceConfig.{name} must be positive")
        for name in (
            "max_image_bytes",
            "root_max_bytes",
            "timestamp_max_bytes",
            "snapshot_max_bytes",
            "targets_max_bytes",
            "index_max_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SourceConfig.{name} must be positive")


def default_data_dir() -> Path:
    """``$BRIDGE_DATA_DIR`` if set, else the platform's user data folder for ``ota-bridge``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("ota-bridge", appauthor=False))


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
