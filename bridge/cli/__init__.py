"""The ``bridge`` command line (typer + rich). ``bridge --help`` lists every command."""

from __future__ import annotations

import logging
import sys

import typer

from bridge.cli import _commands
from bridge.cli._common import GlobalOptions, fail
from bridge.errors import BridgeError, ExitCode

app = typer.Typer(
    name="bridge",
    help=(
        "Update ESP32 firmware over Bluetooth LE.\n\n"
        "Technician: `bridge status`, `bridge sync`, `bridge push BOARD FILE`.\n"
        "Release engineer: `bridge repo --help`, `bridge image info FILE`.\n"
        "No hardware at hand? `bridge demo` runs the whole job on a simulated board."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    hci: str | None = typer.Option(
        None,
        "--hci",
        envvar="BRIDGE_HCI",
        help=(
            "Drive a Bluetooth controller directly through Bumble instead of the OS stack: "
            "usb:0, serial:/dev/ttyACM0,1000000, tcp-client:127.0.0.1:9100 (needs the `sim` extra)."
        ),
    ),
    config: str | None = typer.Option(
        None, "--config", envvar="BRIDGE_CONFIG", help="Configuration file (TOML) instead of the default one."
    ),
    debug: bool = typer.Option(False, "--debug", help="Log details to stderr and show tracebacks."),
) -> None:
    ctx.obj = GlobalOptions(hci=hci, config_file=config, debug=debug)
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")


_commands.register_all(app)


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv
    try:
        app()
    except BridgeError as exc:  # raised outside `run` (e.g. while parsing a config file)
        if debug:
            raise
        fail(exc)
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
