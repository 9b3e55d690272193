"""Trust bootstrap: which root metadata this bridge trusts for which server, and where its caches live.

The trusted root is stored per server URL under ``<data_dir>/servers/<host>-<hash>/``::

    server.json          url, root fingerprint, root version, when it was trusted
    trusted-root.json    the exact root bytes passed to ngclient as ``bootstrap`` on every refresh
    metadata/            ngclient's verified metadata (root history, timestamp, snapshot, targets)
    http/                the last timestamp.json and its ETag (conditional requests)
    index/               the verified release index
    images/              verified images, ``<sha256>.bin``, and ``records/`` saying when each was verified
    partial/             unfinished downloads (``<sha256>.part``), resumed by the next download

The fingerprint of a root is the SHA-256 of the exact bytes of its file, so a user can compare it with
``sha256sum public/metadata/1.root.json`` on the release engineer's machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from bridge.errors import ConfigError, SecurityError, TrustError, UsageError
from bridge.source._fs import atomic_write, file_lock
from bridge.source.config import resolve_data_dir
from bridge.source.errors import NotTrustedError, RootFingerprintError
from bridge.source.fetcher import http_status_error, translate_httpx_error

__all__ = [
    "TrustedServer",
    "load_trusted_root",
    "normalise_url",
    "parse_root",
    "root_fingerprint",
    "server_dir",
    "trust_server",
    "trusted_server",
]

_FINGERPRINT_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


@dataclass(frozen=True)
class TrustedServer:
    url: str
    fingerprint: str
    root_version: int
    root_expires: str
    trusted_at: str
    path: Path
    changed: bool = True
    """False when the same root was already trusted (nothing was written)."""


def normalise_url(url: str) -> str:
    """``url`` without a trailing slash, with scheme and host in lower case; raises TrustError if unusable."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise TrustError(f"invalid server URL {url!r}: {exc}", hint="Use an http:// or https:// URL.") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TrustError(f"invalid server URL {url!r}", hint="Use an http:// or https:// URL.")
    return str(parsed.copy_with(query=None, fragment=None)).rstrip("/")


def server_dir(data_dir: Path, url: str) -> Path:
    """The folder holding everything this bridge keeps for the server at ``url``."""
    normal = normalise_url(url)
    host = httpx.URL(normal)
    label = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{host.host}{'_' + str(host.port) if host.port else ''}")
    digest = hashlib.sha256(normal.encode()).hexdigest()[:12]
    return data_dir / "servers" / f"{label}-{digest}"


def root_fingerprint(root_bytes: bytes) -> str:
    """SHA-256 (hex) of the exact root file bytes."""
    return hashlib.sha256(root_bytes).hexdigest()


def _check_fingerprint(value: str) -> str:
    match = _FINGERPRINT_RE.match(value.strip().lower().replace(" ", ""))
    if match is None:
        raise UsageError(
            f"invalid fingerprint {value!r}: expected 64 hex digits (a SHA-256)",
            hint="Give the 64 hex digits `bridge repo init` printed (optionally prefixed with 'sha256:').",
        )
    return match.group(1)


def parse_root(root_bytes: bytes) -> Metadata[Root]:
    """Parse root metadata and check it is signed by its own root keys.

    Raises :class:`UsageError` (exit 2) for a file that is not TUF root metadata at all (the wrong file was
    given) and :class:`SecurityError` (exit 6) for root metadata whose signatures do not verify (tampered).
    """
    try:
        md = Metadata[Root].from_bytes(root_bytes)
    except Exception as exc:  # DeserializationError and friends
        try:
            json.loads(root_bytes)
            what = f"not TUF root metadata ({exc})"
        except ValueError:
            what = "not JSON (a root file is JSON)"
        raise UsageError(
            f"the root file is {what}", hint="Pass metadata/1.root.json of the repository (`bridge repo init`)."
        ) from exc
    if not isinstance(md.signed, Root):
        raise UsageError(
            f"this is {md.signed.type} metadata, not root metadata", hint="Pass metadata/1.root.json of the repository."
        )
    try:
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise SecurityError(
            f"the root metadata is not signed by its own root keys (tampered?): {exc}",
            hint="Do not trust it: get metadata/1.root.json again from the release engineer.",
        ) from exc
    return md


def _download_root(url: str, client: httpx.Client | None, max_bytes: int) -> bytes:
    root_url = f"{url}/metadata/1.root.json"
    own = client is None
    http = client or httpx.Client(timeout=30.0, follow_redirects=True)
    try:
        with http.stream("GET", root_url) as response:
            if response.status_code != 200:
                raise http_status_error(root_url, response.status_code)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise TrustError(f"{root_url} is larger than {max_bytes} bytes: not a root file")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise translate_httpx_error(exc, root_url, timeout_s=30.0) from exc
    finally:
        if own:
            http.close()


def _read_server_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / "server.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trust_server(
    url: str,
    root_json: bytes | None,
    *,
    fingerprint: str | None = None,
    data_dir: Path | str | None = None,
    replace: bool = False,
    client: httpx.Client | None = None,
    max_root_bytes: int = 512_000,
) -> TrustedServer:
    """Store the root this bridge trusts for ``url``.

    Give ``root_json`` (the file from the release engineer), or ``fingerprint`` alone (then
    ``URL/metadata/1.root.json`` is downloaded and must have that fingerprint), or both (they must agree).
    Trusting another root for a server that already has one needs ``replace=True``; replacing wipes what was
    cached under the old root.
    """
    data = resolve_data_dir(data_dir)
    try:
        normal = normalise_url(url)
    except TrustError as exc:  # a typo on the command line, not a server problem
        raise UsageError(exc.message, hint=exc.hint) from exc
    expected = _check_fingerprint(fingerprint) if fingerprint else None
    if root_json is None:
        if expected is None:
            raise TrustError(
                "give the root metadata file or its fingerprint",
                hint="`bridge trust URL --root root.json`, or `--fingerprint HEX` to download and check it.",
            )
        root_json = _download_root(normal, client, max_root_bytes)
    actual = root_fingerprint(root_json)
    if expected is not None and actual != expected:
        raise RootFingerprintError(
            f"the root metadata has fingerprint {actual}, not the expected {expected}",
            hint="Ask the release engineer for the fingerprint `bridge repo init` printed, and check the URL.",
        )
    md = parse_root(root_json)
    folder = server_dir(data, normal)
    try:
        return _store_root(folder, normal, root_json, actual, md, replace=replace)
    except OSError as exc:
        raise ConfigError(
            f"cannot use the data folder {data}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            hint="Point data_dir in config.toml, BRIDGE_DATA_DIR or --data-dir at a folder this user can write.",
        ) from exc


def _store_root(
    folder: Path, normal: str, root_json: bytes, actual: str, md: Metadata[Root], *, replace: bool
) -> TrustedServer:
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        current = _read_server_json(folder)
        if current is not None and current.get("fingerprint") == actual:
            return TrustedServer(
                url=normal,
                fingerprint=actual,
                root_version=int(current.get("root_version", md.signed.version)),
                root_expires=str(current.get("root_expires", "")),
                trusted_at=str(current.get("trusted_at", "")),
                path=folder,
                changed=False,
            )
        if current is not None and not replace:
            raise UsageError(
                f"{normal} is already trusted with another root (fingerprint {current.get('fingerprint')})",
                hint="If the release engineer really replaced the repository's root, run the command again with "
                "--replace (this drops what was cached under the old root).",
            )
        if current is not None:
            for child in folder.iterdir():
                if child.name == ".lock":
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        expires = md.signed.expires.isoformat()
        atomic_write(folder / "trusted-root.json", root_json)
        record = {
            "url": normal,
            "fingerprint": actual,
            "root_version": md.signed.version,
            "root_expires": expires,
            "trusted_at": now,
        }
        atomic_write(folder / "server.json", json.dumps(record, indent=2).encode())
    return TrustedServer(normal, actual, md.signed.version, expires, now, folder)


def trusted_server(url: str, *, data_dir: Path | str | None = None) -> TrustedServer | None:
    """What is trusted for ``url``, or ``None``."""
    folder = server_dir(resolve_data_dir(data_dir), url)
    record = _read_server_json(folder)
    if record is None or not (folder / "trusted-root.json").is_file():
        return None
    return TrustedServer(
        url=str(record.get("url", normalise_url(url))),
        fingerprint=str(record.get("fingerprint", "")),
        root_version=int(record.get("root_version", 0)),
        root_expires=str(record.get("root_expires", "")),
        trusted_at=str(record.get("trusted_at", "")),
        path=folder,
        changed=False,
    )


def load_trusted_root(folder: Path, url: str) -> bytes:
    """The trusted root bytes stored in ``folder``; raises NotTrustedError when there is none."""
    try:
        return (folder / "trusted-root.json").read_bytes()
    except FileNotFoundError:
        raise NotTrustedError(
            f"no trusted root for {url}",
            hint=f"Run `bridge trust {url} --root root.json` with the root file from your release engineer.",
        ) from None
    except OSError as exc:
        raise TrustError(f"cannot read the trusted root for {url}: {exc}") from exc
