"""``bridge repo ...`` (Stage 1: publish firmware) and ``bridge trust`` (a bridge trusts a server's root)."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bridge.cli._common import console, err_console, fail, global_options, print_json
from bridge.errors import BridgeError, ExitCode, RepositoryError, UsageError

T = TypeVar("T")

repo_app = typer.Typer(
    name="repo",
    help=(
        "Publish firmware: a signed TUF repository any static web host can serve (docs/SERVER.md).\n\n"
        "init -> add -> confirm; list, prune, refresh (daily), serve (development)."
    ),
    no_args_is_help=True,
)

DirArg = Annotated[Path, typer.Argument(help="The repository folder (served part: DIR/public).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
ChannelOpt = Annotated[str, typer.Option("--channel", "-c", help="Release channel (stable, beta, ...).")]


def register(app: typer.Typer) -> None:
    """Add ``bridge repo`` and ``bridge trust`` to ``app``."""
    app.add_typer(repo_app, name="repo")
    app.command("trust")(trust_cmd)


def _call(action: Callable[[], T], *, as_json: bool = False) -> T:
    """Run one repository action; a BridgeError becomes its message and exit code (no traceback)."""
    try:
        return action()
    except BridgeError as exc:
        fail(exc, as_json=as_json)
    except ValueError as exc:  # argument validation in constructors
        fail(UsageError(str(exc)), as_json=as_json)
    except OSError as exc:
        fail(RepositoryError(f"{exc.filename or 'file'}: {exc.strerror or exc}"), as_json=as_json)


@repo_app.command("init")
def init_cmd(
    directory: DirArg,
    root_days: Annotated[float, typer.Option(min=1, help="Root metadata lifetime (days).")] = 365.0,
    targets_days: Annotated[float, typer.Option(min=1, help="Targets metadata lifetime (days).")] = 90.0,
    snapshot_days: Annotated[float, typer.Option(min=0.01, help="Snapshot metadata lifetime (days).")] = 30.0,
    timestamp_days: Annotated[
        float, typer.Option(min=0.01, help="Timestamp lifetime (days): run `bridge repo refresh` well within it.")
    ] = 7.0,
    as_json: JsonOpt = False,
) -> None:
    """Create signing keys (DIR/keys, 0600) and the first signed metadata (DIR/public); print the root fingerprint."""
    from bridge.repo import ExpiryPolicy, Repository

    def action() -> Any:
        policy = ExpiryPolicy(root_days, targets_days, snapshot_days, timestamp_days)
        return Repository(directory).init(expiry=policy)

    result = _call(action, as_json=as_json)
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "root": str(result.root_path),
                "fingerprint": result.fingerprint,
                "root_expires": result.root_expires,
            }
        )
        return
    console.print(f"Repository created in [bold]{directory}[/]; serve [bold]{directory / 'public'}[/].")
    console.print(f"Root metadata: {result.root_path} (expires {result.root_expires})")
    console.print(f"Root fingerprint (SHA-256 of that file): [bold]{result.fingerprint}[/]")
    console.print(
        "Bridges trust it with:\n"
        f"  bridge trust URL --root {result.root_path}\n"
        f"  bridge trust URL --fingerprint {result.fingerprint}",
        soft_wrap=True,
    )
    err_console.print(
        f"[yellow]Keys are in {directory / 'keys'}[/]: move root.pem and root-backup.pem offline "
        "(see docs/SERVER.md, 'Keys').",
        soft_wrap=True,
    )


@repo_app.command("add")
def add_cmd(
    directory: DirArg,
    image: Annotated[Path, typer.Argument(help="The app image (build/<project>.bin).", show_default=False)],
    channel: ChannelOpt = "stable",
    notes: Annotated[str, typer.Option("--notes", help="Release notes shown to technicians.")] = "",
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            help="Project name for an image whose app descriptor has none (Tasmota, MicroPython, pre-IDF-3.3); "
            "must match the descriptor when it has one.",
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version for an image whose app descriptor has none; must match it otherwise."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate an image and upload it to the repository, staged (not offered to boards until `confirm`)."""
    from bridge.repo import Repository

    entry = _call(
        lambda: Repository(directory).add(image, channel=channel, notes=notes, project=project, version=version),
        as_json=as_json,
    )
    if as_json:
        print_json({**entry.to_dict(), "already_present": entry.already_present})
        return
    verb = "is already staged" if entry.already_present and not entry.confirmed else "staged"
    if entry.already_present and entry.confirmed:
        verb = f"is already release {entry.release_number}"
    console.print(
        f"{entry.project} {entry.version} ({entry.chip_name}, {entry.size:,} bytes) {verb} on {entry.channel!r}.",
        soft_wrap=True,
    )
    if not entry.confirmed:
        console.print(f"Publish it with: {confirm_command(directory, entry)}", soft_wrap=True)


def confirm_command(directory: Path, entry: Any) -> str:
    """The ``bridge repo confirm`` line that publishes ``entry`` (a staged RepoEntry), quoted for a POSIX shell.

    It always names the chip and the channel, so it works even when the same version is staged for several chips.
    """
    from bridge.image import Chip

    try:
        chip = Chip(entry.chip).name.lower()
    except ValueError:
        chip = str(entry.chip)
    words = ["bridge", "repo", "confirm", str(directory), entry.project, entry.version, "--chip", chip]
    if entry.channel != "stable":
        words += ["--channel", entry.channel]
    return shlex.join(words)


@repo_app.command("confirm")
def confirm_cmd(
    directory: DirArg,
    project: Annotated[str, typer.Argument(help="Project name from the image (`bridge repo list`).")],
    version: Annotated[str, typer.Argument(help="Version string from the image.")],
    channel: ChannelOpt = "stable",
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="Only for this board id (repeat for a pilot group). Default: everyone."),
    ] = None,
    chip: Annotated[str | None, typer.Option("--chip", help="Which chip's build, if several are staged.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish a staged image: assign the next release number and sign; boards on the channel (or group) see it."""
    from bridge.repo import Repository

    groups = tuple(group or ())
    release = _call(
        lambda: Repository(directory).confirm(project, version, channel, groups, chip=chip), as_json=as_json
    )
    if as_json:
        print_json(release.to_dict())
        return
    audience = f"boards {', '.join(release.groups)}" if release.groups else f"every board on {release.channel!r}"
    console.print(
        f"{release.project} {release.version} is release {release.release_number} for {audience}.", soft_wrap=True
    )


@repo_app.command("list")
def list_cmd(directory: DirArg, as_json: JsonOpt = False) -> None:
    """List staged and confirmed firmware, newest release first."""
    from bridge.repo import Repository

    entries = _call(lambda: Repository(directory).list(), as_json=as_json)
    if as_json:
        print_json({"entries": [e.to_dict() for e in entries]})
        return
    if not entries:
        console.print("The repository holds no firmware yet: `bridge repo add DIR IMAGE`.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("project", "chip", "channel", "release", "version", "for", "size", "sha256"):
        table.add_column(column, justify="right" if column in ("release", "size") else "left")
    for e in entries:
        audience = {"staged": "(staged)", "everyone": "everyone"}.get(e.status) or ", ".join(e.groups)
        table.add_row(
            e.project,
            e.chip_name or str(e.chip),
            e.channel,
            str(e.release_number) if e.confirmed else "-",
            e.version,
            audience,
            f"{e.size:,}",
            e.sha256[:12],
        )
    console.print(table)


@repo_app.command("prune")
def prune_cmd(
    directory: DirArg,
    keep: Annotated[int, typer.Option("--keep", help="Confirmed releases to keep per project/chip/channel.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete old releases and their files, never the newest one any board can get."""
    from bridge.repo import Repository

    pruned = _call(lambda: Repository(directory).prune(keep, dry_run=dry_run), as_json=as_json)
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "pruned": [{**p.entry.to_dict(), "files": [str(f) for f in p.files]} for p in pruned],
            }
        )
        return
    if not pruned:
        console.print("Nothing to prune.")
        return
    verb = "Would delete" if dry_run else "Deleted"
    for p in pruned:
        e = p.entry
        console.print(f"{verb} {e.project} {e.version} ({e.chip_name}, {e.channel}, release {e.release_number})")


@repo_app.command("refresh")
def refresh_cmd(directory: DirArg, as_json: JsonOpt = False) -> None:
    """Re-sign snapshot and timestamp (and targets if it would expire first). Run it daily."""
    from bridge.repo import Repository

    result = _call(lambda: Repository(directory).refresh(), as_json=as_json)
    if as_json:
        print_json(
            {
                "timestamp_version": result.timestamp_version,
                "timestamp_expires": result.timestamp_expires,
                "snapshot_version": result.snapshot_version,
                "targets_resigned": result.targets_resigned,
                "warnings": list(result.warnings),
            }
        )
        return
    console.print(
        f"Timestamp version {result.timestamp_version} valid until {result.timestamp_expires}; "
        f"snapshot version {result.snapshot_version}" + ("; targets re-signed." if result.targets_resigned else "."),
        soft_wrap=True,
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


@repo_app.command("serve")
def serve_cmd(
    directory: DirArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: any free one).")] = 8000,
) -> None:
    """Serve DIR/public over HTTP for development (ETag/304, Range). Production: any static host."""
    from bridge.repo import make_server, served_root

    root = served_root(directory)
    if not root.is_dir():
        fail(UsageError(f"{directory} is not a folder", hint="Give the repository folder made by `bridge repo init`."))
    try:
        server = make_server(directory, host, port)
    except OSError as exc:
        fail(RepositoryError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="Try another --port."))
    logging.getLogger("bridge.repo.server").setLevel(logging.INFO)
    console.print(f"Serving {root} at [bold]{server.url}[/] (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
    raise typer.Exit(int(ExitCode.OK))


_MAX_ROOT_BYTES = 512_000


def trust_cmd(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The server's base URL (the folder holding metadata/ and targets/).")],
    root: Annotated[
        Path | None, typer.Option("--root", help="The repository's root metadata (metadata/1.root.json).")
    ] = None,
    fingerprint: Annotated[
        str | None,
        typer.Option("--fingerprint", help="SHA-256 printed by `bridge repo init`; downloads the root and checks it."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Trust a different root than the one stored for this server.")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where trusted roots and caches live (default: config).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store the root metadata this bridge trusts for a server (once per server)."""
    from bridge.config import load_config
    from bridge.source import trust_server

    options = global_options(ctx)

    def action() -> Any:
        if root is None and fingerprint is None:
            raise UsageError(
                "give --root FILE or --fingerprint HEX",
                hint="The release engineer has both: `bridge repo init` printed them.",
            )
        root_bytes = None
        if root is not None:
            if not root.is_file():
                raise UsageError(f"{root}: no such file", hint="Give the repository's metadata/1.root.json.")
            if root.stat().st_size > _MAX_ROOT_BYTES:
                raise UsageError(
                    f"{root} is {root.stat().st_size:,} bytes: too large for root metadata (not a root.json file)",
                    hint="Give the repository's metadata/1.root.json.",
                )
            try:
                root_bytes = root.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {root}: {exc.strerror or exc}") from exc
        config = load_config(options.config_file, overrides={"data_dir": data_dir})
        trusted = trust_server(url, root_bytes, fingerprint=fingerprint, data_dir=config.data_dir, replace=replace)
        return trusted, config.server_url

    trusted, server_url = _call(action, as_json=as_json)
    if as_json:
        print_json(
            {
                "url": trusted.url,
                "fingerprint": trusted.fingerprint,
                "root_version": trusted.root_version,
                "root_expires": trusted.root_expires,
                "trusted_at": trusted.trusted_at,
                "changed": trusted.changed,
                "path": str(trusted.path),
            }
        )
        return
    state = "now trusted" if trusted.changed else "already trusted"
    console.print(f"{trusted.url} is {state} (root fingerprint {trusted.fingerprint}).", soft_wrap=True)
    console.print(_server_url_advice(trusted.url, server_url), soft_wrap=True, markup=False)


def _server_url_advice(url: str, configured: str | None) -> str:
    """Trusting a server does not select it: say how `status` / `sync` find it (NEWUSER item 13)."""
    from bridge.source.trust import normalise_url

    try:
        same = configured is not None and normalise_url(configured) == url
    except BridgeError:
        same = False
    if same:
        return "It is the configured server (server_url): `bridge status` and `bridge sync` use it."
    setting = f"server_url = {json.dumps(url)}"
    if configured:
        return (
            f"The configured server is {configured}, not this one; to use this one set `{setting}` in config.toml "
            f"or BRIDGE_SERVER_URL={shlex.quote(url)}."
        )
    return (
        f"Set it as your server: `{setting}` in config.toml, or BRIDGE_SERVER_URL={shlex.quote(url)} "
        "(with no server configured, bridge uses the only trusted server)."
    )
