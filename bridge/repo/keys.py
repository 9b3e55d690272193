"""Signing keys of a repository: ed25519, PKCS#8 PEM files with mode 0600 in ``DIR/keys/`` (mode 0700).

``DIR/keys/`` is never inside the served tree ``DIR/public/``. Which key signs which role:

=============== ===================== ===================================================================
file            role(s)               where it should live
=============== ===================== ===================================================================
root.pem        root                  offline after ``init`` (needed again only to rotate keys)
root-backup.pem root (listed, spare)  in a safe: without a second root key a lost root key strands clients
targets.pem     targets               the release engineer (``add``, ``confirm``, ``prune``)
online.pem      snapshot + timestamp  wherever ``bridge repo refresh`` runs on a schedule
=============== ===================== ===================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

from bridge.errors import RepositoryError
from bridge.source._fs import atomic_write

__all__ = ["KEY_FILES", "ROLE_KEYS", "generate_keys", "load_signer"]

#: The key files ``init`` creates.
KEY_FILES = ("root.pem", "root-backup.pem", "targets.pem", "online.pem")
#: Which key file signs each role.
ROLE_KEYS = {"root": "root.pem", "targets": "targets.pem", "snapshot": "online.pem", "timestamp": "online.pem"}


def generate_keys(keys_dir: Path) -> dict[str, CryptoSigner]:
    """Create every key in ``KEY_FILES`` (0600) in a new ``keys_dir`` (0700); return the signers by file name."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    signers = {}
    for name in KEY_FILES:
        signer = CryptoSigner.generate_ed25519()
        atomic_write(keys_dir / name, signer.private_bytes, mode=0o600)
        signers[name] = signer
    return signers


def load_signer(keys_dir: Path, name: str) -> CryptoSigner:
    """Load ``keys_dir/name``; raise RepositoryError naming the file if it is missing or unreadable."""
    path = keys_dir / name
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise RepositoryError(
            f"the signing key {path} is missing",
            hint=f"Run this command where {name} lives (see docs/SERVER.md, 'Keys'), or copy it back into {keys_dir}.",
        ) from None
    except OSError as exc:
        raise RepositoryError(f"cannot read the signing key {path}: {exc}") from exc
    try:
        private = load_pem_private_key(pem, password=None)
        return CryptoSigner(private)
    except (ValueError, TypeError) as exc:
        raise RepositoryError(
            f"{path} is not an unencrypted PKCS#8 private key: {exc}",
            hint="Restore the file written by `bridge repo init`.",
        ) from exc
