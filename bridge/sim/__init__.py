"""A simulated ESP32 board on a virtual Bluetooth world (the radio parts need the ``sim`` extra, Bumble).

::

    from bridge.sim import SimBoardConfig, SimFaults, VirtualWorld

    async with VirtualWorld() as world:
        board = await world.add_board(SimBoardConfig(chip=Chip.ESP32C3, faults=SimFaults(drop_frames={10})))
        ...  # the bridge uses world.backend; tests inspect board.running_version, board.stats, ...

The flash, partition table and ESP-IDF OTA model (:mod:`bridge.sim.flash`, :mod:`bridge.sim.partitions`,
:mod:`bridge.sim.esp_ota`) and the configuration are pure Python; :class:`VirtualWorld` and
:class:`SimulatedBoard` run on Bumble, which is imported only when they are first used. ``import bridge`` never
imports this package. Guide: ``docs/SIMULATOR.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.sim.config import DEFAULT_FEATURES, SelfTest, SimBoardConfig, SimFaults

if TYPE_CHECKING:
    from bridge.sim.board import BoardStats, SimulatedBoard
    from bridge.sim.world import VirtualWorld

__all__ = [
    "DEFAULT_FEATURES",
    "BoardStats",
    "SelfTest",
    "SimBoardConfig",
    "SimFaults",
    "SimulatedBoard",
    "VirtualWorld",
]

_LAZY = {"VirtualWorld": "bridge.sim.world", "SimulatedBoard": "bridge.sim.board", "BoardStats": "bridge.sim.board"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
