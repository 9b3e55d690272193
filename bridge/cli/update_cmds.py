"""The technician's commands: scan, status, sync, push, fetch, log, config show, demo (issue 6).

Every command builds one :class:`bridge.Bridge` from the configuration (file < ``BRIDGE_*`` environment < flags)
and runs one coroutine through :func:`bridge.cli._common.run`. Progress and state lines go to the terminal; with
``--json`` a single JSON document goes to stdout and the state lines to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from bridge.api import BoardStatus, Bridge, UpdateState, exit_code_for_status
from bridge.cli._common import FLAG, console, err_console, fail, global_options, print_json, run
from bridge.cli.image_cmds import check_image_path
from bridge.config import BridgeConfig, default_config_file, load_config, to_toml, trusted_server_urls
from bridge.errors import BoardNotFoundError, BridgeError, ExitCode, UsageError
from bridge.events import Confirmed, Downloading, RolledBack, SyncEvent, Uploading, UpToDate, event_to_dict
from bridge.journal import Journal
from bridge.sync.timing import RateMeter

if TYPE_CHECKING:
    from bridge.ble import BoardAdvert

__all__ = ["register"]


# ---------------------------------------------------------------------------------------------------------------
# Progress display


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _rate(bps: float) -> str:
    return f"{bps / 1024:.1f} KiB/s" if bps else "- KiB/s"


class EventPrinter:
    """One line per state change, and a progress bar (bytes, rate, ETA) while downloading or uploading."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=out,
            transient=True,
        )
        self._task: TaskID | None = None
        self._last_kind = ""
        self._download_meter = RateMeter()

    def __enter__(self) -> EventPrinter:
        if self._out.is_terminal:  # a bar in a pipe or a log file is noise (and rich ends it with a blank line)
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end_bar()
        if self._progress.live.is_started:
            self._progress.stop()  # rich's stop() prints an empty line when it never drew anything: not in a pipe

    def _end_bar(self) -> None:
        if self._task is not None:
            self._progress.refresh()  # draw the last numbers (100 % when done) before the bar goes
            self._progress.remove_task(self._task)
            self._task = None

    def _bar(self, description: str, done: int, total: int, rate: str, eta: str) -> None:
        if self._task is None:
            self._task = self._progress.add_task(description, total=total or None, rate=rate, eta=eta)
        self._progress.update(self._task, completed=done, total=total or None, rate=rate, eta=eta)

    def show(self, event: SyncEvent) -> None:
        bar_kinds = {"downloading", "uploading"}
        if event.kind != self._last_kind:
            if self._last_kind in bar_kinds:
                self._end_bar()
            self._line(event)
        self._last_kind = event.kind
        if isinstance(event, Uploading):
            self._bar("upload  ", event.acked_bytes, event.total_bytes, _rate(event.rate_bps), _duration(event.eta_s))
        elif isinstance(event, Downloading):
            self._download_meter.update(event.done_bytes)
            rate, eta = self._download_meter.rate_bps, self._download_meter.eta_s(event.total_bytes)
            self._bar("download", event.done_bytes, event.total_bytes, _rate(rate), _duration(eta))

    def _line(self, event: SyncEvent) -> None:
        style = {"confirmed": "bold green", "rolled_back": "bold red", "up_to_date": "green", "verified": "green"}
        if isinstance(event, Uploading):
            text = f"uploading {event.total_bytes:,} bytes to {event.board}"
            if event.resumed_from:
                text += f", resuming at byte {event.resumed_from:,} (the board kept the rest)"
        elif isinstance(event, Downloading):
            text = f"downloading {event.total_bytes:,} bytes from the update server"
        else:
            text = str(event)
        if isinstance(event, Confirmed | RolledBack):
            text += f"; {event.bytes_sent:,} bytes sent in {event.duration_s:.1f} s"
        marker = style.get(event.kind)
        text = escape(text)
        self._progress.console.print(f"[{marker}]{text}[/]" if marker else text, markup=True, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------------------
# Shared plumbing


def _config(ctx: typer.Context, *, as_json: bool = False, **overrides: Any) -> BridgeConfig:
    options = global_options(ctx)
    try:
        return load_config(options.config_file, overrides=overrides)
    except BridgeError as exc:
        fail(exc, as_json=as_json)


#: What status and sync say when they have no server to ask.
NO_SERVER_MESSAGE = "no update server configured: set server_url in config.toml or BRIDGE_SERVER_URL"


def _with_server(config: BridgeConfig) -> BridgeConfig:
    """``config``, or, when server_url is not set and exactly one server is trusted, ``config`` using that one.

    After `bridge trust URL ...` a technician can run `bridge status` at once; the note on stderr says which
    server is used. With no trusted server, or several, server_url stays unset (status: state ``unknown``).
    """
    if config.server_url is not None:
        return config
    urls = trusted_server_urls(config.data_dir)
    if len(urls) != 1:
        return config
    err_console.print(
        f"note: using {urls[0]}, the only trusted server (server_url is not set)", markup=False, soft_wrap=True
    )
    return config.replace(server_url=urls[0])


def _bridge(ctx: typer.Context, config: BridgeConfig) -> Bridge:
    from bridge.ble import backend_from_hci

    options = global_options(ctx)
    try:
        backend = backend_from_hci(options.hci)
    except BridgeError as exc:
        fail(exc)
    return Bridge(config, backend=backend)


async def _with_bridge(bridge: Bridge, job: Callable[[Bridge], Awaitable[int]]) -> int:
    async with bridge, bridge.backend:  # the backend was made here (from --hci): close it here too
        return await job(bridge)


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


def _status_row(status: BoardStatus) -> tuple[str, str, str, str]:
    if not status.connected:
        return (status.board, status.name, "-", "[red]not connected[/]")
    running = status.running_version or "?"
    if status.state is UpdateState.OUTDATED and status.available is not None:
        state = f"[yellow]outdated[/]: {escape(status.available.version)} available"
    elif status.state is UpdateState.UPDATED:
        state = "[green]updated[/]"
    elif status.state is UpdateState.NO_UPDATE:
        state = "no update"
    else:
        state = "unknown"  # no update server configured (or it could not say)
    return (status.board, status.name, escape(running), state)


def _print_status_table(statuses: list[BoardStatus]) -> None:
    table = Table(box=None, header_style="bold")
    for column in ("board", "name", "running", "state"):
        table.add_column(column)
    for status in statuses:
        table.add_row(*_status_row(status))
    console.print(table)
    for status in statuses:
        why = status.error if not status.connected else status.note
        if why:
            offline = " (offline: from the verified cache)" if status.offline else ""
            console.print(f"  [dim]{escape(status.name or status.board)}:[/] {escape(why)}{offline}", soft_wrap=True)


def _print_board_details(status: BoardStatus) -> None:
    info = status.info
    if info is None:
        return
    for key, value in status.info_dict().items():
        console.print(f"  [dim]{key}:[/] {value}")


async def _resolve_boards(bridge: Bridge, board: str | None, *, every: bool) -> list[str | BoardAdvert]:
    """The boards a command works on: the one named, or every board the scan finds (``--all`` / none named)."""
    if board is not None:
        return [board]
    adverts = await bridge.scan()
    if not adverts:
        raise BoardNotFoundError("no board answered the scan")
    if len(adverts) > 1 and not every:
        names = ", ".join(f"{a.name or '?'} ({a.address})" for a in adverts)
        raise UsageError(f"{len(adverts)} boards found: {names}", hint="Name one board, or pass --all.")
    return list(adverts)


# ---------------------------------------------------------------------------------------------------------------
# Commands


def scan_cmd(
    ctx: typer.Context,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to listen (default: scan_timeout_s).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """List the boards in range that offer the OTA Bridge service.

    Exit status: 0 boards found; 2 bad usage; 4 no board answered; 5 Bluetooth failed; 10 configuration error.
    """
    config = _config(ctx, as_json=as_json, scan_timeout_s=timeout_s)

    async def job(bridge: Bridge) -> int:
        adverts = await bridge.scan()
        if as_json:
            print_json([{"address": a.address, "name": a.name, "rssi": a.rssi} for a in adverts])
        elif adverts:
            table = Table(box=None, header_style="bold")
            for column in ("address", "name", "rssi"):
                table.add_column(column)
            for a in adverts:
                table.add_row(a.address, a.name or "", "" if a.rssi is None else str(a.rssi))
            console.print(table)
        if not adverts:
            raise BoardNotFoundError(f"no board answered a {config.scan_timeout_s:g} s scan")
        return 0

    _exit(run(lambda: _with_bridge(_bridge(ctx, config), job), as_json=as_json))


def status_cmd(
    ctx: typer.Context,
    board: Annotated[str | None, typer.Argument(help="Board address or name (default: every board in range).")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """Is the board connected, what does it run, and is it updated, outdated or without update?

    States: updated; outdated (a newer release is available); not connected;
    no update (the server has no release for this board's project and chip);
    unknown (no update server configured: set server_url, or trust exactly one server).

    Exit status: 0 updated, no update or unknown; 2 bad usage; 3 outdated; 4 board not found;
    5 Bluetooth link failed; 9 update server error (unreachable, untrusted, bad signature); 10 configuration error.
    """
    config = _with_server(_config(ctx, as_json=as_json))

    async def job(bridge: Bridge) -> int:
        targets: list[str | BoardAdvert] = [board] if board else list(await bridge.scan())
        if not targets:
            raise BoardNotFoundError("no board answered the scan")
        statuses = [await bridge.status(target) for target in targets]
        if as_json:
            print_json(statuses[0].to_dict() if board else [s.to_dict() for s in statuses])
        else:
            _print_status_table(statuses)
            if board:
                _print_board_details(statuses[0])
            if any(not s.connected for s in statuses):
                err_console.print(f"[dim]hint:[/] {escape(BoardNotFoundError.default_hint)}", soft_wrap=True)
            elif config.server_url is None:
                err_console.print(f"[dim]hint:[/] {escape(NO_SERVER_MESSAGE)}", soft_wrap=True)
        codes = [exit_code_for_status(s) for s in statuses]
        return max(codes, key=_severity)

    _exit(run(lambda: _with_bridge(_bridge(ctx, config), job), as_json=as_json))


def _severity(code: int) -> int:
    """Order exit codes so that the most serious one wins for several boards (3 'outdated' is the mildest)."""
    return -1 if code == 0 else (0 if code == ExitCode.UPDATE_AVAILABLE else code)


async def _consume(
    events: AsyncIterator[SyncEvent], printer: EventPrinter, collected: list[dict[str, Any]]
) -> SyncEvent | None:
    """Show every event; keep them for ``--json``, progress runs cut to their first and last event."""
    last: SyncEvent | None = None
    held: SyncEvent | None = None  # the latest progress event not kept yet
    async for event in events:
        printer.show(event)
        progress = event.kind in {"downloading", "uploading"}
        if progress and last is not None and last.kind == event.kind:
            held = event
        else:
            if held is not None:
                collected.append(event_to_dict(held))
                held = None
            collected.append(event_to_dict(event))
        last = event
    if held is not None:
        collected.append(event_to_dict(held))
    return last


def _outcome_code(last: SyncEvent | None) -> int:
    if isinstance(last, RolledBack):
        return int(ExitCode.ROLLED_BACK)
    if isinstance(last, Confirmed | UpToDate):
        return int(ExitCode.OK)
    return int(ExitCode.UPDATE_FAILED)


async def _ask(question: str) -> bool:
    return await asyncio.to_thread(typer.confirm, question, default=False)


def sync_cmd(
    ctx: typer.Context,
    board: Annotated[
        str | None, typer.Argument(help="Board address or name (default: the only board in range).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", metavar=FLAG, help="Update every board in range, one after the other.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar=FLAG, help="Only say what would be updated (exit 3 if anything).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar=FLAG, help="Do not ask before updating.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print the events and the outcome as JSON.")
    ] = False,
) -> None:
    """Update a board to the newest release on the server, then confirm it runs it.

    Exit status: 0 updated, already up to date, or declined at the prompt (nothing changed); 2 bad usage;
    3 update available (--dry-run); 4 board not found; 5 Bluetooth link failed; 6 image refused;
    7 update failed; 8 rolled back; 9 update server error; 10 configuration error; 130 interrupted (Ctrl-C).
    """
    if board is not None and every:
        fail(UsageError("name a board or pass --all, not both", hint="`bridge sync BOARD` or `bridge sync --all`."))
    config = _with_server(_config(ctx, as_json=as_json))
    if config.server_url is None:
        fail(
            UsageError(
                NO_SERVER_MESSAGE,
                hint="`bridge trust URL --root root.json` first; `bridge push` installs a local file.",
            ),
            as_json=as_json,
        )
    if not (yes or dry_run or as_json) and not sys.stdin.isatty():
        fail(UsageError("sync would ask for confirmation, but there is no terminal", hint="Pass --yes."))

    async def job(bridge: Bridge) -> int:
        targets = await _resolve_boards(bridge, board, every=every)
        results: list[dict[str, Any]] = []
        worst = 0
        for target in targets:
            status = await bridge.status(target)
            code, result = await _sync_one(bridge, status, dry_run=dry_run, yes=yes, as_json=as_json)
            results.append(result)
            worst = max(worst, code, key=_severity)
        if as_json:
            print_json(results[0] if len(results) == 1 else results)
        return worst

    _exit(run(lambda: _with_bridge(_bridge(ctx, config), job), as_json=as_json))


async def _sync_one(
    bridge: Bridge, status: BoardStatus, *, dry_run: bool, yes: bool, as_json: bool
) -> tuple[int, dict[str, Any]]:
    out = err_console if as_json else console
    result: dict[str, Any] = {"board": status.board, "status": status.to_dict()}
    if not status.connected:
        error = BoardNotFoundError(status.error or f"board {status.board} is not in range")
        if len(result) and not as_json:
            out.print(f"[red]{status.board}: {error.message}[/]")
        result["outcome"] = "not_found"
        return int(ExitCode.BOARD_NOT_FOUND), result
    if status.state is not UpdateState.OUTDATED or status.available is None:
        out.print(f"{status.board}: {status.summary()}")
        result["outcome"] = "up_to_date"
        return int(ExitCode.OK), result
    plan = f"{status.board}: {status.running_version or '?'} -> {status.available.version}"
    if dry_run:
        out.print(f"would update {plan}")
        result["outcome"] = "update_available"
        return int(ExitCode.UPDATE_AVAILABLE), result
    if not yes and not as_json and not await _ask(f"Update {plan}?"):
        out.print(
            f"nothing changed: the board still runs {status.running_version or '?'} "
            f"(release {status.available.version} is available)",
            markup=False,
            soft_wrap=True,
        )
        result["outcome"] = "declined"
        return int(ExitCode.OK), result
    events: list[dict[str, Any]] = []
    with EventPrinter(out) as printer:
        last = await _consume(bridge.sync(status.board), printer, events)
    result["events"] = events
    result["outcome"] = last.kind if last else "nothing"
    return _outcome_code(last), result


def push_cmd(
    ctx: typer.Context,
    board: Annotated[str, typer.Argument(help="Board address or name.")],
    image_file: Annotated[Path, typer.Argument(help="Application image (.bin) to install.", dir_okay=False)],
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print the events and the outcome as JSON.")
    ] = False,
) -> None:
    """Install a local image file on a board (checked first: ESP32 format, chip, size, secure_version).

    Exit status: 0 installed and confirmed (or already running it); 2 bad usage (no such file);
    4 board not found; 5 Bluetooth link failed; 6 image refused; 7 update failed; 8 rolled back;
    10 configuration error; 130 interrupted (Ctrl-C).
    """
    config = _config(ctx, as_json=as_json)
    try:
        check_image_path(image_file)
    except BridgeError as exc:
        fail(exc, as_json=as_json)

    async def job(bridge: Bridge) -> int:
        out = err_console if as_json else console
        events: list[dict[str, Any]] = []
        with EventPrinter(out) as printer:
            last = await _consume(bridge.push(board, image_file), printer, events)
        if as_json:
            print_json({"board": board, "events": events, "outcome": last.kind if last else "nothing"})
        return _outcome_code(last)

    _exit(run(lambda: _with_bridge(_bridge(ctx, config), job), as_json=as_json))


def fetch_cmd(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    chip: Annotated[str | None, typer.Option("--chip", help="Only this chip (esp32, esp32c3, ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """Download and verify the newest releases into the offline cache, for a later `bridge sync` without network.

    Exit status: 0 fetched (or nothing to fetch); 2 bad usage; 9 update server error; 10 configuration error.
    """
    config = _with_server(_config(ctx, as_json=as_json))

    async def job(bridge: Bridge) -> int:
        fetched = await bridge.fetch(project=project, chip=chip)
        if as_json:
            print_json([{**r.to_dict(), "path": str(p)} for r, p in fetched])
        elif not fetched:
            console.print("the server has no confirmed release to fetch")
        for release, path in fetched if not as_json else []:
            console.print(
                f"cached {release.project} {release.version} ({_chip_name(release.chip)}) -> {path}",
                markup=False,
                soft_wrap=True,
            )
        return 0

    _exit(run(lambda: _with_bridge(_bridge(ctx, config), job), as_json=as_json))


def _chip_name(chip_id: int) -> str:
    from bridge.image import Chip

    try:
        return Chip(chip_id).display_name
    except ValueError:
        return f"chip id {chip_id}"


def log_cmd(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="How many of the newest attempts to show (0: all).")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """Show the journal of update attempts (board, versions, result, bytes, duration, error).

    Exit status: 0; 10 configuration error.
    """
    config = _config(ctx, as_json=as_json)
    entries = Journal(config.journal_file).tail(limit)
    if as_json:
        print_json([json.loads(e.to_json()) for e in entries])
        return
    if not entries:
        console.print(f"no update attempts recorded yet ({config.journal_file})")
        return
    table = Table(box=None, header_style="bold")
    for column in ("when (UTC)", "board", "from", "to", "result", "bytes", "s", "error"):
        table.add_column(column, overflow="fold")
    styles = {"confirmed": "green", "rolled_back": "red", "failed": "red", "refused": "yellow"}
    for e in entries:
        style = styles.get(str(e.result), "")
        result = f"[{style}]{e.result}[/]" if style else str(e.result)
        table.add_row(
            e.started_at.replace("+00:00", ""),
            e.board,
            e.from_version,
            e.to_version,
            result,
            f"{e.bytes_sent:,}",
            f"{e.duration_s:.1f}",
            e.error,
        )
    console.print(table)


def config_show_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON.")] = False,
) -> None:
    """Print the configuration in effect (defaults < config file < BRIDGE_* environment < flags) as TOML.

    The output is a valid config file: save it and pass it to --config. Unset values are comments.

    Exit status: 0; 10 configuration error.
    """
    config = _config(ctx, as_json=as_json)
    options = global_options(ctx)
    source = options.config_file or str(default_config_file())
    if as_json:
        print_json({"config_file": source, **config.as_dict()})
        return
    sys.stdout.write(f"# configuration in effect; config file: {source}\n" + to_toml(config))
    sys.stdout.flush()


def demo_cmd(
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of real ESP32 images (e.g. ../shared/firmware): installs P15 -> P14."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Folder for the demo's repository and data (default: a new temporary folder)."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", metavar=FLAG, help="Keep the temporary folder afterwards.")] = False,
) -> None:
    """The whole job on a simulated board, no hardware and no network: status -> sync -> status.

    Builds a signed update repository with two releases of one project, serves it on loopback, starts a simulated
    ESP32-C3 running the older one on a virtual Bluetooth link, and updates it as `bridge sync` would.
    Your own configuration and data are not touched: everything lives in a temporary folder.
    """
    import shutil
    import tempfile

    from bridge.demo import check_workdir

    own_dir = workdir is None
    if workdir is not None:
        try:
            check_workdir(workdir)
        except BridgeError as exc:
            fail(exc)
    folder = Path(tempfile.mkdtemp(prefix="bridge-demo-")) if workdir is None else workdir
    try:
        code = run(lambda: _demo(folder, images, deleted=own_dir and not keep))
    finally:
        if own_dir and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    _exit(code)


async def _demo(folder: Path, images: Path | None, *, deleted: bool = False) -> int:
    """The demo's script; ``deleted``: the folder goes away afterwards, so no path inside it is printed last."""
    from bridge.demo import demo_environment

    console.print("[bold]bridge demo[/]: a simulated board, a local update server, no hardware, no network")
    console.print(f"  working folder  {folder}", soft_wrap=True)
    async with demo_environment(folder, images=images) as setup:
        chosen = setup.images
        kind = "real ESP-IDF images" if chosen.real else "built images"
        for line in (
            f"  update server   {setup.url} (a signed TUF repository in {folder / 'repo'})",
            f"  releases        {chosen.project} {chosen.old_version!r} (release 1) and {chosen.new_version!r} "
            f"(release 2), {kind}",
            f"  board           {setup.board_name} ({setup.board}), a simulated ESP32-C3 on virtual Bluetooth LE, "
            f"running {chosen.old_version!r}",
        ):
            console.print(escape(line), soft_wrap=True)
        bridge = setup.bridge
        console.print(f"\n[bold]$ bridge status {setup.board_name}[/]")
        before = await bridge.status(setup.board_name)
        _print_status_table([before])
        console.print(f"\n[bold]$ bridge sync {setup.board_name} --yes[/]")
        code, _result = await _sync_one(bridge, before, dry_run=False, yes=True, as_json=False)
        console.print(f"\n[bold]$ bridge status {setup.board_name}[/]")
        after = await bridge.status(setup.board_name)
        _print_status_table([after])
        if code == 0 and after.state is UpdateState.UPDATED:
            console.print(f"\n[green]done:[/] the board went from {chosen.old_version!r} to {after.running_version!r}.")
            where = "deleted with the demo's folder; --keep keeps it" if deleted else str(bridge.journal.path)
            for entry in bridge.log(limit=1):
                console.print(
                    f"journal ({where}): {entry.result}, {entry.from_version} -> {entry.to_version}, "
                    f"{entry.bytes_sent:,} bytes sent in {entry.duration_s:.1f} s",
                    soft_wrap=True,
                    markup=False,
                )
            return 0
        err_console.print("[red]the demo did not end with an updated board[/]")
        return code or int(ExitCode.UPDATE_FAILED)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("scan")(scan_cmd)
    app.command("status")(status_cmd)
    app.command("sync")(sync_cmd)
    app.command("push")(push_cmd)
    app.command("fetch")(fetch_cmd)
    app.command("log")(log_cmd)
    config_app = typer.Typer(help="Show the configuration.", no_args_is_help=True)
    config_app.command("show")(config_show_cmd)
    app.add_typer(config_app, name="config")
    app.command("demo")(demo_cmd)
