"""The ``bridge`` command line (typer + rich). ``bridge --help`` lists every command."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from typer import _click  # typer vendors click: its exceptions are not the `click` package's
from typer.core import TyperGroup

from bridge.cli import _commands
from bridge.cli._common import (
    BROKEN_PIPE_EXIT,
    FLAG,
    GlobalOptions,
    err_console,
    fail,
    internal_error,
    set_debug,
    silence_stdout,
)
from bridge.errors import BridgeError, ExitCode


class _SafeGroup(TyperGroup):
    """Runs every command inside the CLI's last safety net.

    A closed stdout (``bridge log | head -1``) ends quietly with exit 141 (128 + SIGPIPE, as a shell reports
    a program killed by a broken pipe); a ``BridgeError`` nobody caught becomes its message and exit code; any
    other exception is a bug: one ``internal error`` line and exit 1 (``--debug`` prints the traceback).
    """

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (_click.exceptions.ClickException, typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(BROKEN_PIPE_EXIT) from None
        except BridgeError as exc:
            fail(exc)
        except Exception as exc:
            internal_error(exc)


def _version(value: bool) -> None:
    if value:
        from bridge import __version__

        typer.echo(f"bridge {__version__}")
        raise typer.Exit()


def _warn_unknown_env() -> None:
    from bridge.config import KNOWN_ENV_VARS, unknown_env_vars

    for name in unknown_env_vars(os.environ):
        err_console.print(
            f"warning: ignoring unknown environment variable {name} (known: {', '.join(KNOWN_ENV_VARS)})",
            markup=False,
            soft_wrap=True,
        )


app = typer.Typer(
    cls=_SafeGroup,
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
    debug: bool = typer.Option(False, "--debug", metavar=FLAG, help="Log details to stderr and show tracebacks."),
    version: bool = typer.Option(
        False, "--version", metavar=FLAG, is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = GlobalOptions(hci=hci, config_file=config, debug=debug)
    set_debug(debug)
    _warn_unknown_env()
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")


_commands.register_all(app)


def main() -> None:
    """Console-script entry point."""
    set_debug("--debug" in sys.argv)
    try:
        app()
    except BridgeError as exc:  # raised outside a command (e.g. while parsing a config file)
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        silence_stdout()
        sys.exit(BROKEN_PIPE_EXIT)
    except Exception as exc:  # the last safety net: a bug, never a raw traceback unless --debug
        try:
            internal_error(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
