"""``python -m benchmarks.run``: print the table, write ``benchmarks/README.md``; ``--json`` prints JSON instead.

Deterministic (virtual clock) for everything but the wall-clock section, which measures real CPU and memory of
the product path on the Bumble link in child processes (``--skip-wallclock`` leaves it out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.board import EraseMode
from benchmarks.harness import KIB, Settings, run_all
from benchmarks.profiles import PROFILES
from benchmarks.report import console_table, markdown_report
from benchmarks.wallclock import WallClock, measure_wallclock

__all__ = ["main"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "README.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Protocol efficiency against the BLE link and against the anchors (deterministic link model), "
        "plus wall-clock CPU/RSS of the product path on the Bumble link.",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    p.add_argument("--profiles", default="a,b,c", help="comma-separated profile keys (default: a,b,c)")
    p.add_argument("--image-kib", type=int, default=1024, help="image size in KiB (default: 1024)")
    p.add_argument("--no-sweeps", action="store_true", help="skip the sweeps (ours keeps the shipped defaults)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity and memory runs")
    p.add_argument(
        "--boards",
        default=",".join(m.value for m in EraseMode),
        help="comma-separated board erase strategies (default: all three)",
    )
    p.add_argument("--skip-wallclock", action="store_true", help="leave the Bumble wall-clock section out")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="report file (default: benchmarks/README.md)")
    p.add_argument("--no-write", action="store_true", help="do not write the report file")
    return p


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    keys = tuple(k.strip() for k in args.profiles.split(",") if k.strip())
    unknown = [k for k in keys if k not in PROFILES]
    if not keys or unknown:
        parser.error(f"unknown profile(s) {unknown or keys}: choose from {', '.join(PROFILES)}")
    names = [b.strip() for b in args.boards.split(",") if b.strip()]
    try:
        boards = tuple(EraseMode(b) for b in names)
    except ValueError:
        parser.error(f"--boards {args.boards!r}: choose from {', '.join(m.value for m in EraseMode)}")
    if not boards:
        parser.error("--boards: give at least one erase strategy")
    if args.image_kib < 4:
        parser.error("--image-kib must be at least 4")
    return Settings(
        image_bytes=args.image_kib * KIB,
        profiles=keys,
        sweeps=not args.no_sweeps,
        sensitivity=not args.no_sensitivity,
        boards=boards,
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = _settings(args, parser)

    def progress(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    results = run_all(settings, progress=progress)
    if args.skip_wallclock:
        wallclock = WallClock(skipped="skipped with --skip-wallclock")
    else:
        progress("wall clock: bare bleak loop and product push on the Bumble link (child processes)")
        wallclock = measure_wallclock()

    shown = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.run", *shown])
    if not args.no_write:
        _write_atomic(args.output, markdown_report(results, wallclock, command=command))
        progress(f"wrote {args.output}")
    if args.json:
        print(json.dumps(results.as_json() | {"wallclock": wallclock.as_json()}, indent=2, sort_keys=False))
    else:
        print(console_table(results))
        for line in wallclock.markdown()[2:]:
            if line and not line.startswith("|---"):
                print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
