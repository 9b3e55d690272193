"""A bleak backend on a Bumble host: the product's bleak code without the OS Bluetooth stack.

``BleakScanner(..., backend=Scanner)`` and ``BleakClient(..., backend=Client)`` accept a backend *class*; the Bumble
``Device`` it drives is bound as a class attribute of a subclass made per device (:func:`bind_backend`), which keeps
bleak's typed keyword arguments untouched. The device may sit on a virtual controller (tests, ``bridge sim``,
``bridge demo``) or on a real one behind an HCI transport (``--hci usb:0``): the code here does not tell them apart.

What the client does that an OS stack would do on its own: the ATT MTU exchange (517) right after connecting, full
service discovery, and ATT errors surfaced as :class:`bleak.exc.BleakGATTProtocolError`. It does not call
``set_phy``/``set_data_length`` (Bumble's virtual controller does not implement them).

Needs the ``sim`` extra (Bumble); importing this module imports Bumble.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ClassVar, TypeVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import att, hci
from bumble.core import UUID as BumbleUUID
from bumble.core import TimeoutError as BumbleTimeoutError
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy, ServiceProxy
from bumble.transport import open_transport

from bridge.ble.backend import BleakClasses, BleBackend, TransportLostError, transport_error

__all__ = [
    "BumbleBackend",
    "BumbleBleakClient",
    "BumbleBleakScanner",
    "bind_backend",
    "bleak_uuid",
    "open_hci_backend",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What desktop stacks ask for right after connecting (BlueZ, macOS); ESP-IDF boards accept up to 517.
REQUESTED_MTU = 517

#: Advertising data types (Core Supplement Part A 1.x) read by the scanner.
_AD_INCOMPLETE_16 = 0x02
_AD_COMPLETE_16 = 0x03
_AD_INCOMPLETE_32 = 0x04
_AD_COMPLETE_32 = 0x05
_AD_INCOMPLETE_128 = 0x06
_AD_COMPLETE_128 = 0x07
_AD_SHORT_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_AD_TX_POWER = 0x0A
_AD_SERVICE_DATA_16 = 0x16
_AD_SERVICE_DATA_32 = 0x20
_AD_SERVICE_DATA_128 = 0x21
_AD_MANUFACTURER = 0xFF

_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"

_PROPERTY_NAMES: tuple[tuple[Characteristic.Properties, str], ...] = (
    (Characteristic.Properties.BROADCAST, "broadcast"),
    (Characteristic.Properties.READ, "read"),
    (Characteristic.Properties.WRITE_WITHOUT_RESPONSE, "write-without-response"),
    (Characteristic.Properties.WRITE, "write"),
    (Characteristic.Properties.NOTIFY, "notify"),
    (Characteristic.Properties.INDICATE, "indicate"),
    (Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES, "authenticated-signed-writes"),
    (Characteristic.Properties.EXTENDED_PROPERTIES, "extended-properties"),
)


def bleak_uuid(value: BumbleUUID) -> str:
    """A Bumble UUID as bleak spells UUIDs: 128-bit, lower case, dashed."""
    return str(uuid.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


def _short_uuid(data: bytes) -> str:
    """A 16- or 32-bit UUID (little endian on the air) expanded on the Bluetooth base UUID."""
    number = int.from_bytes(data, "little")
    return f"{number:08x}{_BASE_UUID_TAIL}"


def _uuid_list(data: bytes, size: int) -> list[str]:
    items = [data[i : i + size] for i in range(0, len(data) - size + 1, size)]
    if size == 16:
        return [str(uuid.UUID(bytes=bytes(reversed(item)))) for item in items]
    return [_short_uuid(item) for item in items]


def advertisement_data(advertisement: Advertisement) -> AdvertisementData:
    """Translate a Bumble advertisement into bleak's :class:`AdvertisementData` (what an OS backend reports)."""
    local_name: str | None = None
    service_uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    tx_power: int | None = None
    for ad_type, value in advertisement.data.ad_structures:
        data = bytes(value)
        if ad_type in (_AD_COMPLETE_NAME, _AD_SHORT_NAME):
            if ad_type == _AD_COMPLETE_NAME or local_name is None:
                local_name = data.decode("utf-8", errors="replace")
        elif ad_type in (_AD_INCOMPLETE_16, _AD_COMPLETE_16):
            service_uuids += _uuid_list(data, 2)
        elif ad_type in (_AD_INCOMPLETE_32, _AD_COMPLETE_32):
            service_uuids += _uuid_list(data, 4)
        elif ad_type in (_AD_INCOMPLETE_128, _AD_COMPLETE_128):
            service_uuids += _uuid_list(data, 16)
        elif ad_type == _AD_SERVICE_DATA_16 and len(data) >= 2:
            service_data[_short_uuid(data[:2])] = data[2:]
        elif ad_type == _AD_SERVICE_DATA_32 and len(data) >= 4:
            service_data[_short_uuid(data[:4])] = data[4:]
        elif ad_type == _AD_SERVICE_DATA_128 and len(data) >= 16:
            service_data[str(uuid.UUID(bytes=bytes(reversed(data[:16]))))] = data[16:]
        elif ad_type == _AD_MANUFACTURER and len(data) >= 2:
            (company,) = struct.unpack_from("<H", data)
            manufacturer_data[company] = data[2:]
        elif ad_type == _AD_TX_POWER and len(data) >= 1:
            tx_power = struct.unpack("b", data[:1])[0]
    rssi = advertisement.rssi
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=list(dict.fromkeys(service_uuids)),  # the virtual controller echoes the data as scan response
        tx_power=tx_power,
        rssi=rssi if rssi != Advertisement.RSSI_NOT_AVAILABLE else -127,
        platform_data=(advertisement,),
    )


def address_text(address: hci.Address) -> str:
    """The address as bleak shows it (no Bumble type suffix)."""
    return str(address.to_string(with_type_qualifier=False))


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend over a Bumble device (bound by :func:`bind_backend`)."""

    _device: ClassVar[Device]
    _known_addresses: ClassVar[dict[str, hci.Address]]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._listening = False

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        adv = advertisement_data(advertisement)
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        text = address_text(advertisement.address)
        self._known_addresses[text.upper()] = advertisement.address
        device = self.create_or_update_device(text, text, adv.local_name, advertisement.address, adv)
        self.call_detection_callbacks(device, adv)

    async def start(self) -> None:
        self.seen_devices = {}
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self._listening = True
        try:
            await self._device.start_scanning(active=self._active, filter_duplicates=False)
        except Exception as exc:
            self._stop_listening()
            raise BleakError(f"could not start scanning: {exc}") from exc

    async def stop(self) -> None:
        self._stop_listening()
        with contextlib.suppress(Exception):  # already stopped, or the controller went away
            await self._device.stop_scanning()

    def _stop_listening(self) -> None:
        if self._listening:
            self._device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            self._listening = False


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend over a Bumble device (bound by :func:`bind_backend`).

    Writes without response wait while more than :attr:`max_pending_acl_packets` HCI packets are queued for the
    controller, the back-pressure a real controller's buffers give; on a virtual link credits return at once.
    """

    _device: ClassVar[Device]
    _known_addresses: ClassVar[dict[str, hci.Address]]
    max_pending_acl_packets: ClassVar[int] = 64

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        details = address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        self._peer_address: hci.Address | None = details if isinstance(details, hci.Address) else None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._name = address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}
        self._closing = False

    # -- connection -------------------------------------------------------------------------------------------

    def _resolve_address(self) -> hci.Address:
        if self._peer_address is not None:
            return self._peer_address
        known = self._known_addresses.get(self.address.upper())
        if known is not None:
            return known
        try:
            return hci.Address(self.address)
        except Exception as exc:
            raise BleakDeviceNotFoundError(self.address, f"not a Bluetooth address: {self.address!r}") from exc

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return 23
        return int(self._connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._closing

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            logger.debug("pairing before connect is not supported by the Bumble backend; continuing without")
        address = self._resolve_address()
        try:
            connection = await self._device.connect(address, timeout=self._timeout)
        except asyncio.CancelledError:
            # Bumble cancels the controller's connection attempt only on its own timeout; do it for ours, or the
            # next attempt gets COMMAND_DISALLOWED.
            cancel = self._device.send_command(hci.HCI_LE_Create_Connection_Cancel_Command())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(cancel), timeout=2.0)  # bounded: the controller may be gone
            raise
        except hci.HCI_Error as exc:
            raise BleakError(f"could not connect to {self.address}: {exc}") from exc
        except (TimeoutError, BumbleTimeoutError) as exc:
            raise BleakDeviceNotFoundError(self.address, f"no connection to {self.address} within the timeout") from exc
        self._connection = connection
        self._closing = False
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        peer = Peer(connection)
        self._peer = peer
        try:
            await self._guard(peer.request_mtu(REQUESTED_MTU))
            self.services = await self._guard(self._discover(peer))
        except BaseException:
            await self.disconnect()
            raise

    def _on_disconnection(self, reason: int) -> None:
        logger.debug("link to %s dropped (reason 0x%02X)", self.address, reason)
        was_closing = self._closing
        self._connection = None
        self._peer = None
        self._subscriptions.clear()
        if not was_closing and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        # A requested disconnect does not call the disconnected callback (bleak: "only on unsolicited").
        self._closing = True
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), timeout=self._timeout)
        finally:
            self._connection = None
            self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("pairing is not supported by the Bumble backend")

    async def unpair(self) -> None:
        raise BleakError("pairing is not supported by the Bumble backend")

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        services: Iterable[ServiceProxy] = await peer.discover_services()
        for service_proxy in services:
            service = BleakGATTService(service_proxy, service_proxy.handle, bleak_uuid(service_proxy.uuid))
            collection.add_service(service)
            characteristics: Iterable[CharacteristicProxy[bytes]] = await peer.discover_characteristics(
                service=service_proxy
            )
            for char_proxy in characteristics:
                properties = [name for flag, name in _PROPERTY_NAMES if char_proxy.properties & flag]
                characteristic = BleakGATTCharacteristic(
                    char_proxy,
                    char_proxy.handle,
                    bleak_uuid(char_proxy.uuid),
                    properties,  # type: ignore[arg-type]  # bleak types these as a Literal union
                    self._max_write_without_response_size,
                    service,
                )
                collection.add_characteristic(characteristic)
                descriptors: Iterable[DescriptorProxy] = await peer.discover_descriptors(char_proxy)
                for descriptor_proxy in descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor_proxy,
                            descriptor_proxy.handle,
                            bleak_uuid(descriptor_proxy.type),
                            characteristic,
                        )
                    )
        return collection

    def _max_write_without_response_size(self) -> int:
        # ATT_MTU minus the 3-byte Write Command header, as CoreBluetooth and BlueZ >= 5.62 report it.
        return self.mtu_size - 3

    async def _guard(self, operation: Awaitable[T]) -> T:
        """Run one GATT operation; translate Bumble's errors and its cancel-on-disconnect into bleak errors."""
        if self._connection is None:
            if isinstance(operation, Coroutine):
                operation.close()  # never started: close it, or Python warns that it was never awaited
            raise BleakError("Not connected")
        task = asyncio.current_task()
        try:
            return await operation
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(int(exc.error_code)) from exc
        except asyncio.CancelledError:
            # Bumble cancels pending GATT requests when the link drops; only a cancellation of *our* task
            # is a real cancellation.
            if task is not None and task.cancelling():
                raise
            raise BleakError("Not connected: the link dropped during a GATT operation") from None
        except TimeoutError as exc:
            raise BleakError(f"GATT operation timed out: {exc}") from exc
        except Exception as exc:
            if self._connection is None:
                raise BleakError(f"Not connected: {exc}") from exc
            raise BleakError(f"GATT operation failed: {exc}") from exc

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    # -- I/O ----------------------------------------------------------------------------------------------------

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        value = await self._guard(peer.read_value(characteristic.handle))
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        value = await self._guard(peer.read_value(descriptor.handle))
        return bytearray(value)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        peer = self._require_peer()
        payload = bytes(data)
        if not response:
            await self._wait_for_credits()
        await self._guard(peer.write_value(characteristic.handle, payload, with_response=response))

    async def _wait_for_credits(self) -> None:
        connection = self._connection
        queue = connection.data_packet_queue if connection is not None else None
        if queue is None or queue.pending < self.max_pending_acl_packets:
            return
        flowed = asyncio.get_running_loop().create_future()

        def on_flow() -> None:
            if not flowed.done() and queue.pending < self.max_pending_acl_packets:
                flowed.set_result(None)

        queue.on("flow", on_flow)
        try:
            await self._guard(connection.cancel_on_disconnection(flowed) if connection else flowed)
        finally:
            queue.remove_listener("flow", on_flow)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        peer = self._require_peer()
        await self._guard(peer.write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()
        proxy = characteristic.obj
        if not isinstance(proxy, CharacteristicProxy):
            raise BleakError(f"characteristic {characteristic.uuid} does not belong to this connection")

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        await self._guard(peer.subscribe(proxy, on_value, prefer_notify=not kwargs.get("force_indicate", False)))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        proxy = characteristic.obj
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        if isinstance(proxy, CharacteristicProxy):
            await self._guard(peer.unsubscribe(proxy, subscriber))


def bind_backend(device: Device) -> tuple[type[BumbleBleakScanner], type[BumbleBleakClient]]:
    """bleak backend classes bound to ``device`` (a powered-on Bumble device acting as central)."""
    known: dict[str, hci.Address] = {}
    attrs: dict[str, object] = {"_device": device, "_known_addresses": known}
    scanner = type("BumbleScanner", (BumbleBleakScanner,), dict(attrs))
    client = type("BumbleClient", (BumbleBleakClient,), dict(attrs))
    return scanner, client


class BumbleBackend(BleBackend):
    """A :class:`BleBackend` over a Bumble device that is already powered on.

    ``close_transport`` (optional) is awaited by :meth:`aclose`, for backends that own their HCI transport.
    """

    def __init__(
        self,
        device: Device,
        *,
        name: str = "bumble",
        virtual: bool = False,
        close_transport: Callable[[], Awaitable[None]] | None = None,
        terminated: asyncio.Future[None] | None = None,
    ) -> None:
        self.device = device
        self._terminated = terminated
        if terminated is not None:
            terminated.add_done_callback(self._on_transport_lost)
        self.name = name
        self._virtual = virtual
        self._close_transport = close_transport
        self._classes: BleakClasses | None = None

    @property
    def is_virtual(self) -> bool:
        return self._virtual

    def _on_transport_lost(self, terminated: asyncio.Future[None]) -> None:
        """The HCI transport closed: every link on it is gone, so say so now instead of letting waits time out."""
        if not terminated.cancelled() and terminated.exception() is not None:
            logger.debug("HCI transport %s closed: %s", self.name, terminated.exception())
        logger.info("the HCI transport of %s closed; dropping its links", self.name)
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                connection.emit(Connection.EVENT_DISCONNECTION, hci.HCI_CONNECTION_TIMEOUT_ERROR)

    @property
    def transport_lost(self) -> bool:
        """True once the HCI transport closed (the peer went away, or another host took the controller)."""
        return self._terminated is not None and self._terminated.done()

    async def open(self) -> BleakClasses:
        if self.transport_lost:
            raise TransportLostError(
                f"the Bluetooth controller {self.name} went away (its HCI transport closed; another program may "
                "have taken it)",
                hint="Make sure only one bridge uses the controller, then run `bridge status` and the command again.",
            )
        if self._classes is None:
            scanner, client = bind_backend(self.device)
            self._classes = BleakClasses(scanner=scanner, client=client)
        return self._classes

    async def aclose(self) -> None:
        close, self._close_transport = self._close_transport, None
        if close is not None:
            with contextlib.suppress(Exception):
                await self.device.power_off()
            await close()


async def open_hci_backend(spec: str, *, device_name: str = "ota-bridge") -> BumbleBackend:
    """Open the HCI transport ``spec``, power a Bumble host on it, and wrap it as a backend."""
    try:
        transport = await open_transport(spec)
    except Exception as exc:  # Bumble raises many kinds (OSError, libusb errors, ValueError)
        raise transport_error(spec, exc) from exc
    try:
        device = Device.with_hci(device_name, hci.Address.generate_static_address(), transport.source, transport.sink)
        await asyncio.wait_for(device.power_on(), timeout=10.0)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await transport.close()
        raise transport_error(spec, exc) from exc
    logger.info("Bumble host on %s ready, address %s", spec, device.public_address)
    terminated = getattr(transport.source, "terminated", None)
    return BumbleBackend(
        device,
        name=f"hci:{spec}",
        close_transport=transport.close,
        terminated=terminated if isinstance(terminated, asyncio.Future) else None,
    )
