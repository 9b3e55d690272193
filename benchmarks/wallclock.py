"""Wall-clock figures on the Bumble virtual link: what the real product path costs in CPU and memory.

Two processes per measurement, so that the numbers belong to the bridge alone:

* a *world* process (``python -m benchmarks.wallclock serve ...``) runs a ``bridge.sim.VirtualWorld`` with one
  simulated ESP32 board (instant flash, erase-ahead, 32 KiB window) and exposes a virtual controller on
  HCI-over-TCP (``VirtualWorld.expose_hci``);
* a *case* process connects to it through ``bridge.ble.HciBackend("tcp-client:...")`` (a Bumble host in that
  process, bleak on top, exactly what ``bridge --hci tcp-client:...`` does) and runs one case; its CPU time and
  peak RSS (``ru_maxrss``) are the figures.

Cases:

* ``push``: ``bridge.Bridge.push`` of a built ESP32 image (the parent writes the file; the case never builds it):
  image checks, HELLO/INFO, BEGIN, data, FINISH, COMMIT, reboot and the reconnect that confirms the new version.
* ``bare``: a bare bleak loop on the same link: connect, then write the same number of bytes (read from the same
  file, one write at a time) to the data characteristic in ``max_write_without_response_size`` writes with
  ``response=False``. The board drops those frames (no transfer is open), so the link does the same work per
  write, and nothing else happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.sim.config import SimBoardConfig

__all__ = ["CaseResult", "WallClock", "measure_wallclock"]

MIB = 1 << 20
BOARD_NAME = "bench"
COMMAND = "python -m benchmarks.run"


@dataclass(frozen=True)
class CaseResult:
    case: str
    image_bytes: int
    wall_s: float
    cpu_s: float
    peak_rss_kib: int
    rss_before_kib: int
    bytes_written: int

    @property
    def cpu_s_per_mib(self) -> float:
        return self.cpu_s / (self.image_bytes / MIB)


@dataclass
class WallClock:
    cases: list[CaseResult] = field(default_factory=list)
    skipped: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "skipped": self.skipped,
            "cases": [asdict(c) | {"cpu_s_per_mib": c.cpu_s_per_mib} for c in self.cases],
        }

    def markdown(self) -> list[str]:
        out = ["## Wall clock on the Bumble link (product path vs a bare bleak loop)", ""]
        if self.skipped or not self.cases:
            out += [
                f"**Not measured yet**: {self.skipped or 'no case ran'}.",
                "",
                f"Measure with `{COMMAND}` (runs `python -m benchmarks.wallclock push 4194304` and "
                "`python -m benchmarks.wallclock bare 4194304` in child processes).",
            ]
            return out
        out += [
            "The bridge runs alone in its process (Bumble host + bleak + product code), the simulated board in "
            "another one behind HCI-over-TCP. `push` includes image checks, BEGIN..FINISH, COMMIT, reboot and the "
            "confirming reconnect; `bare` only connects and writes. 'RSS before' is after imports and opening the "
            "HCI transport; the peak is VmHWM reset at that point (Linux `clear_refs`), i.e. the case's own peak.",
            "",
            "| case | image | wall s | CPU s | CPU s per MiB | RSS before | peak RSS | peak - before |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.cases:
            out.append(
                f"| {c.case} | {c.image_bytes // 1024} KiB | {c.wall_s:.2f} | {c.cpu_s:.2f} | "
                f"{c.cpu_s_per_mib:.2f} | {c.rss_before_kib / 1024:.1f} MiB | {c.peak_rss_kib / 1024:.1f} MiB | "
                f"{(c.peak_rss_kib - c.rss_before_kib) / 1024:.1f} MiB |"
            )
        by = {(c.case, c.image_bytes): c for c in self.cases}
        bare = by.get(("bare", 4 * MIB))
        push = by.get(("push", 4 * MIB))
        small = by.get(("push", MIB))
        out.append("")
        if bare and push:
            out.append(
                f"Product path: {push.cpu_s_per_mib:.2f} CPU s/MiB against {bare.cpu_s_per_mib:.2f} for the bare "
                f"loop ({push.cpu_s_per_mib / bare.cpu_s_per_mib:.2f}x)."
            )
        if push and small:
            growth = (push.peak_rss_kib - push.rss_before_kib) - (small.peak_rss_kib - small.rss_before_kib)
            out.append(
                f"Peak RSS growth from a 1 MiB to a 4 MiB push: {growth / 1024:.2f} MiB for 3 MiB more image "
                "(a path that held the whole image would grow by at least 3 MiB)."
            )
        return out


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: reset the peak-RSS mark (VmHWM) so that import-time peaks do not hide the case's own peak."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss_kib(reset_ok: bool) -> int:
    hwm = _status_kib("VmHWM")
    if reset_ok and hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak / 1024) if sys.platform == "darwin" else int(peak)


def _board_config(size: int) -> SimBoardConfig:
    from bridge.image import Chip
    from bridge.sim.config import SimBoardConfig
    from protocol import EraseStrategy

    partition = -(-(size + 64 * 1024) // 0x10000) * 0x10000
    return SimBoardConfig(
        name=BOARD_NAME,
        chip=Chip.ESP32,
        project="blink",
        flash_bytes=max(4 * MIB, 2 * partition + 0x100000),
        ota_partition_bytes=partition,
        erase_strategy=EraseStrategy.BLOCK_AHEAD_64K,
        window_bytes=32 * 1024,
        time_scale=0.0,
    )


async def _serve(size: int) -> None:
    """World process: one board, one exposed controller; prints ``{"port", "address"}``, runs until stdin closes."""
    from bridge.sim.world import VirtualWorld

    async with VirtualWorld() as world:
        board = await world.add_board(_board_config(size))
        await board.wait_booted()
        _host, port = await world.expose_hci()
        print(json.dumps({"port": port, "address": board.address}), flush=True)
        await asyncio.to_thread(sys.stdin.read)


async def _case(case: str, size: int, image: Path, hci: str, address: str) -> CaseResult:
    from bleak import BleakClient

    from bridge.api import Bridge
    from bridge.ble.backend import HciBackend
    from bridge.config import BridgeConfig
    from protocol import DATA_UUID

    with tempfile.TemporaryDirectory(prefix="bench-wallclock-") as tmp:
        config = BridgeConfig(
            data_dir=Path(tmp) / "data",
            scan_timeout_s=2.0,
            connect_timeout_s=10.0,
            reboot_timeout_s=30.0,
            reconnect_backoff_s=0.1,
        )
        backend = HciBackend(hci)
        classes = await backend.open()
        rss_before = _status_kib("VmRSS") or 0
        reset_ok = _reset_peak_rss()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        written = 0
        try:
            if case == "push":
                async with Bridge(config, backend=backend) as bridge:
                    async for _event in bridge.push(address, image):
                        pass
                    written = bridge.last_bytes_sent
            else:
                async with BleakClient(address, backend=classes.client) as client:
                    char = client.services.get_characteristic(DATA_UUID)
                    assert char is not None
                    step = min(char.max_write_without_response_size, 512)
                    with image.open("rb") as f:
                        while chunk := f.read(step):
                            await client.write_gatt_char(char, chunk, response=False)
                            written += len(chunk)
        finally:
            await backend.aclose()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return CaseResult(case, size, wall, cpu, _peak_rss_kib(reset_ok), rss_before, written)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.wallclock", *args]


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _run_child(case: str, size: int, image: Path, timeout_s: float) -> CaseResult:
    root = Path(__file__).resolve().parent.parent
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as server_err:
        server = subprocess.Popen(
            _python("serve", str(size)),
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=server_err,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line:
                server.wait(timeout=10)
                server_err.seek(0)
                raise RuntimeError(f"the simulated-board process failed: {_tail(server_err.read())}")
            hello = json.loads(line)
            proc = subprocess.run(
                _python(case, str(size), str(image), f"tcp-client:127.0.0.1:{hello['port']}", hello["address"]),
                cwd=root,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                check=False,
            )
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {_tail(proc.stderr or proc.stdout)}")
    return CaseResult(**json.loads(proc.stdout.strip().splitlines()[-1]))


def measure_wallclock(*, timeout_s: float = 150.0) -> WallClock:
    """Run the cases in child processes; a missing product part gives ``skipped`` with the reason, not numbers."""
    try:
        import bumble  # noqa: F401

        import bridge.api
        import bridge.sim.world  # noqa: F401
        from bridge.image import Chip, build_image
    except ImportError as exc:
        return WallClock(skipped=f"the product path is not importable here ({exc})")
    result = WallClock()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        images: dict[int, Path] = {}
        for size in (MIB, 4 * MIB):
            images[size] = Path(tmp) / f"blink-{size}.bin"
            images[size].write_bytes(build_image(chip=Chip.ESP32, project="blink", version="2.0.0", size=size))
        for case, size in (("bare", 4 * MIB), ("push", MIB), ("push", 4 * MIB)):
            try:
                result.cases.append(_run_child(case, size, images[size], timeout_s))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                result.skipped = f"{case} with {size // 1024} KiB failed: {exc}"
                result.cases = []
                break
    return result


def main(argv: list[str]) -> int:
    """``serve SIZE`` | ``push|bare SIZE IMAGE HCI ADDRESS`` (used by ``measure_wallclock``)."""
    if argv[:1] == ["serve"] and len(argv) == 2:
        asyncio.run(_serve(int(argv[1])))
        return 0
    if len(argv) == 5 and argv[0] in ("push", "bare"):
        case, size, image, hci, address = argv
        result = asyncio.run(_case(case, int(size), Path(image), hci, address))
        print(json.dumps(asdict(result)))
        return 0
    print("usage: python -m benchmarks.wallclock serve SIZE | push|bare SIZE IMAGE HCI ADDRESS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
