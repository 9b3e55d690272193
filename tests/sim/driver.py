"""Bridge-side helpers for simulator tests: drive the protocol's bridge role over the product's ``BoardLink``.

The sync engine (``bridge.sync``) is the product's driver; these helpers are a small, explicit one so the
simulator's behaviour can be asserted step by step (each INFO, each BEGIN_OK offset, each error code).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bridge.ble import BoardLink
from bridge.errors import BoardTimeoutError, DisconnectedError
from bridge.image import inspect_image
from bridge.sim.world import VirtualWorld
from protocol import (
    DEFAULT_BRIDGE_FEATURES,
    Begin,
    BeginFlags,
    BeginOk,
    BridgeConnection,
    BridgeEvent,
    Commit,
    CommitOk,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Reboot,
    RebootOk,
)


class BoardRefused(Exception):
    """The board answered ERROR."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code.name}: {error.detail}")
        self.error = error


@dataclass
class Session:
    link: BoardLink
    conn: BridgeConnection
    info: Info
    ack_timeout_s: float = 0.5

    async def event(self) -> BridgeEvent:
        """The next protocol event; a silent board gets SYNCs (short test timeout), then the protocol gives up."""
        while True:
            event = self.conn.next_event()
            if event is not None:
                if isinstance(event, Error):
                    raise BoardRefused(event)
                return event
            timeout = min(self.conn.timeout_s or 5.0, self.ack_timeout_s)
            try:
                data = await self.link.recv_control(timeout_s=timeout)
            except BoardTimeoutError:
                for write in self.conn.handle_timeout():
                    await self.link.write_control(write)
                continue
            self.conn.receive_control(data)

    async def command(self, message: object) -> BridgeEvent:
        for write in self.conn.send(message):  # type: ignore[arg-type]
            await self.link.write_control(write)
        return await self.event()


async def open_session(link: BoardLink, *, ack_timeout_s: float = 0.5) -> Session:
    conn = BridgeConnection(max_write_bytes=link.max_write_bytes)
    for write in conn.send(Hello(features=DEFAULT_BRIDGE_FEATURES)):
        await link.write_control(write)
    session = Session(link, conn, info=None, ack_timeout_s=ack_timeout_s)  # type: ignore[arg-type]
    info = await session.event()
    assert isinstance(info, Info)
    session.info = info
    return session


def begin_for(image: bytes, *, restart: bool = False) -> Begin:
    parsed = inspect_image(image)
    return Begin(
        size=len(image),
        sha256=hashlib.sha256(image).digest(),
        secure_version=parsed.secure_version,
        version=parsed.version[:32],
        project=parsed.project[:32],
        flags=BeginFlags.RESTART if restart else BeginFlags.NONE,
    )


@dataclass
class PushResult:
    begin_offsets: list[int] = field(default_factory=list)
    reconnects: int = 0
    frames_sent: int = 0


async def send_image(session: Session, image: bytes, result: PushResult, *, restart: bool = False) -> None:
    """BEGIN (maybe resuming) and pump data until every byte is acked."""
    ok = await session.command(begin_for(image, restart=restart))
    assert isinstance(ok, BeginOk)
    result.begin_offsets.append(ok.offset)
    while not session.conn.transfer_complete:
        while (frame := session.conn.next_data_frame(image)) is not None:
            await session.link.write_data(frame)
            result.frames_sent += 1
        if not session.conn.transfer_complete:
            await session.event()


async def push(
    world: VirtualWorld,
    target: str,
    image: bytes,
    *,
    reboot: bool = True,
    max_reconnects: int = 3,
    ack_timeout_s: float = 0.5,
) -> PushResult:
    """The whole update: connect, HELLO, BEGIN, data (reconnect and resume on a drop), FINISH, COMMIT, REBOOT."""
    result = PushResult()
    while True:
        link = await BoardLink.connect(target, backend=world.backend, timeout_s=5)
        try:
            session = await open_session(link, ack_timeout_s=ack_timeout_s)
            await send_image(session, image, result)
            finished = await session.command(Finish())
            assert isinstance(finished, FinishOk)
            assert finished.sha256 == hashlib.sha256(image).digest()
            committed = await session.command(Commit())
            assert isinstance(committed, CommitOk)
            if reboot:
                rebooted = await session.command(Reboot())
                assert isinstance(rebooted, RebootOk)
                assert await link.wait_disconnected(timeout_s=5)
            return result
        except DisconnectedError:
            if result.reconnects >= max_reconnects:
                raise
            result.reconnects += 1
        finally:
            await link.close()


async def read_info(world: VirtualWorld, target: str) -> Info:
    """Connect, HELLO, return INFO, disconnect."""
    async with await BoardLink.connect(target, backend=world.backend, timeout_s=5) as link:
        session = await open_session(link)
        return session.info
