"""TUF metadata files of a repository, on top of python-tuf's ``tuf.repository.Repository``.

python-tuf's class gives ``edit_*()`` context managers and ``do_snapshot()`` / ``do_timestamp()``; this subclass
says where files live and how they are signed (notes/tuf-for-firmware.md §1):

* ``open(role)`` loads the newest version on disk (``N.root.json``, ``N.targets.json``, ``N.snapshot.json``,
  ``timestamp.json``) or a fresh version-0 object;
* ``close(role, md)`` bumps the version, sets the expiry from the policy, signs with the role's key and writes
  the file atomically (consistent snapshots: every version has its own file, only ``timestamp.json`` is rewritten).

``tuf.repository`` is not yet part of python-tuf's stable API; tuf is pinned to ``>=7.0,<8``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.repository import Repository as TufRepository  # type: ignore[attr-defined]

from bridge.source._fs import atomic_write

__all__ = ["MetadataStore"]

_ROLE_CLASSES = {"root": Root, "targets": Targets, "snapshot": Snapshot, "timestamp": Timestamp}


class MetadataStore(TufRepository):
    """The signed metadata in ``metadata_dir`` (``DIR/public/metadata``)."""

    def __init__(
        self,
        metadata_dir: Path,
        *,
        signers: Callable[[str], list[Signer]],
        lifetime: Callable[[str], timedelta],
        clock: Callable[[], datetime],
    ) -> None:
        self.metadata_dir = metadata_dir
        self._signers = signers
        self._lifetime = lifetime
        self._clock = clock

    # -- files -------------------------------------------------------------------------------------------------
    def versions(self, role: str) -> list[int]:
        """Versions of ``role`` present on disk (not for timestamp), ascending."""
        pattern = re.compile(rf"^(\d+)\.{re.escape(role)}\.json$")
        found = []
        if self.metadata_dir.is_dir():
            for path in self.metadata_dir.iterdir():
                match = pattern.match(path.name)
                if match:
                    found.append(int(match.group(1)))
        return sorted(found)

    def path_of(self, role: str, version: int | None = None) -> Path:
        if role == Timestamp.type:
            return self.metadata_dir / "timestamp.json"
        if version is None:
            existing = self.versions(role)
            version = existing[-1] if existing else 0
        return self.metadata_dir / f"{version}.{role}.json"

    def _metafile(self, role: str) -> MetaFile:
        path = self.path_of(role)
        data = path.read_bytes()
        version = Metadata.from_bytes(data).signed.version
        return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})

    # -- tuf.repository.Repository -----------------------------------------------------------------------------
    def open(self, role: str) -> Metadata[Any]:
        path = self.path_of(role)
        if path.is_file():
            return Metadata.from_bytes(path.read_bytes())
        signed = _ROLE_CLASSES[role]()
        signed.version = 0
        return Metadata(signed)

    def close(self, role: str, md: Metadata[Any]) -> None:
        md.signed.version += 1
        md.signed.expires = self._clock() + self._lifetime(role)
        md.signatures.clear()
        for signer in self._signers(role):
            md.sign(signer, append=True)
        data = md.to_bytes()
        if role == Timestamp.type:
            atomic_write(self.path_of(role), data)
            return
        atomic_write(self.metadata_dir / f"{md.signed.version}.{role}.json", data)
        if role == Root.type:
            # For people (and `bridge trust --root`); ngclient itself only asks for N.root.json.
            atomic_write(self.metadata_dir / "root.json", data)

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        return {"targets.json": self._metafile(Targets.type)}

    @property
    def snapshot_info(self) -> MetaFile:
        return self._metafile(Snapshot.type)
