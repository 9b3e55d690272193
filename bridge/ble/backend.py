"""How the bridge reaches a Bluetooth radio.

A :class:`BleBackend` hands bleak the scanner and client classes to use:

* :class:`OsBackend`: the operating system's stack (BlueZ, CoreBluetooth, WinRT, Android) as bleak picks it;
* :class:`HciBackend`: a controller driven directly through Bumble over an HCI transport (``usb:0``,
  ``serial:/dev/ttyACM0,1000000``, ``tcp-client:127.0.0.1:9100``), so a USB dongle works the same on every OS;
* ``bridge.ble.bumble_backend.BumbleBackend``: a Bumble device that already exists, e.g. the central of a
  :class:`bridge.sim.VirtualWorld`.

Bumble is imported only when a Bumble backend is opened, so ``import bridge.ble`` stays cheap and works without the
``sim`` extra.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bridge.errors import TransportError, UsageError

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

__all__ = [
    "NO_STACK_HINT",
    "BleBackend",
    "BleakClasses",
    "HciBackend",
    "OsBackend",
    "TransportLostError",
    "backend_from_hci",
    "no_bluetooth_stack",
]

logger = logging.getLogger(__name__)

#: Bumble transports that name real or emulated controllers (``bumble.transport.open_transport``).
_HCI_SCHEMES = (
    "usb",
    "pyusb",
    "serial",
    "hci-socket",
    "tcp-client",
    "tcp-server",
    "udp",
    "ws-client",
    "ws-server",
    "unix",
    "pty",
    "file",
    "vhci",
    "android-emulator",
    "android-netsim",
)


#: What to do when the OS has no usable Bluetooth stack.
NO_STACK_HINT = (
    "Start the OS Bluetooth service (Linux: BlueZ, `systemctl start bluetooth`) and plug in an adapter, or drive a "
    "controller directly with --hci usb:0 (or --hci tcp-client:HOST:PORT for `bridge sim`), or try `bridge demo`."
)


class TransportLostError(TransportError):
    """The Bluetooth controller went away (HCI transport closed, another process took it): retrying cannot help."""


def no_bluetooth_stack(exc: BaseException) -> TransportLostError | None:
    """The error for an OS stack that is not there at all (no BlueZ/D-Bus, no adapter), or None for other failures.

    bleak on Linux reaches BlueZ through the system D-Bus socket: without it the failure is a bare
    ``FileNotFoundError`` or ``ConnectionRefusedError``, a ``BleakDBusError`` (``org.freedesktop.DBus.Error...``
    when BlueZ is not running) or ``BleakError("No Bluetooth adapters found.")``.
    """
    from bleak.exc import BleakDBusError, BleakError

    text = str(exc)
    missing = (
        isinstance(exc, FileNotFoundError | ConnectionRefusedError | BleakDBusError)
        or (isinstance(exc, BleakError) and "no bluetooth adapter" in text.lower())
        or "org.bluez" in text
        or "dbus" in text.lower()
    )
    if not missing:
        return None
    return TransportLostError(
        f"no Bluetooth adapter is available: the OS Bluetooth stack (BlueZ) cannot be reached "
        f"({type(exc).__name__}: {text or 'no detail'})",
        hint=NO_STACK_HINT,
    )


@dataclass(frozen=True)
class BleakClasses:
    """The ``backend=`` arguments for ``BleakScanner`` and ``BleakClient``; ``None`` means bleak's platform default."""

    scanner: type[BaseBleakScanner] | None
    client: type[BaseBleakClient] | None


class BleBackend(abc.ABC):
    """A way to reach a radio. Open it once per event loop; ``scan`` and ``BoardLink.connect`` open it lazily.

    It is an async context manager: ``async with backend:`` closes what it opened (an HCI transport) on exit.
    """

    #: Shown in logs and ``bridge --debug`` output.
    name: str = "ble"

    @abc.abstractmethod
    async def open(self) -> BleakClasses:
        """Make the radio usable (idempotent) and return the bleak backend classes to use with it."""

    async def aclose(self) -> None:
        """Release what :meth:`open` acquired. Idempotent; the default has nothing to release."""
        return None

    @property
    def is_virtual(self) -> bool:
        """True when the radio is simulated (no real over-the-air timing)."""
        return False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class OsBackend(BleBackend):
    """The operating system's Bluetooth stack, through bleak's platform backend."""

    name = "os"

    async def open(self) -> BleakClasses:
        return BleakClasses(scanner=None, client=None)


class HciBackend(BleBackend):
    """A controller on an HCI transport, driven by a Bumble host (needs the ``sim`` extra).

    Opening it opens the transport and powers the controller on; closing it powers off and closes the transport.
    """

    def __init__(self, spec: str, *, device_name: str = "ota-bridge") -> None:
        spec = spec.strip()
        scheme = spec.split(":", 1)[0]
        if scheme not in _HCI_SCHEMES:
            raise UsageError(
                f"unknown HCI transport {spec!r}",
                hint="Use e.g. --hci usb:0, --hci serial:/dev/ttyACM0,1000000 or --hci tcp-client:127.0.0.1:9100.",
            )
        self.spec = spec
        self.name = f"hci:{spec}"
        self._device_name = device_name
        self._inner: BleBackend | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> BleakClasses:
        async with self._lock:
            if self._inner is None:
                try:
                    from bridge.ble import bumble_backend
                except ImportError as exc:  # the optional extra is not installed
                    raise UsageError(
                        "driving a controller through --hci needs Bumble, which is not installed",
                        hint="Install the simulator extra: pip install 'ota-bridge[sim]'.",
                    ) from exc
                self._inner = await bumble_backend.open_hci_backend(self.spec, device_name=self._device_name)
            return await self._inner.open()

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.aclose()


def backend_from_hci(hci: str | None) -> BleBackend:
    """The backend for the global ``--hci`` option: the OS stack when ``hci`` is empty, else a Bumble HCI transport.

    Raises :class:`bridge.errors.UsageError` for a transport name Bumble does not know. The transport itself is
    opened later, inside the event loop, by the first scan or connect.
    """
    if hci is None or not hci.strip():
        return OsBackend()
    return HciBackend(hci)


def transport_error(spec: str, exc: BaseException) -> TransportError:
    """The error for an HCI transport that cannot be opened (no dongle, busy port, nothing listening)."""
    return TransportError(
        f"could not open the Bluetooth controller at {spec!r}: {exc}",
        hint=(
            "Check the dongle is plugged in and not used by the OS stack (Linux: `sudo hciconfig hci0 down`), "
            "or that `bridge sim` is running for a tcp-client transport."
        ),
    )
