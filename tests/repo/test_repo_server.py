"""``bridge repo serve``: ETag/304, Range, content types, cache headers, and no way out of the served tree."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.repo import Repository, ServedURL, serve_repository

from .conftest import ImageMaker


@pytest.fixture
def served(repo: Repository, image: ImageMaker) -> Iterator[tuple[Repository, ServedURL, str]]:
    entry = repo.add(image("1.0", size=100_000))
    repo.confirm("blinky", "1.0")
    hosted = repo.hosted_path(entry.target_path, entry.sha256)
    path = "/targets/" + hosted.relative_to(repo.targets_dir).as_posix()
    (repo.path / "secret.txt").write_text("outside the served tree")
    with serve_repository(repo.path) as url:
        yield repo, url, path


def _raw_get(url: str, path: str) -> int:
    """Send ``path`` byte for byte (httpx would normalise dot segments before they reach the server)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_serves_metadata_and_images_with_types_and_cache_headers(served: tuple[Repository, ServedURL, str]) -> None:
    repo, url, image_path = served
    with httpx.Client(base_url=url) as client:
        timestamp = client.get("/metadata/timestamp.json")
        assert timestamp.status_code == 200
        assert timestamp.content == (repo.metadata_dir / "timestamp.json").read_bytes()
        assert timestamp.headers["content-type"] == "application/json"
        assert timestamp.headers["cache-control"] == "no-cache"
        root = client.get("/metadata/1.root.json")
        assert root.headers["cache-control"] == "public, max-age=31536000, immutable"
        firmware = client.get(image_path)
        assert firmware.status_code == 200 and len(firmware.content) == 100_000
        assert firmware.headers["content-type"] == "application/octet-stream"
        assert firmware.headers["accept-ranges"] == "bytes"
        head = client.head(image_path)
        assert head.status_code == 200 and head.headers["content-length"] == "100000" and head.content == b""
        assert client.post("/metadata/timestamp.json").status_code == 501


def test_etag_and_if_none_match_give_304(served: tuple[Repository, ServedURL, str]) -> None:
    repo, url, _ = served
    with httpx.Client(base_url=url) as client:
        first = client.get("/metadata/timestamp.json")
        etag = first.headers["etag"]
        again = client.get("/metadata/timestamp.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert client.get("/metadata/timestamp.json", headers={"If-None-Match": f'"x", {etag}'}).status_code == 304
        assert client.get("/metadata/timestamp.json", headers={"If-None-Match": '"other"'}).status_code == 200
        since = client.get("/metadata/timestamp.json", headers={"If-Modified-Since": first.headers["last-modified"]})
        assert since.status_code == 304
        repo.refresh()  # rewrites timestamp.json: a new ETag, so the old one no longer matches
        changed = client.get("/metadata/timestamp.json", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert [s for _, p, s in url.server.request_log if p == "/metadata/timestamp.json"] == [
        200,
        304,
        304,
        200,
        304,
        200,
    ]


def test_range_requests(served: tuple[Repository, ServedURL, str]) -> None:
    repo, url, image_path = served
    whole = (repo.public_dir / image_path.lstrip("/")).read_bytes()
    with httpx.Client(base_url=url) as client:
        part = client.get(image_path, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.content == whole[1000:2000]
        assert part.headers["content-range"] == "bytes 1000-1999/100000"
        tail = client.get(image_path, headers={"Range": "bytes=99990-"})
        assert tail.status_code == 206 and tail.content == whole[99990:]
        suffix = client.get(image_path, headers={"Range": "bytes=-16"})
        assert suffix.status_code == 206 and suffix.content == whole[-16:]
        clipped = client.get(image_path, headers={"Range": "bytes=99999-200000"})
        assert clipped.content == whole[-1:] and clipped.headers["content-range"] == "bytes 99999-99999/100000"
        past = client.get(image_path, headers={"Range": "bytes=100000-"})
        assert past.status_code == 416 and past.headers["content-range"] == "bytes */100000"
        several = client.get(image_path, headers={"Range": "bytes=0-1,5-6"})
        assert several.status_code == 200 and several.content == whole
        etag = part.headers["etag"]
        still = client.get(image_path, headers={"Range": "bytes=10-19", "If-Range": etag})
        assert still.status_code == 206 and still.content == whole[10:20]
        stale = client.get(image_path, headers={"Range": "bytes=10-19", "If-Range": '"old"'})
        assert stale.status_code == 200 and stale.content == whole


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/metadata/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/metadata/%2e%2e/%2e%2e/secret.txt",
        "/metadata%2f..%2f..%2fsecret.txt",
        "/metadata/..%5c..%5csecret.txt",
        "//etc/passwd",
        "/metadata/timestamp.json%00.png",
        "/metadata/",
        "/",
        "/metadata/.timestamp.json.abc.tmp",
        "/link/secret.txt",
    ],
)
def test_no_path_traversal_and_no_listing(served: tuple[Repository, ServedURL, str], path: str) -> None:
    repo, url, _ = served
    (repo.public_dir / "link").symlink_to(repo.path, target_is_directory=True)
    (repo.metadata_dir / ".timestamp.json.abc.tmp").write_text("half written")
    assert _raw_get(url, path) == 404


def test_a_symlink_inside_the_tree_is_served(served: tuple[Repository, ServedURL, str]) -> None:
    repo, url, _ = served
    os.symlink(repo.metadata_dir / "timestamp.json", repo.public_dir / "latest.json")
    assert _raw_get(url, "/latest.json") == 200


def test_serves_a_plain_folder_too(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x01\x02")
    with serve_repository(tmp_path) as url, httpx.Client(base_url=url) as client:
        response = client.get("/a.bin")
        assert response.content == b"\x01\x02"


def test_a_client_that_resets_mid_request_prints_no_traceback(
    served: tuple[Repository, ServedURL, str], capfd: pytest.CaptureFixture[str]
) -> None:
    import socket
    import struct
    from urllib.parse import urlsplit

    _, url, _ = served
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    for _ in range(3):
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(b"GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        # SO_LINGER 0: close() sends RST, so the server's read fails with ConnectionResetError.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    # The server still answers afterwards, and nothing was printed by the standard library's handler.
    assert httpx.get(f"{url}/metadata/timestamp.json").status_code == 200
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert "ConnectionResetError" not in captured.err
