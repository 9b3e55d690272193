"""Smoke test: the performance harness runs end to end on a small case, deterministically.

Timing targets are not asserted here (they live in benchmarks/README.md); this only checks that
``python -m benchmarks.run`` works, writes its report atomically, and that its JSON is self-consistent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMES = {
    "ours",
    "espressif-ble-ota",
    "espressif-ble-ota-w3",
    "smp-1",
    "smp-1-buf2475",
    "nordic-dfu-prn12",
}


def _run(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], Path]:
    report = tmp_path / "report" / "README.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--profiles",
            "c",
            "--image-kib",
            "64",
            "--no-sweeps",
            "--no-sensitivity",
            "--skip-wallclock",
            "--json",
            "--output",
            str(report),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), report


@pytest.mark.timeout(60)
def test_harness_runs_and_is_deterministic(tmp_path: Path) -> None:
    first, report = _run(tmp_path)
    second, _ = _run(tmp_path)

    rows = first["rows"]
    assert {r["scheme"] for r in rows} == SCHEMES
    assert {r["board"] for r in rows} == {"sequential-4k", "erase-all-first", "erase-ahead-64k"}
    assert all(r["profile"] == "c" for r in rows)
    for r in rows:
        assert 0 < r["goodput_bytes_per_s"] <= r["capacity_bytes_per_s"]
        assert r["efficiency"] == pytest.approx(r["goodput_bytes_per_s"] / r["capacity_bytes_per_s"])

    # iPhone profile: 1M PHY, 30 ms, MTU 185, 6 PDUs per event -> 6 * 182 B per 30 ms = 36.4 kB/s
    # (291 kbit/s in notes/ble-throughput.md §1.2 lesson iii).
    capacity = first["capacity"]["c"]
    assert capacity["write_len"] == 182
    assert capacity["bytes_per_s"] == pytest.approx(6 * 182 / 0.030, rel=0.01)

    # Same inputs, same numbers: the model runs on a virtual clock.
    def figures(doc: dict[str, Any]) -> list[tuple[str, str, float]]:
        return [(r["scheme"], r["board"], r["goodput_bytes_per_s"]) for r in doc["rows"]]

    assert figures(first) == figures(second)

    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Performance")
    assert "| (c) iPhone + ESP32 |" in text
    assert "Not measured yet" in text
    assert not list(report.parent.glob(".README.md.*")), "temporary report file left behind"


def test_bad_profile_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--profiles", "z", "--no-write", "--skip-wallclock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown profile" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_shipped_window_is_what_the_boards_grant() -> None:
    """The report's "defaults the code ships" row must describe the simulated and the reference board."""
    from benchmarks.ours import DEFAULT_WINDOW_BYTES
    from bridge.sim.config import SimBoardConfig

    assert SimBoardConfig().window_bytes == DEFAULT_WINDOW_BYTES == 32 * 1024
