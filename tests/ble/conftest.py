"""Fixtures for the BLE link tests: a fresh virtual radio world per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.sim.world import VirtualWorld


@pytest.fixture
async def world() -> AsyncIterator[VirtualWorld]:
    async with VirtualWorld() as world:
        yield world
