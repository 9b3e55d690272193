"""``bridge repo serve``: a development HTTP server for the served tree, with the manners of a good static host.

* ``ETag`` (size, mtime in ns, inode: ``os.replace`` always makes a new one) and ``If-None-Match`` -> 304;
  ``Last-Modified`` and ``If-Modified-Since`` when no ETag is asked about.
* ``Range: bytes=...`` -> 206 with ``Content-Range`` (one range; several ranges get the whole file, as RFC 9110
  allows), ``If-Range``, 416 for a range past the end.
* Content types: ``application/json`` for metadata, ``application/octet-stream`` for firmware.
* ``Cache-Control: no-cache`` for ``timestamp.json`` and ``root.json`` (the files that change), ``immutable``
  for everything else (every other file name is versioned or content-addressed).
* No path traversal: ``..``, encoded separators, NUL bytes, dot files and symlinks leaving the tree are 404;
  no directory listings; only GET and HEAD.

For production, put ``DIR/public`` on any static host (nginx, S3, a CDN); docs/SERVER.md has an nginx example.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import mimetypes
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["RepositoryHTTPServer", "ServedURL", "make_server", "serve_repository", "served_root"]

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_MUTABLE_NAMES = frozenset({"timestamp.json", "root.json"})
_TYPES = {".json": "application/json", ".bin": "application/octet-stream"}


def served_root(directory: Path | str) -> Path:
    """The folder to serve: ``DIR/public`` for a repository folder, else ``directory`` itself."""
    path = Path(directory)
    public = path / "public"
    return public if (path / "repo.json").is_file() and public.is_dir() else path


class RepositoryHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server for one folder. ``request_log`` keeps (method, path, status) of recent requests."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, address: tuple[str, int]) -> None:
        self.root = root.resolve(strict=True)
        self.request_log: deque[tuple[str, str, int]] = deque(maxlen=10_000)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is routine (a bridge cancelled, a probe); anything else is logged.

        The standard library prints a traceback to stderr here, which would land in the middle of `bridge demo`.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            logger.debug("client %s went away: %s", client_address, exc)
        else:
            logger.warning("request from %s failed", client_address, exc_info=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"


def _etag(stat: os.stat_result) -> str:
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}-{stat.st_ino:x}"'


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


class _Handler(BaseHTTPRequestHandler):
    server: RepositoryHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "bridge-repo-serve"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.server.request_log.append((self.command, self.path, int(code)))
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _not_found(self) -> None:
        body = b"not found\n"
        self.send_response(HTTPStatus.NOT_FOUND)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self) -> Path | None:
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            return None
        parts = raw.split("/")[1:]
        clean = []
        for part in parts:
            name = unquote(part)
            if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
                return None
            clean.append(name)
        if not clean:
            return None
        path = self.server.root.joinpath(*clean)
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.server.root) or not resolved.is_file():
            return None
        return resolved

    def _serve(self, *, body: bool) -> None:
        path = self._resolve()
        if path is None:
            self._not_found()
            return
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError:
            self._not_found()
            return
        try:
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            etag = _etag(stat)
            last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
            if self._not_modified(etag, stat.st_mtime):
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self._validators(path, etag, last_modified)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = 0, size - 1
            status = HTTPStatus.OK
            byte_range = self._range(size, etag)
            if byte_range == "unsatisfiable":
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if isinstance(byte_range, tuple):
                start, end = byte_range
                status = HTTPStatus.PARTIAL_CONTENT
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", _TYPES.get(path.suffix) or _guess_type(path))
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self._validators(path, etag, last_modified)
            self.end_headers()
            if body and length:
                handle.seek(start)
                remaining = length
                while remaining:
                    chunk = handle.read(min(_CHUNK_BYTES, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client went away while %s was sent", path)
        finally:
            handle.close()

    def _validators(self, path: Path, etag: str, last_modified: str) -> None:
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if path.name in _MUTABLE_NAMES:
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")

    def _not_modified(self, etag: str, mtime: float) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return _etag_matches(if_none_match, etag)
        since = self.headers.get("If-Modified-Since")
        if since:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                moment = email.utils.parsedate_to_datetime(since)
                return int(mtime) <= moment.timestamp()
        return False

    def _range(self, size: int, etag: str) -> tuple[int, int] | str | None:
        header = self.headers.get("Range")
        if not header:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            return None  # the file changed (or a date validator we do not honour): send it whole
        match = _RANGE_RE.match(header.strip())
        if match is None:
            return None  # several ranges or another unit: the whole file is a valid answer
        first, last = match.groups()
        if not first and not last:
            return None
        if not first:
            suffix = int(last)
            if suffix == 0:
                return "unsatisfiable"
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
        if start >= size:
            return "unsatisfiable"
        if end < start:
            return None
        return start, min(end, size - 1)


def _guess_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


class ServedURL(str):
    """The base URL of a running server (a ``str``), with the server itself as ``.server``."""

    server: RepositoryHTTPServer


@contextlib.contextmanager
def serve_repository(directory: Path | str, host: str = "127.0.0.1", port: int = 0) -> Iterator[ServedURL]:
    """Serve a repository (``DIR/public``) or any folder in a background thread; yield its base URL.

    ``with serve_repository(repo_dir) as url: ...`` (port 0 picks a free port); ``url.server.request_log`` lists
    the requests answered.
    """
    server = make_server(directory, host, port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"repo-serve-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    url = ServedURL(server.url)
    url.server = server
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_server(directory: Path | str, host: str = "127.0.0.1", port: int = 8000) -> RepositoryHTTPServer:
    """The server for ``bridge repo serve`` (the caller runs ``serve_forever()`` and ``server_close()``)."""
    return RepositoryHTTPServer(served_root(directory), (host, port))
