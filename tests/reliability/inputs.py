"""Hostile input through the real CLI: wrong images, broken configuration, unknown boards, nonsense flags.

Every trial runs one ``bridge`` command in-process (typer's ``CliRunner``) with a fresh configuration file and data
folder, and checks what a person sees: the documented exit code, one message saying what is wrong, a hint saying
what to do, and no traceback. Image refusals must come before any Bluetooth activity: the push trials name a board
address that does not exist and run without a radio, so anything past the refusal would fail differently (exit 4
or 5), and the repository must be byte-for-byte unchanged after a refused ``bridge repo add``.

Unknown-board trials use a virtual radio: a :class:`bridge.sim.VirtualWorld` with one simulated board, run in a
background thread and reached through ``--hci tcp-client:...`` exactly as ``bridge sim`` is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .matrix import Outcome, Stopwatch, TrialResult, check_message

__all__ = ["InputTrial", "VirtualRadio", "input_trials", "run_input_trial", "virtual_radio"]

_NOWHERE = "AA:BB:CC:DD:EE:FF"


@dataclass(frozen=True)
class InputTrial:
    fault_class: str
    name: str
    args: tuple[str, ...]
    """The command line; ``{repo}``, ``{hci}``, ``{dir}``, ``{board}`` are filled in at run time."""
    exit_codes: frozenset[int]
    message: str = ""
    """A regular expression the message (or the usage error) must match."""
    config: str = ""
    """Contents of the configuration file (bytes via latin-1 for undecodable files)."""
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    """Makes files the trial needs inside its folder."""
    radio: bool = False
    """Needs the virtual radio (``{hci}``)."""
    repo_unchanged: bool = False


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _parse(err: str, out: str) -> tuple[str, str]:
    """The message and the hint a person reads: ``error:`` / ``hint:`` lines, or click's usage box."""
    message = hint = ""
    for line in (err + "\n" + out).splitlines():
        text = line.strip().strip("│").strip()
        if line.startswith("error:"):
            message = line.removeprefix("error:").strip()
        elif line.startswith("hint:"):
            hint = line.removeprefix("hint:").strip()
        elif text.startswith("Try '") and "for help" in text:
            hint = hint or text
        elif not message and text.startswith(("No such", "Missing", "Invalid value", "Got unexpected", "Option")):
            message = text
        elif not message and "not connected" in text:  # `bridge status`: the table row says why
            message = " ".join(text.split())
    return message, hint


@dataclass
class VirtualRadio:
    hci: str
    board_address: str
    board_name: str


@contextlib.contextmanager
def virtual_radio() -> Iterator[VirtualRadio]:
    """A virtual world with one simulated board in a background thread; its HCI controller on a TCP port."""
    from bridge.image import Chip
    from bridge.sim.config import SimBoardConfig
    from bridge.sim.world import VirtualWorld

    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    found: dict[str, Any] = {}

    async def main() -> None:
        nonlocal stop, loop
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        try:
            async with VirtualWorld() as world:
                board = await world.add_board(SimBoardConfig(name="rel-in", chip=Chip.ESP32C3, project="blink"))
                host, port = await world.expose_hci()
                found["radio"] = VirtualRadio(f"tcp-client:{host}:{port}", board.address, board.name)
                ready.set()
                await stop.wait()
        except BaseException as exc:
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="virtual-radio", daemon=True)
    thread.start()
    ready.wait(30)
    if "radio" not in found:
        raise RuntimeError(f"the virtual radio did not start: {found.get('error')!r}")
    try:
        yield found["radio"]
    finally:
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(15)


def run_input_trial(trial: InputTrial, workdir: Path, *, repo: Path, radio: VirtualRadio | None) -> TrialResult:
    from typer.testing import CliRunner

    from bridge.cli import app

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_bytes(trial.config.encode("latin-1"))
    if trial.setup is not None:
        trial.setup(workdir)
    values = {
        "repo": str(repo),
        "dir": str(workdir),
        "hci": radio.hci if radio else "",
        "board": radio.board_address if radio else "",
    }
    args = [a.format(**values) for a in trial.args]
    env = {"BRIDGE_CONFIG": str(config), "BRIDGE_DATA_DIR": str(workdir / "data"), "COLUMNS": "200", **trial.env}
    before = _tree_digest(repo) if trial.repo_unchanged else ""
    with Stopwatch() as watch:
        result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)
    out, err = result.stdout, result.stderr
    message, hint = _parse(err, out)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    detail = ""
    if crashed or "Traceback (most recent call last)" in out + err:
        outcome, detail = Outcome.TRACEBACK, repr(result.exception)
    else:
        problem = check_message(message, hint, result.exit_code, trial.exit_codes)
        if not problem and trial.message and not re.search(trial.message, message, re.IGNORECASE):
            problem = f"the message does not match {trial.message!r}"
        if trial.repo_unchanged and _tree_digest(repo) != before:
            problem = (problem + "; " if problem else "") + "the repository changed"
        outcome, detail = (Outcome.WRONG, problem) if problem else (Outcome.ABORT, "")
    return TrialResult(
        fault_class=trial.fault_class,
        name=trial.name,
        outcome=outcome,
        expected=frozenset({Outcome.ABORT}),
        exit_code=result.exit_code,
        message=message,
        hint=hint,
        detail=detail,
        duration_s=watch.elapsed_s,
    )


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return setup


def _sparse(name: str, size: int) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        with open(folder / name, "wb") as handle:
            handle.truncate(size)

    return setup


def input_trials(firmware: Path | None) -> list[InputTrial]:
    """The input catalogue. ``firmware``: the corpus folder (its N* and C* files); None leaves those out."""
    refused = frozenset({6})
    trials: list[InputTrial] = []
    negatives = sorted(firmware.glob("[NC][0-9][0-9]_*.bin")) if firmware is not None else []
    for path in negatives:
        trials.append(
            InputTrial("input: wrong image to `bridge push`", path.name, ("push", _NOWHERE, str(path)), refused)
        )
    for path in negatives:
        trials.append(
            InputTrial(
                "input: wrong image to `bridge repo add`",
                path.name,
                ("repo", "add", "{repo}", str(path)),
                refused,
                repo_unchanged=True,
            )
        )
    odd_files = [
        ("empty file", _write("empty.bin", b""), "empty.bin"),
        ("16 random bytes", _write("tiny.bin", bytes(range(16))), "tiny.bin"),
        ("1 MB of random bytes", _write("random.bin", hashlib.sha256(b"r").digest() * 32768), "random.bin"),
        ("17 MB of zeros (sparse)", _sparse("huge.bin", 17 * 1024 * 1024), "huge.bin"),
        ("a text file", _write("notes.bin", b"firmware v2, see attached\n" * 40), "notes.bin"),
    ]
    for label, setup, name in odd_files:
        trials.append(
            InputTrial("input: odd files", f"push: {label}", ("push", _NOWHERE, "{dir}/" + name), refused, setup=setup)
        )
        trials.append(
            InputTrial(
                "input: odd files",
                f"repo add: {label}",
                ("repo", "add", "{repo}", "{dir}/" + name),
                refused,
                setup=setup,
                repo_unchanged=True,
            )
        )
    trials += [
        InputTrial("input: odd files", "push: a missing file", ("push", _NOWHERE, "{dir}/nope.bin"), frozenset({2, 6})),
        InputTrial("input: odd files", "push: a folder", ("push", _NOWHERE, "{dir}"), frozenset({2, 6})),
        InputTrial("input: odd files", "image info: a folder", ("image", "info", "{dir}"), frozenset({2})),
        InputTrial(
            "input: odd files", "repo add: not a repository", ("repo", "add", "{dir}", "{dir}/x.bin"), frozenset({11})
        ),
    ]
    bad_configs = [
        ("TOML syntax error", "server_url = \n", r"not valid TOML"),
        ("a string for a number", 'ack_timeout_s = "fast"\n', r"ack_timeout_s"),
        ("a negative count", "reconnect_attempts = -1\n", r"reconnect_attempts"),
        ("an unknown key", 'colour = "red"\n', r"unknown key 'colour'"),
        ("an ftp:// server", 'server_url = "ftp://x"\n', r"server_url"),
        ("bytes that are not UTF-8", "\xff\xfe\x00bad = 1\n", r"cannot read|UTF-8|utf-8"),
        ("an empty channel", '[bridge]\nchannel = ""\n', r"channel"),
        ("a number for a path", "data_dir = 5\n", r"data_dir"),
        ("a table declared twice", "[bridge]\n[bridge]\n", r"not valid TOML"),
        ("an infinite timeout", "ack_timeout_s = inf\n", r"ack_timeout_s"),
        ("a NaN timeout", "reply_timeout_s = nan\n", r"reply_timeout_s"),
        ("a window too small", "max_window_bytes = 12\n", r"max_window_bytes"),
        ("[bridge] as a value", 'bridge = "yes"\n', r"\[bridge\] must be a table"),
    ]
    trials += [
        InputTrial(
            "input: malformed configuration",
            label,
            ("status", _NOWHERE),
            frozenset({10}),
            message=pattern,
            config=text,
        )
        for label, text, pattern in bad_configs
    ]
    trials += [
        InputTrial(
            "input: malformed configuration",
            "a missing --config file",
            ("--config", "{dir}/none.toml", "status", _NOWHERE),
            frozenset({10}),
            message=r"does not exist",
        ),
        InputTrial(
            "input: malformed configuration",
            "a folder as --config",
            ("--config", "{dir}", "status", _NOWHERE),
            frozenset({10}),
        ),
        InputTrial(
            "input: malformed configuration",
            "BRIDGE_ACK_TIMEOUT_S=abc",
            ("status", _NOWHERE),
            frozenset({10}),
            message=r"BRIDGE_ACK_TIMEOUT_S",
            env={"BRIDGE_ACK_TIMEOUT_S": "abc"},
        ),
        InputTrial(
            "input: malformed configuration",
            "BRIDGE_SERVER_URL=not-a-url",
            ("sync", "--yes"),
            frozenset({10}),
            message=r"server_url",
            env={"BRIDGE_SERVER_URL": "not-a-url"},
        ),
    ]
    nonsense = [
        ("an unknown command", ("frobnicate",), frozenset({2})),
        ("push without arguments", ("push",), frozenset({2})),
        ("an unknown option", ("push", "--bogus", _NOWHERE, "x.bin"), frozenset({2})),
        ("a word for a number", ("scan", "--timeout", "abc"), frozenset({2})),
        ("a board and --all", ("sync", _NOWHERE, "--all"), frozenset({2})),
        ("an unknown HCI transport", ("--hci", "bogus:0", "scan"), frozenset({2})),
        ("a negative log limit", ("log", "-n", "-5"), frozenset({2})),
        ("a port out of range", ("repo", "serve", "{repo}", "--port", "99999"), frozenset({2})),
        ("prune keeping -1 releases", ("repo", "prune", "{repo}", "--keep", "-1"), frozenset({11})),
        ("sync without a server", ("sync", "--yes"), frozenset({2})),
        ("sync without a terminal or --yes", ("sync",), frozenset({2})),
        ("image info without a file", ("image", "info"), frozenset({2})),
        ("an unknown chip for image info", ("image", "info", "{dir}/x.bin", "--chip", "esp9000"), frozenset({2})),
    ]
    trials += [
        InputTrial("input: nonsense flags", label, args, codes)
        for label, args, codes in nonsense
        if label != "sync without a terminal or --yes"
    ]
    trials.append(
        InputTrial(
            "input: nonsense flags",
            "sync without a terminal or --yes",
            ("sync",),
            frozenset({2}),
            env={"BRIDGE_SERVER_URL": "http://127.0.0.1:9/repo"},
            message=r"terminal",
        )
    )
    trials += [
        InputTrial(
            "input: unknown board",
            "push to a name no board advertises",
            ("--hci", "{hci}", "push", "no-such-board", "{dir}/ok.bin"),
            frozenset({4}),
            setup=_valid_image("ok.bin"),
            radio=True,
            env={"BRIDGE_SCAN_TIMEOUT_S": "1.5"},
        ),
        InputTrial(
            "input: unknown board",
            "status of an address nobody has",
            ("--hci", "{hci}", "status", "C0:0A:7A:00:EE:EE"),
            frozenset({4}),
            radio=True,
            env={"BRIDGE_CONNECT_TIMEOUT_S": "1.5", "BRIDGE_CONNECT_RETRIES": "0"},
        ),
        InputTrial(
            "input: unknown board",
            "push to an address nobody has",
            ("--hci", "{hci}", "push", "C0:0A:7A:00:EE:EE", "{dir}/ok.bin"),
            frozenset({4, 5}),
            setup=_valid_image("ok.bin"),
            radio=True,
            env={"BRIDGE_CONNECT_TIMEOUT_S": "1.5", "BRIDGE_CONNECT_RETRIES": "0"},
        ),
        InputTrial(
            "input: unknown board",
            "push an ESP32 image to the ESP32-C3 board",
            ("--hci", "{hci}", "push", "{board}", "{dir}/esp32.bin"),
            frozenset({6}),
            message=r"chip|ESP32",
            setup=_valid_image("esp32.bin", chip="ESP32"),
            radio=True,
        ),
        InputTrial(
            "input: unknown board",
            "push another project's image",
            ("--hci", "{hci}", "push", "{board}", "{dir}/other.bin"),
            frozenset({6}),
            message=r"project",
            setup=_valid_image("other.bin", project="doorbell"),
            radio=True,
        ),
    ]
    return trials


def _valid_image(name: str, *, chip: str = "ESP32C3", project: str = "blink") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        from bridge.image import Chip, build_image

        (folder / name).write_bytes(build_image(chip=Chip[chip], project=project, version="9.9.9"))

    return setup
