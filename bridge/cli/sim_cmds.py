"""``bridge sim``: run a simulated ESP32 board that another process reaches through ``--hci tcp-client:...``.

The board lives on a Bumble virtual link inside this process; one more virtual controller on that link is
exposed as HCI over TCP. A second process (``bridge --hci tcp-client:HOST:PORT scan``) drives that controller
with its own Bumble host, so it finds, connects and updates the board exactly as it would over a USB dongle.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bridge.cli._common import FLAG, console, err_console, fail, global_options, run
from bridge.errors import ImageError, TransportError, UsageError

__all__ = ["register"]

_EXTRA_HINT = "Install the simulator extra: pip install 'ota-bridge[sim]'."
_ERASE = {"sequential": 0, "up-front": 1, "ahead-64k": 2}
_SELF_TEST = ("pass", "fail", "no-confirm")
_FAULT_KEYS = {
    "disconnect-at": "disconnect_at_offsets",
    "drop": "drop_frames",
    "duplicate": "duplicate_frames",
    "corrupt": "corrupt_frames",
    "power-loss-at": "power_loss_at_offset",
    "slow-flash": "flash_slowdown",
    "rx-buffer": "rx_buffer_bytes",
    "ack-lie": "ack_lie_bytes",
}


def register(app: typer.Typer) -> None:
    """Add ``bridge sim`` to ``app``."""
    app.command("sim")(sim_cmd)


def sim_cmd(
    ctx: typer.Context,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="Initial app image in ota_0 (default: a built image of --project/--version).",
            dir_okay=False,
        ),
    ] = None,
    chip: Annotated[
        str | None, typer.Option("--chip", help="esp32, esp32c3, ESP32-S3 ... (default: the image's).")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project of the built image (default: blink).")
    ] = None,
    version: Annotated[str, typer.Option("--version", help="Version of the built initial image.")] = "1.0.0",
    secure_version: Annotated[
        int, typer.Option("--secure-version", min=0, help="secure_version of the built image.")
    ] = 0,
    efuse_secure_version: Annotated[
        int, typer.Option("--efuse-secure-version", min=0, help="Anti-rollback eFuse.")
    ] = 0,
    name: Annotated[
        str | None, typer.Option("--name", help="Advertised name, up to 8 bytes (default OTA-xxxx).")
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="Keep flash and eFuses in this file: the board survives restarts.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address the HCI TCP port listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HCI TCP port (0: any free port).")] = 0,
    erase: Annotated[str, typer.Option("--erase", help="sequential | up-front | ahead-64k")] = "sequential",
    window_bytes: Annotated[int, typer.Option("--window", min=1, help="Receive window in bytes.")] = 16 * 1024,
    ota_size: Annotated[
        int, typer.Option("--ota-size", min=0x10000, help="Size of each OTA partition (multiple of 64 KB).")
    ] = 0x1E0000,
    time_scale: Annotated[
        float, typer.Option("--time-scale", min=0.0, help="Flash erase/program time: 1 = ESP32 flash, 0 = instant.")
    ] = 1.0,
    boot_time_s: Annotated[
        float, typer.Option("--boot-time", min=0.0, help="Seconds from reset to advertising.")
    ] = 1.0,
    self_test: Annotated[
        str, typer.Option("--self-test", help="What a new image does: pass | fail | no-confirm")
    ] = "pass",
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="KEY=VALUE, repeatable: " + ", ".join(_FAULT_KEYS) + " (frame numbers from 1)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", metavar=FLAG, help="Print one JSON line (hci transport, boards), then run."),
    ] = False,
) -> None:
    """Run a simulated ESP32 board and print how another process reaches it (``--hci tcp-client:...``).

    It runs until Ctrl-C (or SIGTERM); with --state the board's flash and eFuses are saved on the way out.
    """
    if global_options(ctx).hci:
        fail(UsageError("`bridge sim` makes its own radio and takes no --hci", hint="Drop the global --hci option."))
    if state is not None and state.is_dir():
        fail(
            UsageError(
                f"--state {state} is a folder",
                hint="Give the path of a state file, e.g. --state board.sim (created if missing).",
            ),
            as_json=as_json,
        )
    try:
        from bridge.sim.config import SelfTest, SimBoardConfig

        config = SimBoardConfig(
            name=name,
            chip=_chip(chip, image),
            project=project or "blink",
            initial_image=_initial_image(image),
            initial_version=version,
            initial_secure_version=secure_version,
            efuse_secure_version=efuse_secure_version,
            ota_partition_bytes=ota_size,
            erase_strategy=_erase(erase),
            window_bytes=window_bytes,
            time_scale=time_scale,
            boot_time_s=boot_time_s,
            self_test=SelfTest(_choice("--self-test", self_test, _SELF_TEST)),
            state_file=state,
            faults=_faults(fault or []),
        )
    except ModuleNotFoundError as exc:
        fail(UsageError(f"the simulator needs Bumble ({exc.name} is missing)", hint=_EXTRA_HINT))
    except ValueError as exc:
        fail(UsageError(str(exc), hint="See `bridge sim --help` for the accepted values."))
    with contextlib.nullcontext() if global_options(ctx).debug else _board_log():
        run(lambda: _serve(config, host, port, as_json=as_json), as_json=as_json)


def _choice(option: str, value: str, allowed: tuple[str, ...] | dict[str, int]) -> str:
    if value not in allowed:
        raise ValueError(f"{option} {value!r}: expected one of {', '.join(allowed)}")
    return value


def _erase(value: str) -> Any:
    from protocol import EraseStrategy

    return EraseStrategy(_ERASE[_choice("--erase", value, _ERASE)])


def _chip(chip: str | None, image: Path | None) -> Any:
    from bridge.image import Chip, inspect_image

    if chip is not None:
        return Chip.parse(chip)
    if image is not None and image.is_file():
        info = inspect_image(image)
        if info.chip is not None:
            return info.chip
    return Chip.ESP32


def _initial_image(image: Path | None) -> bytes | None:
    if image is None:
        return None
    from bridge.image import validate_image

    if not image.is_file():
        raise ValueError(f"--image {image}: no such file")
    try:
        validate_image(image)
    except ImageError as exc:
        raise ValueError(f"--image {image}: {exc.message}") from None
    return image.read_bytes()


def _faults(items: list[str]) -> Any:
    from bridge.sim.config import SimFaults

    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in _FAULT_KEYS:
            raise ValueError(f"--fault {item!r}: expected KEY=VALUE with KEY one of {', '.join(_FAULT_KEYS)}")
        field = _FAULT_KEYS[key]
        try:
            number: int | float = float(raw) if field == "flash_slowdown" else int(raw, 0)
        except ValueError:
            raise ValueError(f"--fault {item!r}: {raw!r} is not a number") from None
        if field == "disconnect_at_offsets":
            values[field] = (*values.get(field, ()), number)
        elif field in ("drop_frames", "duplicate_frames", "corrupt_frames"):
            values[field] = values.get(field, frozenset()) | {number}
        else:
            values[field] = number
    return SimFaults(**values)


@contextlib.contextmanager
def _board_log() -> Iterator[None]:
    """Board events (boot, rollback, faults) as dim lines on stderr while the command runs.

    The handler goes when the command ends: run in-process (tests, an embedding app), it must not outlive the
    stderr it writes to.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  [board] %(message)s"))
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in ("bridge.sim.board", "bridge.sim.firmware"):
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate))
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        log.propagate = False
    try:
        yield
    finally:
        for log, level, propagate in saved:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate


async def _serve(config: Any, host: str, port: int, *, as_json: bool) -> None:
    from bridge.sim.world import VirtualWorld

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: Ctrl-C arrives as KeyboardInterrupt
            loop.add_signal_handler(signum, stop.set)
    _check_port_free(host, port)
    async with VirtualWorld() as world:
        try:
            bound_host, bound_port = await world.expose_hci(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_in_use(port) from exc
            raise TransportError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="Choose another --port (0 picks a free one), or stop the other `bridge sim`.",
            ) from exc
        try:
            board = await world.add_board(config)
        except ValueError as exc:
            raise UsageError(str(exc), hint="Check --image/--state, or start without --state.") from None
        hci = f"tcp-client:{bound_host}:{bound_port}"
        summary = _summary(board, hci)
        if as_json:
            sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
            sys.stdout.flush()
        else:
            _print_summary(summary)
        await stop.wait()
    err_console.print(
        "simulated board stopped" + (f"; state saved to {config.state_file}" if config.state_file else "")
    )


def _port_in_use(port: int) -> UsageError:
    return UsageError(
        f"port {port} is in use; pass --port 0 (any free port) or another port",
        hint="Another program, or another `bridge sim`, listens on it.",
    )


def _check_port_free(host: str, port: int) -> None:
    """UsageError if ``host:port`` is taken, before any radio is built (bound the way the simulator binds it)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_in_use(port) from exc
            # anything else (a bad --host, say) is reported by the simulator itself


def _summary(board: Any, hci: str) -> dict[str, Any]:
    slot = board.ota.next_update_partition()
    return {
        "hci": hci,
        "boards": [
            {
                "name": board.name,
                "address": board.address,
                "chip": board.chip.display_name,
                "project": board.running_project,
                "running_version": board.running_version,
                "running_partition": board.running_partition,
                "rollback_state": board.rollback_state.name,
                "next_partition": slot.label,
                "next_partition_size": slot.size,
                "erase_strategy": board.config.erase_strategy.name,
                "window_bytes": board.config.window_bytes,
                "state_file": str(board.config.state_file) if board.config.state_file else None,
            }
        ],
    }


def _print_summary(summary: dict[str, Any]) -> None:
    hci = summary["hci"]
    for b in summary["boards"]:
        console.print(f"Simulated {b['chip']} board [bold]{escape(b['name'])}[/] ({b['address']})")
        console.print(
            f"  runs {escape(b['project'])} {escape(b['running_version'])} from {b['running_partition']}; "
            f"updates go to {b['next_partition']} ({b['next_partition_size']:,} bytes); "
            f"erase {b['erase_strategy'].lower()}, window {b['window_bytes']:,} bytes",
            soft_wrap=True,
        )
        saved = f"saved in {b['state_file']}" if b["state_file"] else "not saved (--state FILE keeps it)"
        console.print(f"  state: {escape(saved)}")
    first = summary["boards"][0]["name"]
    console.print("From another terminal:")
    console.print(f"  bridge --hci {hci} scan")
    console.print(f"  bridge --hci {hci} status {escape(first)}")
    console.print(f"  bridge --hci {hci} push {escape(first)} FIRMWARE.bin")
    console.print("Ctrl-C stops the board.")
    sys.stdout.flush()
