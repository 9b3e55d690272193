"""The repository on a stock static host: Debian's nginx serving ``DIR/public`` with a plain config.

Runs its own nginx (foreground, one process, temporary config, free loopback port) and stops it. Skips when nginx
is not installed, except under ``CI=true`` where it fails (``.ci/run`` installs nginx-light). Locally:
``apt-get install -y nginx-light`` then ``.venv/bin/pytest tests/source/test_source_nginx.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.repo import Repository
from bridge.source import TamperedError, UpdateSource, UpdateStatus, trust_server

from .conftest import board, write_image

pytestmark = pytest.mark.nginx


def _nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format bridge '$request_method $uri $status $http_range';
    access_log {tmp}/access.log bridge;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    {extra_temp_paths}
    types {{ application/json json; application/octet-stream bin; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {public};
        autoindex off;
        location = /metadata/timestamp.json {{ add_header Cache-Control "no-cache"; }}
        location / {{ add_header Cache-Control "public, max-age=31536000, immutable"; }}
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    access_log: Path

    def requests(self) -> list[tuple[str, str, int]]:
        rows = []
        for line in self.access_log.read_text().splitlines():
            method, uri, status, *_ = line.split(" ")
            rows.append((method, uri, int(status)))
        return rows


def _start_nginx(binary: str, public: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], Nginx]:
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    extra = " ".join(
        f"{module}_temp_path {tmp}/{module};"
        for module in ("fastcgi", "uwsgi", "scgi")
        if f"--without-http_{module}_module" not in built
    )
    last_error = ""
    for _ in range(3):
        port = _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(_CONFIG.format(tmp=tmp, port=port, public=public, extra_temp_paths=extra))
        process = subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return process, Nginx(f"http://127.0.0.1:{port}", tmp / "access.log")
            except OSError:
                time.sleep(0.05)
        process.kill()
        _, err = process.communicate(timeout=5)
        last_error = err.decode(errors="replace") + (tmp / "error.log").read_text(errors="replace")
    pytest.fail(f"nginx did not start: {last_error}")


@pytest.fixture
def repo_on_nginx(tmp_path: Path) -> Iterator[tuple[Repository, Nginx]]:
    binary = _nginx_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("nginx is not installed; CI must have it (.ci/run installs nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    repo = Repository(tmp_path / "repo")
    repo.init()
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    process, nginx = _start_nginx(binary, repo.public_dir, run_dir)
    try:
        yield repo, nginx
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=5)


async def test_stage1_cycle_on_a_stock_static_host(repo_on_nginx: tuple[Repository, Nginx], tmp_path: Path) -> None:
    repo, nginx = repo_on_nginx
    images = tmp_path / "images"
    repo.add(write_image(images, version="1.0.0"))
    old = repo.confirm("blinky", "1.0.0")
    repo.add(write_image(images, version="1.1.0", size=150_000))
    new = repo.confirm("blinky", "1.1.0")
    data = tmp_path / "bridge"
    trust_server(nginx.url, None, fingerprint=repo.fingerprint(), data_dir=data)

    timestamp = repo.metadata_dir / "timestamp.json"
    past = time.time() - 60
    os.utime(timestamp, (past, past))  # nginx's ETag is mtime+size: strong only for a file not just written
    with UpdateSource(nginx.url, data_dir=data) as source:
        check = await source.check(board("1.0.0"))
        assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.running == old and check.release == new
        # Half of the image arrived earlier: the rest comes with a Range request.
        whole = repo.hosted_path(new.target_path, new.sha256).read_bytes()
        part = source.path / "partial" / f"{new.sha256}.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(whole[:60_000])
        path = await source.download(new)
        assert path.read_bytes() == whole
        await source.refresh()  # nothing changed: nginx answers 304 for timestamp.json
    log = nginx.requests()
    assert [s for _, uri, s in log if uri == "/metadata/timestamp.json"] == [200, 304]
    assert [s for _, uri, s in log if uri.endswith(".bin")] == [206]
    assert ("GET", "/metadata/2.root.json", 404) in log

    repo.prune(keep=1)
    with UpdateSource(nginx.url, data_dir=data) as source:
        check = await source.check(board("1.0.0"))  # 1.0.0 is gone from the server; 1.1.0 is still offered
        assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == new
        assert (await source.check(board("1.1.0"))).status is UpdateStatus.UP_TO_DATE
    fresh = tmp_path / "fresh"
    trust_server(nginx.url, repo.root_path.read_bytes(), data_dir=fresh)
    with UpdateSource(nginx.url, data_dir=fresh) as source:
        release = await source.latest_for(board("0.1"))
        assert release == new
        assert (await source.download(release)).read_bytes() == whole


async def test_tampered_image_on_the_static_host_is_refused(
    repo_on_nginx: tuple[Repository, Nginx], tmp_path: Path
) -> None:
    repo, nginx = repo_on_nginx
    repo.add(write_image(tmp_path, version="2.0"))
    release = repo.confirm("blinky", "2.0")
    hosted = repo.hosted_path(release.target_path, release.sha256)
    data = bytearray(hosted.read_bytes())
    data[-100] ^= 0xFF
    hosted.write_bytes(bytes(data))
    trust_server(nginx.url, repo.root_path.read_bytes(), data_dir=tmp_path / "b")
    with UpdateSource(nginx.url, data_dir=tmp_path / "b") as source:
        check = await source.check(board("1.0"))
        assert check.release == release
        with pytest.raises(TamperedError, match="does not match its signed SHA-256"):
            await source.download(release)
