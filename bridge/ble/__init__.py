"""The BLE link: finding boards and talking to one over bleak.

::

    from bridge.ble import BoardLink, backend_from_hci, scan

    backend = backend_from_hci(None)                 # the OS stack; "usb:0" etc. drives a dongle through Bumble
    boards = await scan(backend, timeout_s=5)        # strongest first, filtered by the OTA service UUID
    async with await BoardLink.connect(boards[0], backend=backend) as link:
        await link.write_control(command)
        reply = await link.recv_control(timeout_s=5)

Bumble is imported only by :mod:`bridge.ble.bumble_backend` (and :mod:`bridge.sim`), never by this package.
"""

from __future__ import annotations

from bridge.ble.backend import (
    BleakClasses,
    BleBackend,
    HciBackend,
    OsBackend,
    TransportLostError,
    backend_from_hci,
)
from bridge.ble.link import BoardLink, GattError, LinkClosedError, choose_frame_bytes
from bridge.ble.scan import BoardAdvert, find_board, scan

__all__ = [
    "BleBackend",
    "BleakClasses",
    "BoardAdvert",
    "BoardLink",
    "GattError",
    "HciBackend",
    "LinkClosedError",
    "OsBackend",
    "TransportLostError",
    "backend_from_hci",
    "choose_frame_bytes",
    "find_board",
    "scan",
]
