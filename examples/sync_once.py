"""Library use: find boards, show their status, update the outdated ones, print every progress event.

    python examples/sync_once.py                 # your configuration (server_url, ...) and your Bluetooth adapter
    python examples/sync_once.py AA:BB:CC:DD:EE:FF
    python examples/sync_once.py --demo          # no hardware: the simulated board of `bridge demo` (needs [sim])

Everything here is the public API of ``import bridge``; nothing from the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import bridge


async def update_board(b: bridge.Bridge, address: str) -> int:
    """Status, then sync if outdated. Returns the process exit status (see bridge.ExitCode)."""
    status = await b.status(address)
    print(f"{address}: {status.summary()}")
    if not status.connected:
        return int(bridge.ExitCode.BOARD_NOT_FOUND)
    if status.state is not bridge.UpdateState.OUTDATED:
        return int(bridge.ExitCode.OK)
    last: bridge.SyncEvent | None = None
    async for event in b.sync(address):
        if isinstance(event, bridge.Uploading):
            rate = f"{event.rate_bps / 1024:.1f} KiB/s" if event.rate_bps else ""
            print(f"\r  uploading {event.acked_bytes:,}/{event.total_bytes:,} {rate}   ", end="", flush=True)
        else:
            if isinstance(last, bridge.Uploading):
                print()
            print(f"  {event}")
        last = event
    if isinstance(last, bridge.RolledBack):
        return int(bridge.ExitCode.ROLLED_BACK)
    return int(bridge.ExitCode.OK)


@contextlib.asynccontextmanager
async def open_bridge(demo: bool) -> AsyncIterator[tuple[bridge.Bridge, list[str]]]:
    """The bridge to use and the boards to visit (empty: scan)."""
    if demo:
        from bridge.demo import demo_environment

        with tempfile.TemporaryDirectory(prefix="sync-once-") as folder:
            async with demo_environment(Path(folder)) as setup:
                yield setup.bridge, [setup.board]
        return
    async with bridge.Bridge(bridge.load_config()) as b:
        yield b, []


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board", nargs="?", help="board address or name (default: every board in range)")
    parser.add_argument("--demo", action="store_true", help="use a simulated board and a local server")
    args = parser.parse_args(argv)
    try:
        async with open_bridge(args.demo) as (b, boards):
            if args.board:
                boards = [args.board]
            if not boards:
                boards = [advert.address for advert in await b.scan()]
            if not boards:
                print("no board in range", file=sys.stderr)
                return int(bridge.ExitCode.BOARD_NOT_FOUND)
            codes = [await update_board(b, address) for address in boards]
            return max(codes)
    except bridge.BridgeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
