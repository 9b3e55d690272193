"""A virtual radio world: Bumble controllers on one ``LocalLink``, in this process.

The world owns one central (a Bumble host the bridge drives through :attr:`VirtualWorld.backend`, i.e. the product's
bleak code over :mod:`bridge.ble.bumble_backend`) and any number of peripherals (simulated boards). It can also
expose a controller on an HCI transport (:meth:`VirtualWorld.expose_hci`) so a *second process* reaches the boards
with ``bridge --hci tcp-client:HOST:PORT ...``.

Fidelity: ``LocalLink`` delivers packets with ``loop.call_soon`` and returns ACL credits at once; there is no radio
timing, PHY or data length. Controllers here use 251-byte LE ACL buffers (as after a DLE update), so L2CAP PDUs are
fragmented like on a real link. Never call ``set_phy``/``set_data_length`` on them (Bumble does not implement them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bumble import hci, ll
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, ParserSource

from bridge.ble.bumble_backend import BumbleBackend

if TYPE_CHECKING:
    from bridge.sim.board import SimulatedBoard
    from bridge.sim.config import SimBoardConfig

__all__ = ["VirtualWorld"]

logger = logging.getLogger(__name__)

#: LE ACL buffer size of every virtual controller: a link after a data length update to 251 octets.
ACL_PACKET_BYTES = 251

_CENTRAL_ADDRESS = "F0:0D:00:00:00:01"


class _Controller(Controller):
    """Bumble's virtual controller with two gaps filled.

    * HCI_Reset drops the controller's links: Bumble's ignores it, so a host process that died without
      disconnecting would leave the board believing it is still connected (and not advertising) forever.
    * LE Create Connection Cancel ends the pending attempt with a Connection Complete event carrying
      UNKNOWN_CONNECTION_IDENTIFIER (Core Vol 4 Part E 7.8.13): Bumble's keeps it pending, so every later
      connect fails with COMMAND_DISALLOWED after one attempt to an absent board timed out.
    """

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # The event follows the command's own Command Complete.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def on_hci_reset_command(self, command: hci.HCI_Reset_Command) -> hci.HCI_StatusReturnParameters:
        for peer_address, connection in list(self.le_connections.items()):
            logger.debug("[%s] reset: dropping the link to %s", self.name, peer_address)
            # Tell the peer (LL_TERMINATE_IND); the resetting host expects no events about the old link.
            with contextlib.suppress(Exception):
                connection.send_ll_control_pdu(ll.TerminateInd(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))
            self.le_connections.pop(peer_address, None)
        self.pending_le_connection = None
        return super().on_hci_reset_command(command)


class _HciTcpServer:
    """HCI over TCP for one host at a time, the controller's side.

    Bumble's ``tcp-server`` transport shares one sink between connections, so the late ``connection_lost`` of a
    host that just went away clears the sink of the host that replaced it, and the new host's HCI_Reset never
    gets an answer. Here each connection is tracked: a new host replaces the old one, and the parser starts clean.
    """

    def __init__(self) -> None:
        self.source = ParserSource()
        self.server: asyncio.AbstractServer | None = None
        self._transport: asyncio.BaseTransport | None = None

    def on_packet(self, packet: bytes) -> None:
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(packet)

    async def listen(self, sock: socket.socket) -> None:
        server = self

        class _Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                old, server._transport = server._transport, transport
                if old is not None:
                    old.close()
                server.source.parser.reset()
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if server._transport is self.transport:
                    server.source.parser.feed_data(data)

            def connection_lost(self, exc: Exception | None) -> None:
                if server._transport is self.transport:
                    server._transport = None

        self.server = await asyncio.get_running_loop().create_server(_Connection, sock=sock)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


class VirtualWorld:
    """Bumble ``LocalLink`` + virtual controllers; an async context manager.

    ``async with VirtualWorld() as world:`` then ``board = await world.add_board(SimBoardConfig(...))`` and use
    ``world.backend`` wherever the bridge takes a :class:`bridge.ble.BleBackend`.
    """

    def __init__(self, *, acl_packet_bytes: int = ACL_PACKET_BYTES) -> None:
        if not 27 <= acl_packet_bytes <= 251:
            raise ValueError(f"acl_packet_bytes must be 27..251 (LE data length), got {acl_packet_bytes}")
        self.acl_packet_bytes = acl_packet_bytes
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self.boards: list[SimulatedBoard] = []
        self._central: Device | None = None
        self._backend: BumbleBackend | None = None
        self._controllers: list[Controller] = []
        self._servers: list[_HciTcpServer] = []
        # Empty; kept because tests/cli/test_e2e_sync.py closed Bumble's TCP listeners through it. close() does it now.
        self._transports: list[object] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._address_counter = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Power on the central. Idempotent."""
        if self._central is not None:
            return
        self._central = await self.new_device("bridge-central", hci.Address(_CENTRAL_ADDRESS))
        self._backend = BumbleBackend(self._central, name="virtual", virtual=True)

    async def close(self) -> None:
        """Stop every board and close exposed transports."""
        for board in reversed(self.boards):
            with contextlib.suppress(Exception):
                await board.close()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()
        for server in self._servers:
            await server.close()
        self._closers.clear()
        self._servers.clear()
        self.boards.clear()

    # -- parts ----------------------------------------------------------------------------------------------------

    @property
    def backend(self) -> BumbleBackend:
        """The bridge's way into this world (a :class:`bridge.ble.BleBackend`)."""
        if self._backend is None:
            raise RuntimeError("the VirtualWorld is not started: use `async with VirtualWorld() as world:`")
        return self._backend

    @property
    def central(self) -> Device:
        if self._central is None:
            raise RuntimeError("the VirtualWorld is not started")
        return self._central

    def new_controller(self, name: str) -> Controller:
        """A virtual controller on this world's link (251-byte ACL buffers)."""
        controller = _Controller(name, link=self.link)
        controller.le_acl_data_packet_length = self.acl_packet_bytes
        self._controllers.append(controller)
        return controller

    async def new_device(self, name: str, address: hci.Address | None = None) -> Device:
        """A powered-on Bumble device on a fresh controller of this world."""
        controller = self.new_controller(name)
        device = Device(
            name=name, address=address or self.next_address(), host=Host(controller, AsyncPipeSink(controller))
        )
        await device.power_on()
        return device

    def next_address(self) -> hci.Address:
        """A fresh random static address (top two bits set) for a peripheral."""
        index = next(self._address_counter)
        return hci.Address(f"C0:0A:7A:00:{index >> 8:02X}:{index & 0xFF:02X}")

    async def add_board(self, config: SimBoardConfig | None = None) -> SimulatedBoard:
        """Create, boot and start advertising a simulated ESP32 board on this world."""
        from bridge.sim.board import SimulatedBoard
        from bridge.sim.config import SimBoardConfig

        board = SimulatedBoard(self, config or SimBoardConfig())
        self.boards.append(board)
        await board.start()
        return board

    async def expose_hci(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Add a controller reachable over HCI-on-TCP for a host in another process.

        Returns ``(host, port)``; the other process uses ``--hci tcp-client:HOST:PORT``. One host at a time is
        connected; when it goes away (or resets the controller) its links are dropped and boards advertise again.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_host, bound_port = sock.getsockname()[:2]
        server = _HciTcpServer()
        await server.listen(sock)
        self._servers.append(server)
        controller = _Controller(f"hci-tcp-{bound_port}", host_source=server.source, host_sink=server, link=self.link)
        controller.le_acl_data_packet_length = self.acl_packet_bytes
        self._controllers.append(controller)
        logger.info("virtual controller exposed on tcp-server:%s:%d", bound_host, bound_port)
        return str(bound_host), int(bound_port)

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the world closes (used by boards and tools built on it)."""
        self._closers.append(closer)

    async def settle(self, rounds: int = 5) -> None:
        """Let queued link deliveries run (``LocalLink`` schedules with ``call_soon``)."""
        for _ in range(rounds):
            await asyncio.sleep(0)
