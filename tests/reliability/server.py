"""A misbehaving update server on loopback, the bridge's download cache afterwards, and the server fault catalogue.

:class:`FaultyServer` serves a real repository made by ``bridge repo`` (its ``public/`` folder) over HTTP, or
HTTPS with a self-signed certificate, and misbehaves on purpose for the requests a :class:`Fault` matches: a 5xx
status, silence (the client's timeout), a body cut short, a body longer than announced, a Range header ignored or
answered wrongly, a redirect to itself, bytes replaced. Each trial runs the real CLI, ``bridge fetch`` (refresh the
TUF metadata, download and verify the image into the offline cache), in-process with typer's ``CliRunner``, and
then audits the cache with :func:`audit_cache`: every file must be what it claims to be.

After a clean abort the trial runs ``bridge fetch`` again with the transient faults gone (what the hint says to
do); a download cut short must then resume with a Range request, not start over.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from .matrix import Outcome, Stopwatch, TrialResult, check_message

__all__ = [
    "SERVER_EXIT_CODES",
    "CacheAudit",
    "Fault",
    "FaultyServer",
    "ServerTrial",
    "audit_cache",
    "run_server_trial",
    "server_trials",
]

#: `bridge fetch`: 9 server error, 6 refused by verification (docs: bridge/errors.py ExitCode).
SERVER_EXIT_CODES = frozenset({6, 9})
_RANGE = re.compile(r"^bytes=(\d+)-$")

TARGETS: dict[str, Callable[[str], bool]] = {
    "timestamp": lambda path: path.endswith("/timestamp.json"),
    "snapshot": lambda path: path.endswith(".snapshot.json"),
    "targets": lambda path: path.endswith(".targets.json"),
    "index": lambda path: path.endswith("index.json") and "/targets/" in path,
    "image": lambda path: path.endswith(".bin"),
}


@dataclass
class Fault:
    """Misbehave for requests to ``target`` (a key of :data:`TARGETS`).

    ``kind``: ``status`` (answer ``status``), ``stall`` (say nothing for ``seconds``), ``truncate`` (announce the
    whole body, send ``at`` bytes, close), ``overlong`` (announce and send ``extra`` bytes more than the file),
    ``ignore-range`` (200 with the whole file whatever the Range), ``wrong-range`` (206 from byte 0 whatever was
    asked), ``redirect-loop`` (302 to itself), ``garbage`` (200, same length, other bytes).
    ``times``: how many matching requests misbehave (None: all). ``persistent``: still there on the re-run
    (a property of the server, not a passing failure).
    """

    kind: str
    target: str
    status: int = 503
    seconds: float = 2.0
    at: int = 0
    extra: int = 0
    times: int | None = None
    persistent: bool = False
    hits: int = 0

    def matches(self, path: str) -> bool:
        return TARGETS[self.target](path) and (self.times is None or self.hits < self.times)


@dataclass
class _State:
    root: Path
    faults: list[Fault]
    log: list[tuple[str, str, int, str]] = field(default_factory=list)
    """(method, path, status, Range header) of every request."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_for(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(path):
                    fault.hits += 1
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_head(self, status: int, headers: dict[str, str]) -> None:
        self.state.log.append((self.command, self.path, status, self.headers.get("Range", "")))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        file = self.state.root / path.lstrip("/")
        if ".." in path or not file.is_file():
            self._send_head(404, {"Content-Length": "0"})
            return
        data = file.read_bytes()
        fault = self.state.fault_for(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self._answer(path, data, fault)

    def _answer(self, path: str, data: bytes, fault: Fault | None) -> None:
        kind = fault.kind if fault is not None else ""
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if fault is not None and kind == "status":
            body = b"server error\n"
            self._send_head(fault.status, {"Content-Length": str(len(body)), "Content-Type": "text/plain"})
            self.wfile.write(body)
            return
        if fault is not None and kind == "stall":
            time.sleep(fault.seconds)
            self.close_connection = True
            return
        if kind == "redirect-loop":
            self._send_head(302, {"Location": path, "Content-Length": "0"})
            return
        if fault is not None and kind == "garbage":
            data = bytes(b ^ 0x5A for b in data)
        start = 0
        status = 200
        if wanted is not None and kind not in ("ignore-range", "wrong-range"):
            start = int(wanted.group(1))
            if start >= len(data):
                self._send_head(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                return
            status = 206
        elif wanted is not None and kind == "wrong-range":
            status = 206
        body = data[start:]
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if fault is not None and kind == "overlong":
            body += os.urandom(fault.extra)
        headers["Content-Length"] = str(len(body))
        self._send_head(status, headers)
        if fault is not None and kind == "truncate":
            self.wfile.write(body[: fault.at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on a misbehaving answer is the point, not news (and stderr is the CLI's)


class FaultyServer:
    """``with FaultyServer(public_dir, faults) as server: server.url``; ``tls=True`` serves HTTPS (self-signed)."""

    def __init__(self, root: Path, faults: list[Fault], *, tls: bool = False, workdir: Path | None = None) -> None:
        self.state = _State(root, faults)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        scheme = "http"
        if tls:
            assert workdir is not None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self_signed_pem(workdir / "tls.pem"))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def log(self) -> list[tuple[str, str, int, str]]:
        return list(self.state.log)

    def heal(self) -> None:
        """The transient faults are gone (the operator fixed the server, the network came back)."""
        with self.state.lock:
            self.state.faults = [f for f in self.state.faults if f.persistent]

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def self_signed_pem(path: Path) -> Path:
    """A certificate + key for 127.0.0.1 that no CA vouches for."""
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
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


# --- The cache audit ------------------------------------------------------------------------------------------------


@dataclass
class CacheAudit:
    """What is in a bridge data folder after a trial. ``corrupt`` lists files that are not what they claim."""

    images: list[str] = field(default_factory=list)
    partial: dict[str, int] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)


def audit_cache(data_dir: Path, known_images: dict[str, bytes]) -> CacheAudit:
    """Check every file of every server's cache in ``data_dir``.

    ``images/<sha>.bin`` must hash to its name; ``partial/<sha>.part`` must be a strict prefix of the image with
    that SHA-256 (``known_images``: sha hex -> bytes); JSON files (metadata, records, trust, conditional-request
    entries) must parse, and a stored body must match its recorded SHA-256; no temporary file may be left behind.
    """
    audit = CacheAudit()
    servers = data_dir / "servers"
    for path in sorted(servers.rglob("*")) if servers.is_dir() else []:
        if not path.is_file():
            continue
        rel = str(path.relative_to(data_dir))
        name = path.name
        if name == ".lock":
            continue
        if name.startswith(".") or name.endswith((".tmp", ".download")):
            audit.corrupt.append(f"{rel}: a temporary file was left behind")
        elif path.parent.name == "images" and name.endswith(".bin"):
            if hashlib.sha256(path.read_bytes()).hexdigest() != path.stem:
                audit.corrupt.append(f"{rel}: its SHA-256 is not its name")
            else:
                audit.images.append(path.stem)
        elif path.parent.name == "partial" and name.endswith(".part"):
            whole = known_images.get(path.stem)
            data = path.read_bytes()
            if whole is None or len(data) >= len(whole) or whole[: len(data)] != data:
                audit.corrupt.append(f"{rel}: not a prefix of the image it names")
            else:
                audit.partial[path.stem] = len(data)
        elif name.endswith(".json"):
            try:
                meta = json.loads(path.read_bytes())
            except ValueError:
                audit.corrupt.append(f"{rel}: not valid JSON")
                continue
            body = path.with_suffix(".body")
            stored = body.read_bytes() if path.parent.name == "http" and body.exists() else None
            if stored is not None and hashlib.sha256(stored).hexdigest() != meta.get("sha256"):
                audit.corrupt.append(f"{rel}: the stored body does not match its SHA-256")
        elif name.endswith(".body") and path.parent.name == "http":
            continue
        else:
            audit.corrupt.append(f"{rel}: an unexpected file")
    return audit


# --- Trials ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerTrial:
    fault_class: str
    name: str
    faults: tuple[Fault, ...] = ()
    expect: frozenset[Outcome] = frozenset({Outcome.ABORT})
    exit_codes: frozenset[int] = SERVER_EXIT_CODES
    message: str = ""
    """A regular expression the error message must match (the message names what happened)."""
    tls: bool = False
    disk: str = ""
    """``tmpfs``: the data folder is a tiny tmpfs (needs root); ``patched``: writes of the image fail with ENOSPC."""
    timeout_s: float = 1.0
    rerun: bool = True
    """Run ``bridge fetch`` again after a clean abort, with the transient faults gone."""


@dataclass(frozen=True)
class Published:
    """A repository folder with one confirmed release, and the released image's bytes."""

    public: Path
    root_json: bytes
    image: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


def publish(workdir: Path, image: Path) -> Published:
    """``bridge repo init`` + ``add`` + ``confirm`` of ``image`` (through the library, like the CLI does)."""
    from bridge.image import validate_image
    from bridge.repo import Repository

    repo = Repository(workdir / "repo")
    repo.init()
    entry = repo.add(image)
    app = validate_image(image).app
    assert app is not None
    repo.confirm(entry.project, app.version, "stable", chip=entry.chip)
    return Published(repo.path / "public", repo.root_path.read_bytes(), image.read_bytes())


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from bridge.cli import app

    result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        err += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stdout, err


def _parse(err: str) -> tuple[str, str]:
    message = hint = ""
    for line in err.splitlines():
        if line.startswith("error:"):
            message = line.removeprefix("error:").strip()
        elif line.startswith("hint:"):
            hint = line.removeprefix("hint:").strip()
    return message, hint


@contextlib.contextmanager
def _tiny_disk(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path``; yields False (and mounts nothing) when not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        ok = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
            ).returncode
            == 0
        )
    except OSError:  # no mount(8) here
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def tmpfs_available(workdir: Path) -> bool:
    probe = workdir / "tmpfs-probe"
    with _tiny_disk(probe, "64k") as ok:
        return ok


class _FullDisk:
    """``open`` for the image download whose writes fail with ENOSPC after ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller
        if "w" not in mode and "a" not in mode:
            return handle
        limit = self.limit
        write = handle.write

        def limited(data: Any) -> int:
            nonlocal limit
            if len(data) > limit:
                write(data[:limit])
                limit = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
            limit -= len(data)
            return int(write(data))

        handle.write = limited  # type: ignore[method-assign]
        return handle


def run_server_trial(trial: ServerTrial, published: Published, workdir: Path) -> TrialResult:
    """One ``bridge fetch`` against a server with ``trial``'s faults, the cache audit, and the re-run."""
    from bridge.source import trust_server

    workdir.mkdir(parents=True, exist_ok=True)
    faults = [Fault(**{k: v for k, v in vars(f).items() if k != "hits"}) for f in trial.faults]  # fresh counters
    data_dir = workdir / "data"
    config = workdir / "config.toml"
    config.write_text("", encoding="utf-8")
    with contextlib.ExitStack() as stack, Stopwatch() as watch:
        server = stack.enter_context(FaultyServer(published.public, faults, tls=trial.tls, workdir=workdir))
        if trial.disk == "tmpfs" and not stack.enter_context(_tiny_disk(data_dir, "48k")):
            raise RuntimeError("cannot mount a tmpfs here (needs root)")
        trust_server(server.url, published.root_json, data_dir=data_dir)
        env = {
            "BRIDGE_CONFIG": str(config),
            "BRIDGE_DATA_DIR": str(data_dir),
            "BRIDGE_SERVER_URL": server.url,
            "BRIDGE_HTTP_TIMEOUT_S": str(trial.timeout_s),
            "COLUMNS": "200",
        }
        patch = _FullDisk(published.image.__len__() // 3) if trial.disk == "patched" else None
        code, _out, err = _fetch(env, patch)
        message, hint = _parse(err)
        known = {published.sha256: published.image}
        audit = audit_cache(data_dir, known)
        outcome, why = _classify(trial, code, err, message, hint, audit, published)
        rerun: Outcome | None = None
        resumed = ""
        if outcome is Outcome.ABORT and trial.rerun:
            server.heal()
            if trial.disk == "tmpfs":
                subprocess.run(["mount", "-o", "remount,size=8m", str(data_dir)], capture_output=True, check=True)
            before = len(server.log)
            code2, _out2, err2 = _fetch(env, None)
            message2, hint2 = _parse(err2)
            audit2 = audit_cache(data_dir, known)
            rerun, why2 = _classify(
                ServerTrial(trial.fault_class, trial.name, expect=frozenset({Outcome.NEW})),
                code2,
                err2,
                message2,
                hint2,
                audit2,
                published,
            )
            audit.corrupt += audit2.corrupt
            ranges = [r for _, p, status, r in server.log[before:] if p.endswith(".bin") and status == 206]
            if ranges:
                resumed = f"re-run resumed with {ranges[0]}"
            if why2:
                why = f"{why}; re-run: {why2}".strip("; ")
    detail = "; ".join(
        x
        for x in (
            f"partial kept: {max(audit.partial.values()):,} bytes" if audit.partial else "",
            resumed,
            why,
            "; ".join(audit.corrupt),
        )
        if x
    )
    return TrialResult(
        fault_class=trial.fault_class,
        name=trial.name,
        outcome=outcome,
        expected=trial.expect,
        exit_code=code,
        message=message,
        hint=hint,
        detail=detail,
        corrupt_files=len(audit.corrupt),
        rerun=rerun,
        duration_s=watch.elapsed_s,
    )


def _fetch(env: dict[str, str], patch: _FullDisk | None) -> tuple[int, str, str]:
    if patch is None:
        return _cli(["fetch"], env)
    import bridge.source.fetcher as fetcher

    fetcher.open = patch  # type: ignore[attr-defined]
    try:
        return _cli(["fetch"], env)
    finally:
        del fetcher.open  # type: ignore[attr-defined]


def _classify(
    trial: ServerTrial, code: int, err: str, message: str, hint: str, audit: CacheAudit, published: Published
) -> tuple[Outcome, str]:
    if "Traceback (most recent call last)" in err:
        return Outcome.TRACEBACK, err.strip().splitlines()[-1]
    if code == 0:
        if published.sha256 in audit.images:
            return Outcome.NEW, ""
        return Outcome.WRONG, "exit 0 but the image is not in the cache"
    problem = check_message(message, hint, code, trial.exit_codes)
    if not problem and trial.message and not re.search(trial.message, message):
        problem = f"the message does not say {trial.message!r}"
    if published.sha256 in audit.images:
        problem = (problem + "; " if problem else "") + "failed, yet the image is in the cache"
    return (Outcome.WRONG, problem) if problem else (Outcome.ABORT, "")


def server_trials(image_bytes: int, *, full: bool, tmpfs: bool) -> list[ServerTrial]:
    """The server fault catalogue for a released image of ``image_bytes`` bytes."""
    cut = image_bytes * 2 // 5
    trials: list[ServerTrial] = []
    statuses = (500, 502, 503, 504) if full else (503,)
    targets = ("timestamp", "snapshot", "targets", "index", "image") if full else ("timestamp", "image")
    for status in statuses:
        for target in targets:
            trials.append(
                ServerTrial(
                    "server: 5xx",
                    f"HTTP {status} for {target}",
                    (Fault("status", target, status=status),),
                    exit_codes=frozenset({9}),
                    message=rf"HTTP {status}",
                )
            )
    stall_targets = targets if full else ("timestamp", "image")
    trials += [
        ServerTrial(
            "server: timeouts",
            f"no answer for {target}",
            (Fault("stall", target, seconds=2.5),),
            exit_codes=frozenset({9}),
            message=r"did not answer within|timed? ?out",
        )
        for target in stall_targets
    ]
    trials += [
        ServerTrial(
            "server: truncated bodies",
            f"{target} cut short",
            (Fault("truncate", target, at=cut if target == "image" else 40, times=1),),
            exit_codes=frozenset({9}),
        )
        for target in (targets if full else ("timestamp", "targets", "image"))
    ]
    trials += [
        ServerTrial(
            "server: over-long bodies",
            f"{target} {extra:,} bytes too long",
            (Fault("overlong", target, extra=extra),),
        )
        for target in targets
        for extra in ((7, 70_000) if target in ("image", "timestamp") else (7,))
    ]
    trials += [
        ServerTrial(
            "server: over-long bodies",
            f"{target} replaced by other bytes of the same length",
            (Fault("garbage", target),),
            exit_codes=frozenset({6}),
        )
        for target in (("snapshot", "targets", "index", "image") if full else ("image",))
    ]
    trials += [
        ServerTrial(
            "server: Range",
            "download cut short, then the server ignores Range (200, whole file)",
            (Fault("truncate", "image", at=cut, times=1), Fault("ignore-range", "image", persistent=True)),
            exit_codes=frozenset({9}),
        ),
        ServerTrial(
            "server: Range",
            "download cut short, then 206 from the wrong offset",
            (Fault("truncate", "image", at=cut, times=1), Fault("wrong-range", "image", persistent=True)),
            exit_codes=frozenset({9}),
        ),
        ServerTrial(
            "server: interrupted download resumes",
            "connection lost at 40 % of the image",
            (Fault("truncate", "image", at=cut, times=1),),
            exit_codes=frozenset({9}),
        ),
        ServerTrial(
            "server: interrupted download resumes",
            "connection lost at 40 %, then at 70 %",
            (Fault("truncate", "image", at=cut, times=1), Fault("truncate", "image", at=cut * 3 // 4, times=1)),
            exit_codes=frozenset({9}),
        ),
    ]
    trials += [
        ServerTrial(
            "server: redirect loops",
            f"{target} redirects to itself",
            (Fault("redirect-loop", target),),
            exit_codes=frozenset({9}),
            message=r"redirect",
        )
        for target in (("timestamp", "image") if full else ("timestamp",))
    ]
    trials += [
        ServerTrial(
            "server: TLS",
            "self-signed certificate",
            tls=True,
            rerun=False,
            exit_codes=frozenset({9}),
            message=r"TLS|certificate",
        ),
    ]
    trials.append(
        ServerTrial(
            "server: disk full while caching",
            "image write fails with ENOSPC (patched write)",
            disk="patched",
            exit_codes=frozenset({9}),
            message=r"No space left|disk",
        )
    )
    if tmpfs:
        trials.append(
            ServerTrial(
                "server: disk full while caching",
                "data folder on a 48 KB tmpfs",
                disk="tmpfs",
                exit_codes=frozenset({9}),
                message=r"No space left|disk",
            )
        )
    return trials


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
