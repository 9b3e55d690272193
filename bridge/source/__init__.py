"""The bridge's side of the update server: trusted roots, "is there something newer?", verified downloads.

Plain library code: httpx and python-tuf only (no typer, rich or bumble). The server is a TUF repository made by
``bridge repo`` (:mod:`bridge.repo`); the rules for "newer" are in :mod:`bridge.source.versions` and
docs/SERVER.md.

Typical use::

    trust_server("https://fw.example.com", Path("root.json").read_bytes(), data_dir=data)   # once
    async with UpdateSource("https://fw.example.com", data_dir=data) as source:
        check = await source.check(board, allow_offline=True)
        if check.release is not None:
            image = await source.download(check.release, progress=print)
"""

from __future__ import annotations

from bridge.source.config import DATA_DIR_ENV, SourceConfig, default_data_dir
from bridge.source.errors import (
    BadSignatureError,
    DownloadTooLargeError,
    ExpiredMetadataError,
    HTTPStatusError,
    ImageMismatchError,
    MalformedReleaseError,
    NotTrustedError,
    ReleaseGoneError,
    RollbackError,
    RootFingerprintError,
    ServerTimeoutError,
    ServerUnreachableError,
    StaleCacheError,
    TamperedError,
    TLSError,
    WrongRootError,
)
from bridge.source.release import BoardIdentity, Release
from bridge.source.source import CachedRelease, UpdateCheck, UpdateSource
from bridge.source.trust import TrustedServer, root_fingerprint, trust_server, trusted_server
from bridge.source.versions import UpdateDecision, UpdateStatus, decide, version_key

__all__ = [
    "DATA_DIR_ENV",
    "BadSignatureError",
    "BoardIdentity",
    "CachedRelease",
    "DownloadTooLargeError",
    "ExpiredMetadataError",
    "HTTPStatusError",
    "ImageMismatchError",
    "MalformedReleaseError",
    "NotTrustedError",
    "Release",
    "ReleaseGoneError",
    "RollbackError",
    "RootFingerprintError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "SourceConfig",
    "StaleCacheError",
    "TLSError",
    "TamperedError",
    "TrustedServer",
    "UpdateCheck",
    "UpdateDecision",
    "UpdateSource",
    "UpdateStatus",
    "WrongRootError",
    "decide",
    "default_data_dir",
    "root_fingerprint",
    "trust_server",
    "trusted_server",
    "version_key",
]
