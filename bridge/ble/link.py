"""The link to one board over bleak: connect, control writes and notifications, data frames, disconnects.

Rules this module keeps (facts: ``notes/ble-testing-with-bumble.md``, ``notes/ble-throughput.md``):

* notifications are subscribed before the first command is written, and queued in arrival order;
* every wait (a write, a notification, the connect itself) is raced against the disconnect callback and a
  timeout, so a dropped link raises :class:`bridge.errors.DisconnectedError` instead of hanging;
* data frames are sized from the data characteristic's ``max_write_without_response_size`` (BlueZ reports
  ``mtu_size`` as 23), never above 512 (the largest attribute value; Bumble drops bigger writes), preferring
  244 or 495 bytes, which fill one or two 251-octet link-layer packets exactly;
* ``response=`` is always explicit: control writes with response, data writes without;
* the OS gives no back-pressure for writes without response (BlueZ and macOS queue them blindly), so the caller
  paces data writes by the protocol's window; this class never queues data of its own;
* bleak's exceptions are translated into the :mod:`bridge.errors` transport family here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bleak import BleakClient
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from bridge.ble.backend import BleBackend, OsBackend, TransportLostError, no_bluetooth_stack
from bridge.ble.scan import BoardAdvert, find_board
from bridge.errors import (
    BoardNotFoundError,
    BoardTimeoutError,
    DisconnectedError,
    ProtocolViolationError,
    TransportError,
)
from protocol.gatt import CONTROL_UUID, DATA_UUID, MAX_ATTRIBUTE_BYTES, MIN_ATT_PAYLOAD, SERVICE_UUID

if TYPE_CHECKING:
    from bleak.backends.characteristic import BleakGATTCharacteristic

__all__ = ["BoardLink", "GattError", "LinkClosedError", "choose_frame_bytes"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: ATT payloads that fill whole 251-octet LL packets: k * 251 - 4 (L2CAP) - 3 (ATT write header).
PACKET_FITTING_FRAMES = (495, 244)

#: Notifications kept before the reader falls behind (each is a small control message).
NOTIFICATION_QUEUE_LIMIT = 4096

_ADDRESS_CHARS = set("0123456789abcdefABCDEF:-")


class GattError(TransportError):
    """The board answered a GATT request with an ATT error; ``att_code`` is the ATT error code."""

    def __init__(self, message: str, *, att_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.att_code = att_code


class LinkClosedError(DisconnectedError):
    """The link was closed by this side (``close()``) and cannot be used any more."""


def choose_frame_bytes(max_write_without_response: int, *, limit: int | None = None) -> int:
    """The data write size for a link whose characteristic accepts ``max_write_without_response`` bytes.

    Never above 512 or ``limit``; 495 or 244 when they fit (no half-empty link-layer packet at the end of each
    write); otherwise the whole allowance.
    """
    cap = min(max_write_without_response, MAX_ATTRIBUTE_BYTES)
    if limit is not None:
        cap = min(cap, limit)
    if cap < MIN_ATT_PAYLOAD:
        raise ValueError(f"a write of {cap} bytes is below the ATT minimum of {MIN_ATT_PAYLOAD}")
    for size in PACKET_FITTING_FRAMES:
        if cap >= size:
            return size
    return cap


def _looks_like_address(target: str) -> bool:
    # A MAC address (12 hex digits with separators) or a CoreBluetooth UUID (32 hex digits with dashes).
    digits = target.replace(":", "").replace("-", "")
    return set(target) <= _ADDRESS_CHARS and len(digits) in (12, 32)


def translate(exc: BaseException, what: str) -> TransportError:
    """The bridge error for a bleak (or OS) failure during ``what``."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, BleakGATTProtocolError):
        return GattError(f"{what}: the board answered with ATT error 0x{int(exc.code):02X}", att_code=int(exc.code))
    if isinstance(exc, BleakDeviceNotFoundError):
        return BoardNotFoundError(f"{what}: the board was not found ({exc})")
    if isinstance(exc, TimeoutError):
        return BoardTimeoutError(f"{what}: no answer in time")
    text = str(exc)
    if "not connected" in text.lower() or "disconnect" in text.lower():
        return DisconnectedError(f"{what}: the link dropped ({text})")
    return TransportError(f"{what}: {text or type(exc).__name__}")


class BoardLink:
    """A connected GATT link to one board's OTA service.

    Create with :meth:`connect`; use :meth:`write_control`, :meth:`write_data`, :meth:`recv_control`; end with
    :meth:`close` (or ``async with``). After the link drops every call raises :class:`DisconnectedError`.
    """

    def __init__(self, client: BleakClient, address: str, name: str | None, backend: BleBackend) -> None:
        # Use BoardLink.connect(): it sets up notifications and the frame size before anyone writes.
        self._client = client
        self.address = address
        self.name = name
        self.backend = backend
        self._notifications: asyncio.Queue[bytes] = asyncio.Queue()
        self._overflowed = False
        self._disconnected = asyncio.Event()
        self._closed = False
        self._control: BleakGATTCharacteristic | None = None
        self._data: BleakGATTCharacteristic | None = None
        self.max_write_bytes = MIN_ATT_PAYLOAD
        self.notifications_received = 0
        self.data_writes = 0
        self.data_bytes_written = 0

    # -- connecting -------------------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        target: BoardAdvert | str,
        *,
        backend: BleBackend | None = None,
        timeout_s: float = 15.0,
        retries: int = 2,
        retry_delay_s: float = 0.5,
        scan_timeout_s: float = 5.0,
        frame_limit_bytes: int | None = None,
    ) -> BoardLink:
        """Connect to ``target`` (a scan result, an address, or an advertised name) and get ready to talk.

        Makes ``1 + retries`` attempts, each bounded by ``timeout_s`` (connect, MTU exchange, discovery,
        subscription). ``frame_limit_bytes`` caps :attr:`max_write_bytes` (e.g. the board's own max frame).
        Raises :class:`BoardNotFoundError`, :class:`BoardTimeoutError`, :class:`TransportError`, or
        :class:`ProtocolViolationError` if the device does not have the OTA service.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        backend = backend or OsBackend()
        if isinstance(target, str):
            # A scan first, for an address too: a board that is not in range fails after one scan (a
            # BoardNotFoundError) instead of after 1 + retries connect timeouts, and bleak connects faster to a
            # device it has just seen.
            if _looks_like_address(target):
                target = await find_board(backend, address=target, timeout_s=scan_timeout_s)
            else:
                target = await find_board(backend, name=target, timeout_s=scan_timeout_s)
        last: TransportError | None = None
        for attempt in range(retries + 1):
            if attempt:
                logger.info("connect attempt %d/%d to %s after: %s", attempt + 1, retries + 1, target, last)
                await asyncio.sleep(retry_delay_s * attempt)
            try:
                return await cls._connect_once(target, backend, timeout_s, frame_limit_bytes)
            except (ProtocolViolationError, TransportLostError):
                raise
            except TransportError as exc:
                last = exc
        assert last is not None
        raise last

    @classmethod
    async def _connect_once(
        cls, target: BoardAdvert | str, backend: BleBackend, timeout_s: float, frame_limit_bytes: int | None
    ) -> BoardLink:
        classes = await backend.open()
        if isinstance(target, BoardAdvert):
            address, name = target.address, target.name
            device_or_address: Any = target.device if target.device is not None else target.address
        else:
            address, name, device_or_address = target, None, target
        link: BoardLink | None = None

        def on_disconnect(_client: BleakClient) -> None:
            if link is not None:
                link._on_disconnect()

        kwargs: dict[str, Any] = {} if classes.client is None else {"backend": classes.client}
        client = BleakClient(device_or_address, on_disconnect, timeout=timeout_s, **kwargs)
        link = cls(client, address, name, backend)
        try:
            async with asyncio.timeout(timeout_s):
                await client.connect()
                await link._prepare(frame_limit_bytes)
        except TimeoutError as exc:
            await link._abandon()
            raise BoardTimeoutError(f"connecting to {link.label}: no answer within {timeout_s:g} s") from exc
        except (BleakError, OSError) as exc:
            await link._abandon()
            if isinstance(backend, OsBackend) and (missing := no_bluetooth_stack(exc)) is not None:
                raise missing from exc
            raise translate(exc, f"connecting to {link.label}") from exc
        except BaseException:
            await link._abandon()
            raise
        logger.info("connected to %s: frames of %d bytes", link.label, link.max_write_bytes)
        return link

    async def _prepare(self, frame_limit_bytes: int | None) -> None:
        service = self._client.services.get_service(SERVICE_UUID)
        if service is None:
            raise ProtocolViolationError(
                f"{self.label} has no OTA Bridge service",
                hint="Check the address: this device does not run OTA Bridge firmware.",
            )
        control = service.get_characteristic(CONTROL_UUID)
        data = service.get_characteristic(DATA_UUID)
        problems = []
        if control is None or "write" not in control.properties or "notify" not in control.properties:
            problems.append("a control characteristic with write and notify")
        if data is None or "write-without-response" not in data.properties:
            problems.append("a data characteristic with write without response")
        if problems or control is None or data is None:
            raise ProtocolViolationError(f"{self.label}'s OTA service lacks " + " and ".join(problems))
        self._control, self._data = control, data
        # Subscribe first: the board may answer the very first command with a notification.
        await self._client.start_notify(control, self._on_notification)
        self.max_write_bytes = choose_frame_bytes(await self._settled_write_size(data), limit=frame_limit_bytes)

    @staticmethod
    async def _settled_write_size(data: BleakGATTCharacteristic) -> int:
        # Some stacks report the default 20 until the MTU exchange lands (bleak's docs); give it a moment.
        size = data.max_write_without_response_size
        for _ in range(5):
            if size > MIN_ATT_PAYLOAD:
                break
            await asyncio.sleep(0.1)
            size = data.max_write_without_response_size
        return int(size)

    async def _abandon(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), timeout=5.0)

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.name else self.address

    @property
    def is_connected(self) -> bool:
        return not self._closed and not self._disconnected.is_set() and self._client.is_connected

    @property
    def mtu_size(self) -> int:
        """The ATT MTU as the OS reports it (informational only: BlueZ says 23; use :attr:`max_write_bytes`)."""
        return int(self._client.mtu_size)

    def _on_disconnect(self) -> None:
        if not self._disconnected.is_set():
            logger.info("link to %s dropped", self.label)
            self._disconnected.set()

    def _on_notification(self, _sender: BleakGATTCharacteristic, data: bytearray) -> None:
        self.notifications_received += 1
        if self._notifications.qsize() >= NOTIFICATION_QUEUE_LIMIT:
            self._overflowed = True
            return
        self._notifications.put_nowait(bytes(data))

    def _check_usable(self, what: str) -> None:
        if self._closed:
            raise LinkClosedError(f"{what}: the link to {self.label} is closed")
        if self._disconnected.is_set() or not self._client.is_connected:
            raise DisconnectedError(f"{what}: the link to {self.label} dropped")

    async def _race(self, operation: Callable[[], Awaitable[T]], timeout_s: float, what: str) -> T:
        """``operation()`` unless the link drops or ``timeout_s`` passes first."""
        self._check_usable(what)
        task = asyncio.ensure_future(operation())
        dropped = asyncio.ensure_future(self._disconnected.wait())
        try:
            done, _ = await asyncio.wait({task, dropped}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            dropped.cancel()
        if task in done:
            try:
                return task.result()
            except (BleakError, OSError) as exc:
                raise translate(exc, what) from exc
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if dropped in done or self._disconnected.is_set():
            raise DisconnectedError(f"{what}: the link to {self.label} dropped")
        raise BoardTimeoutError(f"{what}: {self.label} did not answer within {timeout_s:g} s")

    # -- I/O ----------------------------------------------------------------------------------------------------

    async def write_control(self, data: bytes, *, timeout_s: float = 10.0) -> None:
        """Write one command to the control characteristic, with response (the board acknowledges at ATT level)."""
        if len(data) > MAX_ATTRIBUTE_BYTES:
            raise ValueError(f"a control write of {len(data)} bytes exceeds {MAX_ATTRIBUTE_BYTES}")
        control = self._control
        assert control is not None
        await self._race(
            lambda: self._client.write_gatt_char(control, data, response=True), timeout_s, "writing a command"
        )

    async def write_data(self, data: bytes, *, timeout_s: float = 10.0) -> None:
        """Write one data frame without response. ``len(data)`` must be at most :attr:`max_write_bytes`."""
        if len(data) > self.max_write_bytes:
            raise ValueError(f"a data frame of {len(data)} bytes exceeds the link's {self.max_write_bytes}")
        characteristic = self._data
        assert characteristic is not None
        await self._race(
            lambda: self._client.write_gatt_char(characteristic, data, response=False), timeout_s, "writing image data"
        )
        self.data_writes += 1
        self.data_bytes_written += len(data)

    async def recv_control(self, timeout_s: float) -> bytes:
        """The next control notification, in arrival order.

        Notifications that arrived before a disconnect are still returned; then :class:`DisconnectedError`.
        Raises :class:`BoardTimeoutError` after ``timeout_s`` without one.
        """
        if self._overflowed:
            raise ProtocolViolationError(f"{self.label} sent more than {NOTIFICATION_QUEUE_LIMIT} unread notifications")
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._notifications.get_nowait()
        return await self._race(self._notifications.get, timeout_s, "waiting for the board")

    def pending_notifications(self) -> int:
        """Notifications received and not read yet."""
        return self._notifications.qsize()

    async def wait_disconnected(self, timeout_s: float) -> bool:
        """Wait until the board drops the link (e.g. after a reboot command); True if it did in time."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._disconnected.wait(), timeout=timeout_s)
        return self._disconnected.is_set()

    async def close(self) -> None:
        """Disconnect (idempotent, never raises for a link that is already gone)."""
        if self._closed:
            return
        self._closed = True
        if self._client.is_connected:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await asyncio.wait_for(self._client.disconnect(), timeout=5.0)
        self._disconnected.set()

    async def __aenter__(self) -> BoardLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "closed" if self._closed else "dropped"
        return f"<BoardLink {self.label} {state} frames={self.max_write_bytes}B>"
