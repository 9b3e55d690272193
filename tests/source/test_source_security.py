"""Everything a hostile or broken server can send is refused with a named error, and nothing of it is kept."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.errors import DownloadError, SecurityError, TrustError
from bridge.image import Chip, build_image
from bridge.repo import Repository, make_server
from bridge.source import (
    BadSignatureError,
    DownloadTooLargeError,
    ExpiredMetadataError,
    ImageMismatchError,
    RollbackError,
    TamperedError,
    TLSError,
    UpdateSource,
    WrongRootError,
    trust_server,
)
from bridge.source.errors import MalformedReleaseError

from .conftest import Published, board


def _cache_is_empty(source: UpdateSource) -> bool:
    images = source.path / "images"
    partial = source.path / "partial"
    return not any(images.glob("*.bin")) and not (partial.exists() and any(partial.iterdir()))


async def test_tampered_image_same_length_is_refused_and_not_kept(published: Published) -> None:
    release = published.publish("1.0.0")
    hosted = published.hosted(release)
    data = bytearray(hosted.read_bytes())
    data[5000] ^= 0x01
    hosted.write_bytes(bytes(data))
    source = published.source()
    check = await source.check(board("0.9"))
    with pytest.raises(TamperedError, match="does not match its signed SHA-256") as info:
        await source.download(check.release)  # type: ignore[arg-type]
    assert isinstance(info.value, SecurityError)
    assert _cache_is_empty(source)
    assert source.cached(release) is None


async def test_longer_image_is_cut_off_at_the_signed_length(published: Published) -> None:
    release = published.publish("1.0.0")
    hosted = published.hosted(release)
    hosted.write_bytes(hosted.read_bytes() + b"\x00" * 70_000)
    source = published.source()
    await source.refresh()
    with pytest.raises(DownloadTooLargeError, match=f"longer than the {release.size} bytes"):
        await source.download(release)
    assert _cache_is_empty(source)


async def test_image_larger_than_the_configured_cap_is_not_downloaded(published: Published) -> None:
    release = published.publish("1.0.0", size=200_000)
    source = published.source(max_image_bytes=100_000)
    await source.refresh()
    before = len(published.log())
    with pytest.raises(DownloadTooLargeError, match="200000 bytes, more than the 100000 allowed"):
        await source.download(release)
    assert len(published.log()) == before  # not a single request


async def test_oversized_timestamp_is_refused(published: Published) -> None:
    published.publish("1.0.0")
    timestamp = published.repo.metadata_dir / "timestamp.json"
    timestamp.write_bytes(timestamp.read_bytes() + b" " * 20_000)
    source = published.source()
    with pytest.raises(DownloadTooLargeError, match="exceeding the maximum allowed length of 16384"):
        await source.refresh()


async def test_tampered_timestamp_fails_its_signature(published: Published) -> None:
    published.publish("1.0.0")
    timestamp = published.repo.metadata_dir / "timestamp.json"
    doc = json.loads(timestamp.read_bytes())
    doc["signed"]["version"] += 5
    timestamp.write_bytes(json.dumps(doc).encode())
    source = published.source()
    with pytest.raises(BadSignatureError, match="timestamp was signed by 0/1 keys"):
        await source.refresh()


async def test_tampered_targets_metadata_is_refused(published: Published) -> None:
    published.publish("1.0.0")
    newest = published.repo.store.path_of("targets")
    text = newest.read_text()
    assert '"version":"1.0.0"' in text
    newest.write_text(text.replace('"version":"1.0.0"', '"version":"9.9.9"'))  # same length
    source = published.source()
    with pytest.raises(TamperedError, match="tampered file refused"):
        await source.refresh()


async def test_metadata_rolled_back_to_an_older_version_is_refused(published: Published) -> None:
    published.publish("1.0.0")
    timestamp = published.repo.metadata_dir / "timestamp.json"
    old = timestamp.read_bytes()
    source = published.source()
    await source.refresh()
    published.publish("1.1.0")
    await source.refresh()
    timestamp.write_bytes(old)  # a mirror (or attacker) serves yesterday's timestamp
    with pytest.raises(RollbackError, match=r"New timestamp version \d+ must be >= \d+"):
        await source.refresh()


async def test_expired_timestamp_is_refused(published: Published) -> None:
    published.publish("1.0.0")
    source = published.source()
    await source.refresh()  # a bridge that already trusted a valid timestamp must refuse too
    Repository(published.repo.path, clock=lambda: datetime.now(UTC) - timedelta(days=8)).refresh()
    with pytest.raises(ExpiredMetadataError, match=r"timestamp\.json is expired") as info:
        await source.refresh()
    assert isinstance(info.value, SecurityError)
    assert "bridge repo refresh" in info.value.hint


async def test_root_of_another_repository_is_refused(published: Published, tmp_path: Path) -> None:
    other = Repository(tmp_path / "other")
    other.init()
    data = tmp_path / "confused"
    trust_server(published.url, other.root_path.read_bytes(), data_dir=data)
    with (
        UpdateSource(published.url, data_dir=data) as source,
        pytest.raises(WrongRootError, match="is not signed by the root this bridge trusts") as info,
    ):
        await source.refresh()
    assert isinstance(info.value, TrustError)
    with pytest.raises(WrongRootError, match="fingerprint"):
        trust_server(published.url, None, fingerprint=other.fingerprint(), data_dir=tmp_path / "fp")


async def test_image_of_another_project_or_chip_behind_valid_signatures_is_refused(published: Published) -> None:
    """A release whose signed facts say blinky/ESP32-C3 but whose file is another project or chip."""
    release = published.publish("1.0.0")
    published.publish("1.1.0")
    images = published.images_dir
    for name, image in (
        ("project", build_image(chip=Chip.ESP32C3, project="doorbell", version="1.0.0")),
        ("chip", build_image(chip=Chip.ESP32, project="blinky", version="1.0.0")),
    ):
        # A careless (or compromised) release step: re-point the signed target at other bytes.
        (images / name).write_bytes(image)
        from tuf.api.metadata import TargetFile

        repo = published.repo
        with repo.store.edit_targets() as targets:
            old = targets.targets[release.target_path]
            new = TargetFile.from_data(release.target_path, image, ["sha256"])
            new.unrecognized_fields["custom"] = old.unrecognized_fields["custom"]
            targets.targets[release.target_path] = new
            repo._write_index(targets)
        repo.hosted_path(release.target_path, new.hashes["sha256"]).write_bytes(image)
        repo.store.do_snapshot()
        repo.store.do_timestamp()
        source = published.source()
        listed = next(r for r in await source.releases() if r.target_path == release.target_path)
        with pytest.raises(ImageMismatchError, match=name) as info:
            await source.download(listed)
        assert "is not what its signed facts claim" in info.value.message
        assert _cache_is_empty(source)


async def test_malformed_signed_facts_are_refused(published: Published) -> None:
    release = published.publish("1.0.0")
    repo = published.repo
    with repo.store.edit_targets() as targets:
        targets.targets[release.target_path].unrecognized_fields["custom"]["release"] = "two"
    repo.store.do_snapshot()
    repo.store.do_timestamp()
    with pytest.raises(MalformedReleaseError, match="custom field 'release' must be int"):
        await published.source().refresh()


@pytest.fixture
def tls_server(published: Published, tmp_path: Path) -> Iterator[str]:
    """The same repository over HTTPS with a self-signed certificate the bridge does not trust."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "tls.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = make_server(published.repo.path, "127.0.0.1", 0)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.url.replace("http://", "https://")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_tls_failures_are_named(published: Published, tls_server: str, tmp_path: Path) -> None:
    data = tmp_path / "tls"
    trust_server(tls_server, published.repo.root_path.read_bytes(), data_dir=data)
    with (
        UpdateSource(tls_server, data_dir=data) as source,
        pytest.raises(TLSError, match=r"the TLS connection to 127\.0\.0\.1:\d+ failed: .*certificate") as info,
    ):
        await source.refresh()
    assert isinstance(info.value, DownloadError)
    assert "certificate" in info.value.hint
    # Speaking TLS to a plain-HTTP port is a TLS failure too, not a hang or a traceback.
    plain_as_tls = published.url.replace("http://", "https://")
    trust_server(plain_as_tls, published.repo.root_path.read_bytes(), data_dir=data)
    with UpdateSource(plain_as_tls, data_dir=data) as source, pytest.raises(TLSError):
        await source.refresh()


@pytest.fixture
def slow_server() -> Iterator[tuple[str, threading.Event]]:
    """A loopback server: silent under /silent/, 404 for root files, timestamp.json one byte every 0.1 s."""
    import socket

    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)

    def handle(conn: socket.socket) -> None:
        with conn:
            request = conn.recv(4096)
            if b"/silent/" in request:
                stop.wait(5)
                return
            if b"root.json" in request:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", stop
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def test_silent_and_trickling_servers_time_out(
    published: Published, slow_server: tuple[str, threading.Event], tmp_path: Path
) -> None:
    url, _ = slow_server
    data = tmp_path / "slow"
    trust_server(url, published.repo.root_path.read_bytes(), data_dir=data)
    from bridge.source import ServerTimeoutError, SourceConfig

    silent_url = f"{url}/silent"
    trust_server(silent_url, published.repo.root_path.read_bytes(), data_dir=data)
    silent = UpdateSource(silent_url, data_dir=data, config=SourceConfig(timeout_s=0.3))
    with silent, pytest.raises(ServerTimeoutError, match=r"did not answer within 0\.3 s"):
        await silent.refresh()
    # timestamp.json arrives one byte per 0.1 s: never silent for 0.3 s, but slower than the overall deadline.
    trickle = UpdateSource(url, data_dir=data, config=SourceConfig(timeout_s=0.3, transfer_deadline_s=0.5))
    started = time.monotonic()
    with trickle, pytest.raises(ServerTimeoutError, match=r"took longer than 0\.5 s"):
        await trickle.refresh()
    assert time.monotonic() - started < 3
