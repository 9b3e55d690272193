"""The Bumble bleak backend's own edges (the end-to-end path is covered in test_ble_link.py)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
from bleak.exc import BleakError

from bridge.ble.bumble_backend import BumbleBleakClient


async def test_an_operation_refused_for_a_dropped_link_is_closed_not_left_unawaited() -> None:
    """A GATT coroutine handed over after the link dropped is closed, so Python never warns it was not awaited."""

    async def discover() -> None:
        raise AssertionError("must not run")

    operation = discover()
    gone = SimpleNamespace(_connection=None)
    with pytest.raises(BleakError, match="Not connected"):
        await BumbleBleakClient._guard(gone, operation)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(operation) == inspect.CORO_CLOSED
