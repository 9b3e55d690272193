"""Finding boards: a scan filtered by the protocol's service UUID and/or a name or address, with RSSI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bleak import BleakScanner
from bleak.exc import BleakBluetoothNotAvailableError, BleakError

from bridge.ble.backend import BleBackend, OsBackend, no_bluetooth_stack
from bridge.errors import BoardNotFoundError, TransportError
from protocol.gatt import SERVICE_UUID

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

__all__ = ["BoardAdvert", "find_board", "scan"]

logger = logging.getLogger(__name__)

#: ``AdvertisementData.rssi`` when the OS reports none.
RSSI_UNKNOWN = -127


@dataclass(frozen=True)
class BoardAdvert:
    """One board seen by a scan.

    ``address`` is the stable identity on this host (a MAC address; on macOS a per-host UUID). ``name`` is the
    advertised local name. ``rssi`` is the strongest value seen during the scan, in dBm. ``device`` is bleak's
    handle, which connects faster than an address string (no second scan).
    """

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...] = ()
    service_data: Mapping[str, bytes] = field(default_factory=dict, compare=False)
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict, compare=False)
    tx_power_dbm: int | None = None
    seen_at: float = field(default=0.0, compare=False)
    device: BLEDevice | None = field(default=None, compare=False, repr=False)

    @property
    def has_ota_service(self) -> bool:
        return SERVICE_UUID in self.service_uuids

    @property
    def label(self) -> str:
        """``name (address)`` for messages."""
        return f"{self.name} ({self.address})" if self.name else self.address

    def matches(self, *, name: str | None = None, address: str | None = None) -> bool:
        """True when this advert is the board named ``name`` and/or at ``address`` (case-insensitive)."""
        if address is not None and self.address.lower() != address.lower():
            return False
        return name is None or (self.name is not None and self.name.lower() == name.lower())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (``bridge scan --json``)."""
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "ota_service": self.has_ota_service,
            "tx_power_dbm": self.tx_power_dbm,
            "service_data": {key: value.hex() for key, value in self.service_data.items()},
            "manufacturer_data": {str(key): value.hex() for key, value in self.manufacturer_data.items()},
        }


def _advert(device: BLEDevice, adv: AdvertisementData, previous: BoardAdvert | None) -> BoardAdvert:
    rssi = adv.rssi if adv.rssi is not None else RSSI_UNKNOWN
    if previous is not None:
        rssi = max(rssi, previous.rssi)
    return BoardAdvert(
        address=device.address,
        name=adv.local_name or device.name or (previous.name if previous else None),
        rssi=rssi,
        service_uuids=tuple(u.lower() for u in adv.service_uuids),
        service_data=dict(adv.service_data),
        manufacturer_data=dict(adv.manufacturer_data),
        tx_power_dbm=adv.tx_power,
        seen_at=time.monotonic(),
        device=device,
    )


async def scan(
    backend: BleBackend | None = None,
    *,
    timeout_s: float = 5.0,
    name: str | None = None,
    address: str | None = None,
    stop_at_first: bool | None = None,
) -> list[BoardAdvert]:
    """Scan for boards and return them strongest first.

    Without ``name``/``address`` only adverts carrying the OTA service UUID count (the OS filters on it too).
    With a name or address the UUID is not required (some firmware puts it in the scan response only), and the
    scan stops at the first match unless ``stop_at_first=False``. An empty list is a valid answer.

    Raises :class:`bridge.errors.TransportError` when the radio cannot scan (Bluetooth off, no adapter).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    backend = backend or OsBackend()
    classes = await backend.open()
    targeted = name is not None or address is not None
    first = stop_at_first if stop_at_first is not None else targeted
    seen: dict[str, BoardAdvert] = {}
    found = asyncio.Event()

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        advert = _advert(device, adv, seen.get(device.address))
        if targeted:
            if not advert.matches(name=name, address=address):
                return
        elif not advert.has_ota_service:
            return
        seen[device.address] = advert
        if first:
            found.set()

    kwargs: dict[str, Any] = {} if classes.scanner is None else {"backend": classes.scanner}
    try:
        scanner = BleakScanner(on_advert, service_uuids=None if targeted else [SERVICE_UUID], **kwargs)
        async with scanner:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(found.wait(), timeout=timeout_s)
    except BleakBluetoothNotAvailableError as exc:
        raise TransportError(
            f"Bluetooth is not available: {exc}",
            hint="Turn Bluetooth on (and allow this program to use it), or drive a USB dongle with --hci usb:0.",
        ) from exc
    except (BleakError, OSError) as exc:
        if isinstance(backend, OsBackend) and (missing := no_bluetooth_stack(exc)) is not None:
            raise missing from exc
        raise TransportError(f"scanning failed: {exc}") from exc
    adverts = sorted(seen.values(), key=lambda a: (-a.rssi, a.address))
    logger.debug("scan on %s found %d board(s)", backend.name, len(adverts))
    return adverts


async def find_board(
    backend: BleBackend | None = None,
    *,
    name: str | None = None,
    address: str | None = None,
    timeout_s: float = 5.0,
) -> BoardAdvert:
    """The one board named ``name`` or at ``address`` (or the strongest OTA board if neither is given).

    Raises :class:`bridge.errors.BoardNotFoundError` if none answered within ``timeout_s``.
    """
    adverts = await scan(backend, timeout_s=timeout_s, name=name, address=address)
    if not adverts:
        wanted = name or address
        what = f"board {wanted!r}" if wanted else "OTA Bridge board"
        raise BoardNotFoundError(f"no {what} answered a {timeout_s:g} s scan")
    return adverts[0]
