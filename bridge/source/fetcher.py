"""HTTP for the update source: an httpx-based fetcher for python-tuf's ngclient, and resumable image downloads.

Two rules from python-tuf shape ``_fetch`` (see notes/tuf-for-firmware.md §4):

* ``FetcherInterface.fetch`` only wraps exceptions raised by the ``_fetch`` call itself, so ``_fetch`` opens the
  response eagerly and returns a generator; errors while the body streams are translated inside that generator.
* A missing file must raise ``DownloadHTTPError`` carrying the real status code: the root-rotation walk stops only
  on 403/404.

Errors cross into ngclient as subclasses of python-tuf's own download errors that carry the bridge error to raise
(:class:`FetchFailed`), so the update source can show the user "cannot connect to host: ..." rather than "Failed to
download".

``timestamp.json`` is the only file of a TUF repository that changes. When ``conditional`` is on, the fetcher keeps
its last body and ETag on disk and asks again with ``If-None-Match``; a 304 hands ngclient the very bytes it
already trusts. An ETag is kept only if it is strong and, when the response has ``Last-Modified``, the file was at
least 2 s old when served (nginx's ETag is mtime-seconds + size, so two rewrites in one second can share one).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.ngclient.fetcher import FetcherInterface

from bridge.errors import BridgeError, DownloadError
from bridge.source._fs import atomic_write
from bridge.source.errors import (
    DownloadTooLargeError,
    HTTPStatusError,
    ServerTimeoutError,
    ServerUnreachableError,
    TLSError,
)

__all__ = ["FetchFailed", "FetchHTTPError", "HttpxFetcher", "translate_httpx_error"]

logger = logging.getLogger(__name__)

#: RFC 9110 8.8.2.2: a Last-Modified less than this before the response's Date is a weak validator.
_STRONG_VALIDATOR_AGE_S = 2.0
_CONDITIONAL_MAX_BYTES = 64 * 1024


class FetchFailed(tuf_exc.DownloadError):
    """A python-tuf download error that carries the bridge error to show."""

    def __init__(self, error: BridgeError) -> None:
        super().__init__(error.message)
        self.bridge_error = error


class FetchHTTPError(tuf_exc.DownloadHTTPError):
    """python-tuf's HTTP status error (its ``status_code`` drives the root walk) with the bridge error attached."""

    def __init__(self, error: HTTPStatusError) -> None:
        super().__init__(error.message, error.status_code)
        self.bridge_error = error


def _find_in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _host(url: str) -> str:
    """``host:port`` of ``url`` (the scheme's default port when the URL names none): what a user checks first."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        return url
    if not parsed.host:
        return url
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return f"{host}:{port}" if port else host


def translate_httpx_error(exc: Exception, url: str, *, timeout_s: float) -> DownloadError:
    """One clear :class:`DownloadError` leaf for an httpx failure on ``url``."""
    host = _host(url)
    if isinstance(exc, httpx.TimeoutException):
        return ServerTimeoutError(f"{host} did not answer within {timeout_s:g} s (fetching {url})")
    ssl_error = _find_in_chain(exc, ssl.SSLError)
    if ssl_error is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        reason = getattr(ssl_error, "verify_message", None) or getattr(ssl_error, "reason", None) or str(exc)
        return TLSError(f"the TLS connection to {host} failed: {reason}")
    if isinstance(exc, httpx.ConnectError):
        return ServerUnreachableError(
            f"cannot connect to {host}: {exc}",
            hint="Check the server URL and that you are online.",
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return DownloadError(f"cannot fetch {url!r}: {exc}", hint="Use an http:// or https:// URL.")
    return DownloadError(f"the connection to {host} failed while fetching {url}: {exc}")


def http_status_error(url: str, status_code: int) -> HTTPStatusError:
    phrase = httpx.codes.get_reason_phrase(status_code)
    if status_code in (403, 404):
        hint = (
            "The file is not on the server: check that the URL points at the repository's served folder "
            "(the one holding metadata/ and targets/)."
        )
    elif status_code >= 500:
        hint = "The server failed; try again later or tell its operator."
    else:
        hint = "The server refused the request; check the URL."
    return HTTPStatusError(
        f"{url} answered HTTP {status_code} {phrase}".rstrip(), status_code=status_code, url=url, hint=hint
    )


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def strong_etag(headers: httpx.Headers) -> str | None:
    """The response's ETag if it can safely stand for the body (see the module docstring), else ``None``."""
    etag: str | None = headers.get("etag")
    if not etag or etag.startswith("W/"):
        return None
    last_modified = _parse_http_date(headers.get("last-modified"))
    if last_modified is not None:
        served_at = _parse_http_date(headers.get("date")) or datetime.now(UTC)
        if (served_at - last_modified).total_seconds() < _STRONG_VALIDATOR_AGE_S:
            return None
    return etag


class HttpxFetcher(FetcherInterface):
    """ngclient fetcher on an ``httpx.Client`` (plus :meth:`download_resumable` for images)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        timeout_s: float,
        transfer_deadline_s: float,
        conditional_dir: Path | None = None,
        conditional_names: tuple[str, ...] = ("timestamp.json",),
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._deadline_s = transfer_deadline_s
        self._conditional_dir = conditional_dir
        self._conditional_names = conditional_names
        #: Counters for diagnostics and tests: requests sent, and 304 answers reused.
        self.requests = 0
        self.not_modified = 0

    # -- ngclient --------------------------------------------------------------------------------------------
    def _fetch(self, url: str) -> Iterator[bytes]:
        cached = self._conditional_entry(url)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response = self._send(url, headers)
        if response.status_code == 304 and cached is not None:
            response.close()
            self.not_modified += 1
            logger.debug("%s not modified (304); reusing the stored copy", url)
            return iter([cached[1]])
        if response.status_code != 200:
            response.close()
            raise FetchHTTPError(http_status_error(url, response.status_code))
        on_complete = None
        if self._is_conditional(url):
            etag = strong_etag(response.headers)
            if etag is None:
                self._forget(url)
            else:

                def on_complete(body: bytes, etag: str = etag) -> None:
                    self._remember(url, etag, body)

        return self._chunks(response, url, on_complete)

    def _send(self, url: str, headers: dict[str, str]) -> httpx.Response:
        self.requests += 1
        try:
            request = self._client.build_request("GET", url, headers=headers)
            return self._client.send(request, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchFailed(translate_httpx_error(exc, url, timeout_s=self._timeout_s)) from exc

    def _chunks(
        self, response: httpx.Response, url: str, on_complete: Callable[[bytes], None] | None
    ) -> Iterator[bytes]:
        deadline = time.monotonic() + self._deadline_s
        kept: list[bytes] | None = [] if on_complete is not None else None
        kept_bytes = 0
        try:
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise FetchFailed(ServerTimeoutError(f"{url} took longer than {self._deadline_s:g} s to download"))
                if kept is not None:
                    kept_bytes += len(chunk)
                    if kept_bytes > _CONDITIONAL_MAX_BYTES:
                        kept = None
                    else:
                        kept.append(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise FetchFailed(translate_httpx_error(exc, url, timeout_s=self._timeout_s)) from exc
        finally:
            response.close()
        if on_complete is not None and kept is not None:
            on_complete(b"".join(kept))

    # -- conditional requests for timestamp.json -------------------------------------------------------------
    def _is_conditional(self, url: str) -> bool:
        if self._conditional_dir is None:
            return False
        path = httpx.URL(url).path
        return any(path.endswith("/" + name) for name in self._conditional_names)

    def _entry_paths(self, url: str) -> tuple[Path, Path]:
        assert self._conditional_dir is not None
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        return self._conditional_dir / f"{key}.json", self._conditional_dir / f"{key}.body"

    def _conditional_entry(self, url: str) -> tuple[str, bytes] | None:
        if not self._is_conditional(url):
            return None
        meta_path, body_path = self._entry_paths(url)
        try:
            meta: Any = json.loads(meta_path.read_text(encoding="utf-8"))
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url or not isinstance(meta.get("etag"), str):
            return None
        if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        return meta["etag"], body

    def _remember(self, url: str, etag: str, body: bytes) -> None:
        meta_path, body_path = self._entry_paths(url)
        try:
            atomic_write(body_path, body)
            meta = {"url": url, "etag": etag, "sha256": hashlib.sha256(body).hexdigest()}
            atomic_write(meta_path, json.dumps(meta).encode())
        except OSError as exc:  # a cache that cannot be written only costs a few hundred bytes next time
            logger.warning("cannot store %s for conditional requests: %s", url, exc)

    def _forget(self, url: str) -> None:
        for path in self._entry_paths(url):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- images ----------------------------------------------------------------------------------------------
    def download_resumable(
        self,
        url: str,
        part: Path,
        length: int,
        progress: Callable[[int, int], None] | None = None,
        *,
        _restarted: bool = False,
    ) -> None:
        """Download ``url`` into ``part`` until it holds exactly ``length`` bytes, resuming what it already holds.

        The caller verifies the hash; ``part`` is kept on a transfer error so a later call resumes.
        Raises :class:`DownloadTooLargeError` (and deletes ``part``) if the server sends more than ``length``.
        """
        offset = part.stat().st_size if part.exists() else 0
        if offset > length:
            part.unlink()
            offset = 0
        if offset == length:
            if progress:
                progress(length, length)
            return
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self._send(url, headers)
        except FetchFailed as exc:
            raise exc.bridge_error from exc.__cause__
        deadline = time.monotonic() + self._deadline_s
        try:
            content_range = response.headers.get("content-range", "")
            if response.status_code == 206 and offset and content_range.startswith(f"bytes {offset}-"):
                mode = "ab"
                logger.debug("resuming %s at byte %d", url, offset)
            elif response.status_code == 200:
                mode, offset = "wb", 0
            elif response.status_code in (206, 416) and not _restarted:
                # 416: the part is longer than the file; 206 from another offset than asked: a broken Range
                # answer. Either way the part cannot be continued: start again from byte 0, once.
                response.close()
                part.unlink(missing_ok=True)
                return self.download_resumable(url, part, length, progress, _restarted=True)
            else:
                raise http_status_error(url, response.status_code)
            part.parent.mkdir(parents=True, exist_ok=True)
            with open(part, mode) as handle:
                for chunk in response.iter_bytes():
                    if offset + len(chunk) > length:
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise DownloadTooLargeError(
                            f"{url} is longer than the {length} bytes its signed metadata promises; "
                            "the download was stopped and discarded"
                        )
                    handle.write(chunk)
                    offset += len(chunk)
                    if progress:
                        progress(offset, length)
                    if time.monotonic() > deadline:
                        raise ServerTimeoutError(
                            f"{url} took longer than {self._deadline_s:g} s; {offset} of {length} bytes kept to resume"
                        )
                handle.flush()
                os.fsync(handle.fileno())
        except httpx.HTTPError as exc:
            raise translate_httpx_error(exc, url, timeout_s=self._timeout_s) from exc
        finally:
            response.close()
        if offset < length:
            raise DownloadError(
                f"{url} ended after {offset} of {length} bytes; the part is kept and the next try resumes"
            )
        return None
