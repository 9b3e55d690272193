"""What every CLI command shares: global options, output, and turning errors into exit codes.

Only ``bridge.cli`` imports typer and rich, and only the CLI calls ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bridge.errors import BridgeError, ExitCode

T = TypeVar("T")

#: Width of a console that is not a terminal: wide enough that rich never wraps or truncates an identifier
#: (versions, addresses, paths, fingerprints) when the output is piped into a file, ``grep`` or a script.
PIPE_WIDTH = 100_000


class _Console(Console):
    """rich's Console, but a closed pipe ends the program with ``BROKEN_PIPE_EXIT`` (rich would exit 1)."""

    def on_broken_pipe(self) -> None:
        if self.stderr:
            self.quiet = True  # nobody reads the diagnostics any more: carry on without them
            return
        silence_stdout()
        raise SystemExit(BROKEN_PIPE_EXIT)


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return _Console(stderr=stderr, highlight=False, width=None if tty else PIPE_WIDTH)


#: Human output goes to stdout; diagnostics and progress to stderr, so ``--json`` output stays parseable.
#: On a terminal rich fits the output to the window; otherwise lines are never wrapped (see ``PIPE_WIDTH``).
console = _console(stderr=False)
err_console = _console(stderr=True)

#: A boolean flag's metavar: typer would otherwise show ``--json <bool>`` although the flag takes no value.
FLAG = ""


@dataclass
class GlobalOptions:
    """Options given before the command name (``bridge --hci usb:0 status``)."""

    hci: str | None = None
    config_file: str | None = None
    debug: bool = False


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    if isinstance(obj, GlobalOptions):
        return obj
    return GlobalOptions()


#: Exit status when stdout is closed early (``bridge log | head -1``): 128 + SIGPIPE, what a shell reports for a
#: program killed by a broken pipe. Nothing is printed: the reader chose to stop reading.
BROKEN_PIPE_EXIT = 141


@dataclass
class _State:
    debug: bool = False


_state = _State()


def set_debug(debug: bool) -> None:
    """``--debug``: errors also print their traceback (the chain of causes) on stderr."""
    _state.debug = debug


def debug_enabled() -> bool:
    return _state.debug


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (tests): nothing to protect
        pass


def internal_error(exc: BaseException) -> NoReturn:
    """The last safety net: a bug, not a user mistake. One line, or the traceback with ``--debug``."""
    if _state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    err_console.print(
        f"internal error: {detail} (run with --debug for the traceback; please report it)",
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(int(ExitCode.INTERNAL))


def fail(error: BridgeError, *, as_json: bool = False) -> NoReturn:
    """Print ``error`` as one clear sentence plus what to do, and exit with its code."""
    if _state.debug and error.__traceback__ is not None:
        traceback.print_exception(error, file=sys.stderr)
    if as_json:
        payload = {
            "ok": False,
            "error": type(error).__name__,
            "code": getattr(error, "code", None),
            "message": error.message,
            "hint": error.hint,
            "exit_code": int(error.exit_code),
        }
        console.print_json(json.dumps(payload, default=str))
    else:
        # Messages quote user input and file contents ("[bridge] must be a table"): never read them as markup.
        err_console.print(f"[bold red]error:[/] {escape(error.message)}", markup=True, soft_wrap=True)
        if error.hint:
            err_console.print(f"[dim]hint:[/] {escape(error.hint)}", markup=True, soft_wrap=True)
    raise typer.Exit(int(error.exit_code))


def run(coro_factory: Callable[[], Coroutine[Any, Any, T]], *, as_json: bool = False) -> T:
    """Run one async job for a command: the only place the CLI enters asyncio.

    ``BridgeError`` becomes a message and its exit code; Ctrl-C (and SIGTERM, e.g. from a service manager) cancel
    the job and become exit 130 after its own cancellation handlers ran. The message says what the cancellation
    did: a sync or push records how far it got (:func:`bridge.api.last_interruption`): nothing sent, upload
    aborted, or already committed (the board is rebooting into the new image).

    Bumble and asyncio log through Python logging; without ``--debug`` only their critical records reach stderr
    (a lost controller surfaces as our own error instead of their tracebacks).
    """
    import logging
    import signal

    from bridge.api import last_interruption

    terminated = False

    async def main() -> T:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            installed = False
        try:
            return await coro_factory()
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGTERM)

    debug = logging.getLogger().isEnabledFor(logging.DEBUG)  # `--debug` configured logging at DEBUG
    quiet = [] if debug else [logging.getLogger(name) for name in ("bumble", "asyncio")]
    levels = [(logger, logger.level) for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    last_interruption(clear=True)
    try:
        return asyncio.run(main())
    except BridgeError as exc:
        fail(exc, as_json=as_json)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not terminated:
            raise
        interruption = last_interruption(clear=True)
        if interruption is None:
            message = "terminated (SIGTERM)." if terminated else "interrupted."
        else:
            message = interruption.message("terminated (SIGTERM):" if terminated else "interrupted")
        err_console.print(message, markup=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    finally:
        for logger, level in levels:
            logger.setLevel(level)


def print_json(data: Any) -> None:
    """Print machine-readable output on stdout (one JSON document)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
