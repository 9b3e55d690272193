"""``bridge image ...``: what a release engineer checks before publishing a firmware image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bridge.cli._common import FLAG, console, fail, print_json
from bridge.errors import BridgeError, ExitCode, ImageError, PreflightError, UsageError
from bridge.image import Chip, ImageInfo, fit_verdict, inspect_image

image_app = typer.Typer(
    name="image",
    help="Inspect ESP32 firmware images before publishing or pushing them.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``bridge image`` to ``app``."""
    app.add_typer(image_app, name="image")


@image_app.command("info")
def info_cmd(
    file: Annotated[Path, typer.Argument(help="The app image, e.g. build/<project>.bin.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", metavar=FLAG, help="Print the fields and the verdict as one JSON document.")
    ] = False,
    chip: Annotated[
        str | None, typer.Option("--chip", help="Also check it is built for this chip (esp32c3, ESP32-S3).")
    ] = None,
    partition_size: Annotated[
        int | None,
        typer.Option("--partition-size", min=1, help="Also check it fits an OTA partition of this many bytes."),
    ] = None,
    min_secure_version: Annotated[
        int, typer.Option("--min-secure-version", min=0, help="Also check its secure_version is at least this.")
    ] = 0,
) -> None:
    """Show an image's chip, project, version, secure_version, build and integrity, and whether it may be pushed.

    Exit status 0 if it may be pushed, 6 if it is refused (the message says why and what to do), 2 for a bad path.
    """
    try:
        info = _inspect(file)
        board_chip = _parse_chip(chip) if chip else None
        verdict = info.verdict
        if verdict.ok and (board_chip is not None or partition_size is not None or min_secure_version):
            fit = fit_verdict(
                info,
                chip=board_chip if board_chip is not None else info.chip_id,
                partition_size=partition_size if partition_size is not None else info.size,
                min_secure_version=min_secure_version,
            )
            if fit is not None:
                verdict = fit
    except BridgeError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        payload = {"file": str(file), **info.to_dict(), "verdict": verdict.to_dict()}
        print_json(payload)
        raise typer.Exit(int(ExitCode.OK if verdict.ok else ExitCode.REFUSED))
    if not verdict.ok:
        error_type = ImageError if verdict is info.verdict else PreflightError
        fail(error_type(verdict.message, code=str(verdict.code), hint=verdict.hint))
    console.print(str(file), markup=False, soft_wrap=True, style="italic")  # not a table title: those wrap
    console.print(_table(file, info))
    console.print(f"[bold green]{verdict.code}[/]: {verdict.message}", soft_wrap=True)
    if verdict.hint:
        console.print(f"[dim]hint:[/] {verdict.hint}", soft_wrap=True)


def check_image_path(file: Path) -> None:
    """UsageError (exit 2) unless ``file`` is an existing regular file: `image info` and `push` say the same."""
    if not file.exists():
        raise UsageError(f"{file}: no such file.", hint="Give the path of the app image, e.g. build/<project>.bin.")
    if not file.is_file():
        raise UsageError(f"{file} is not a regular file.", hint="Give the path of the app image, not a folder.")


def _inspect(file: Path) -> ImageInfo:
    check_image_path(file)
    return inspect_image(file)


def _parse_chip(text: str) -> Chip:
    try:
        return Chip.parse(text)
    except ValueError as exc:
        raise UsageError(f"--chip: {exc}.", hint="Name the board's chip, e.g. --chip esp32c3.") from exc


def _table(file: Path, info: ImageInfo) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    app = info.app
    table.add_row("chip", f"{info.chip_name} (id {info.chip_id})")
    if app is not None:
        table.add_row("project", app.project or "(empty)")
        table.add_row("version", app.version or "(empty)")
        table.add_row("secure_version", str(app.secure_version))
        table.add_row("ESP-IDF", app.idf_version or "(empty)")
        table.add_row("built", f"{app.date} {app.time}".strip() or "(empty)")
        table.add_row("ELF SHA-256", app.elf_sha256)
    else:
        table.add_row("app descriptor", "none (built before ESP-IDF v3.3): no project, version or secure_version")
    table.add_row("size", f"{info.size:,} bytes (image {info.image_size:,}, after the digest {info.trailing_bytes:,})")
    table.add_row("file SHA-256", info.sha256)
    table.add_row("flash", f"{info.flash_mode}, {info.flash_size}, {info.flash_freq}")
    revs = f"v{info.min_chip_rev_full // 100}.{info.min_chip_rev_full % 100}"
    if info.max_chip_rev_full not in (0, 0xFFFF):
        revs += f" to v{info.max_chip_rev_full // 100}.{info.max_chip_rev_full % 100}"
    else:
        revs += " and later"
    table.add_row("chip revision", revs)
    kinds = ", ".join(f"{s.kind}@{s.load_addr:#x}" for s in info.segments)
    table.add_row("segments", f"{len(info.segments)}: {kinds}")
    table.add_row("checksum", f"0x{info.checksum or 0:02x} " + ("valid" if info.checksum_ok else "INVALID"))
    table.add_row(
        "SHA-256 digest", ("valid" if info.digest_ok else "INVALID") if info.hash_appended else "not appended"
    )
    return table
