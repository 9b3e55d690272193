"""A minimal GATT peripheral on the virtual world, for tests of the link layer alone.

It is a fake of the board for the link module's unit tests only: it echoes control writes as notifications and
records data writes, with a few knobs to misbehave. End-to-end tests use ``bridge.sim.SimulatedBoard`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bumble import att
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from bridge.sim.world import VirtualWorld
from protocol.gatt import CONTROL_UUID, DATA_UUID, SERVICE_UUID

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"


@dataclass
class Peripheral:
    """A test peripheral: knobs are plain attributes, results are recorded in lists."""

    device: Device
    name: str
    control: Characteristic[bytes] | None = None
    commands: list[bytes] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    #: Called with each control write; returns the notifications to send back (default: one echo).
    reply: Callable[[bytes], list[bytes]] = lambda value: [b"echo:" + value]
    #: Raise this ATT error code on every control write.
    att_error: int | None = None
    #: Drop the link right after this many control writes (after sending the replies).
    disconnect_after_commands: int | None = None
    connection: Connection | None = None

    @property
    def address(self) -> str:
        return str(self.device.random_address.to_string(with_type_qualifier=False))

    def _on_control(self, connection: Connection, value: bytes) -> None:
        if self.att_error is not None:
            raise att.ATT_Error(self.att_error)
        self.connection = connection
        self.commands.append(bytes(value))
        replies = self.reply(bytes(value))
        drop = self.disconnect_after_commands is not None and len(self.commands) >= self.disconnect_after_commands
        asyncio.get_running_loop().create_task(self._answer(connection, replies, drop))

    async def _answer(self, connection: Connection, replies: list[bytes], drop: bool) -> None:
        assert self.control is not None
        for value in replies:
            await self.device.notify_subscriber(connection, self.control, value)
        if drop:
            await asyncio.sleep(0.01)
            await connection.disconnect()

    def _on_data(self, connection: Connection, value: bytes) -> None:
        self.frames.append(bytes(value))


async def add_peripheral(
    world: VirtualWorld, name: str, *, ota_service: bool = True, max_mtu: int | None = None
) -> Peripheral:
    device = await world.new_device(name)
    peripheral = Peripheral(device=device, name=name)
    uuids: list[str]
    if ota_service:
        peripheral.control = Characteristic(
            CONTROL_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=peripheral._on_control),
        )
        data = Characteristic(
            DATA_UUID,
            Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=peripheral._on_data),
        )
        device.add_service(Service(SERVICE_UUID, [peripheral.control, data]))
        uuids = [SERVICE_UUID]
    else:
        battery = Characteristic(
            "00002a37-0000-1000-8000-00805f9b34fb",
            Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.READABLE,
            CharacteristicValue(read=lambda connection: b"\x00"),
        )
        device.add_service(Service(HEART_RATE_SERVICE, [battery]))
        uuids = [HEART_RATE_SERVICE]
    if max_mtu is not None:
        device.gatt_server.max_mtu = max_mtu
    advertising = AdvertisingData(
        [
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, b"".join(bytes(UUID(u)) for u in uuids)),
            (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
        ]
    )
    await device.start_advertising(
        advertising_data=bytes(advertising), auto_restart=True, advertising_interval_min=20, advertising_interval_max=20
    )
    return peripheral
