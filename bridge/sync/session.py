"""One conversation with one board: a :class:`bridge.ble.BoardLink` driven by :class:`protocol.BridgeConnection`.

The protocol object decides what to write and what the board's notifications mean; this class does the I/O and
the waiting. Every wait goes through ``BoardLink.recv_control``, which races the notification queue against the
disconnect callback and a timeout, so a dropped link raises :class:`DisconnectedError` and a silent board
:class:`BoardTimeoutError`; neither can hang the engine. The board's ERROR replies become
:class:`BoardRejectedError` with the wire code; protocol violations become :class:`ProtocolViolationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TypeVar

from bridge.ble import BleBackend, BoardAdvert, BoardLink
from bridge.config import BridgeConfig
from bridge.errors import (
    BoardRejectedError,
    BoardTimeoutError,
    DisconnectedError,
    ProtocolViolationError,
    TransportError,
)
from bridge.sync.image_file import ImageReader
from protocol.connection import DEFAULT_BRIDGE_FEATURES, BridgeConnection
from protocol.constants import (
    DATA_FRAME_OVERHEAD_BYTES,
    ERROR_RECOVERY,
    BeginFlags,
    ErrorCode,
    begin_timeout_s,
    finish_timeout_s,
)
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.messages import (
    Abort,
    Ack,
    Begin,
    BeginOk,
    Commit,
    CommitOk,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Nack,
    Reboot,
    RebootOk,
    UpdateRequest,
)

__all__ = ["BoardSession", "board_error"]

logger = logging.getLogger(__name__)

E = TypeVar("E")

#: What to do when the conversation with the board broke down (its firmware, or ours, left the protocol).
PROTOCOL_HINT = (
    "Run the command again (the board keeps its firmware); if it happens again, the board's OTA firmware does not "
    "follow the protocol: report it with the output of `bridge --debug`."
)


def board_error(error: Error, doing: str) -> BoardRejectedError:
    """The exception for an ERROR the board sent while ``doing`` something."""
    _recovery, meaning = ERROR_RECOVERY.get(error.code, (None, ""))
    detail = f" ({error.detail})" if error.detail else ""
    hint = meaning
    if error.retry_after_s:
        hint += f" Try again in {error.retry_after_s} s."
    return BoardRejectedError(
        f"the board refused {doing}: {error.code.name.lower()}{detail}", code=int(error.code), hint=hint or None
    )


class BoardSession:
    """A connected board after HELLO/INFO. Open with :meth:`open`; close with :meth:`close` (idempotent)."""

    def __init__(self, link: BoardLink, connection: BridgeConnection, config: BridgeConfig) -> None:
        self.link = link
        self.connection = connection
        self.config = config
        self.bytes_sent = 0
        """Image payload bytes written on this link (retransmissions included)."""

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: BoardAdvert | str,
        *,
        backend: BleBackend,
        config: BridgeConfig,
        retries: int | None = None,
    ) -> BoardSession:
        """Connect to ``target`` and exchange HELLO/INFO."""
        link = await BoardLink.connect(
            target,
            backend=backend,
            timeout_s=config.connect_timeout_s,
            retries=config.connect_retries if retries is None else retries,
            scan_timeout_s=config.scan_timeout_s,
        )
        try:
            session = cls(link, BridgeConnection(max_write_bytes=link.max_write_bytes), config)
            await session.hello()
        except BaseException:
            await link.close()
            raise
        return session

    @property
    def address(self) -> str:
        return self.link.address

    @property
    def label(self) -> str:
        return self.link.label

    @property
    def info(self) -> Info:
        info = self.connection.info
        if info is None:
            raise RuntimeError("no INFO yet: call hello() first")
        return info

    @property
    def is_connected(self) -> bool:
        return self.link.is_connected

    # -- plumbing -----------------------------------------------------------------------------------------

    async def _write(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            await self.link.write_control(datagram, timeout_s=self.config.reply_timeout_s)

    def _send(self, message: Hello | Begin | Finish | Commit | Reboot | Abort) -> list[bytes]:
        try:
            return self.connection.send(message)
        except LocalProtocolError as exc:  # our own bug or a state mix-up: never leak protocol types
            raise ProtocolViolationError(
                f"cannot send {type(message).__name__.upper()} now: {exc.message}", hint=PROTOCOL_HINT
            ) from exc

    async def _next_event(self, timeout_s: float) -> object:
        """The next protocol event, reading notifications as needed (raced against disconnect and timeout)."""
        while True:
            try:
                event = self.connection.next_event()
            except ProtocolError as exc:
                raise ProtocolViolationError(
                    f"{self.label} broke the protocol: {exc.message}", hint=PROTOCOL_HINT
                ) from exc
            if isinstance(event, UpdateRequest):
                continue  # the board asks for an update while we are already driving one
            if event is not None:
                return event
            data = await self.link.recv_control(timeout_s)
            self.connection.receive_control(data)

    async def _request(self, message: Hello | Begin | Finish | Commit | Reboot, reply: type[E], timeout_s: float) -> E:
        await self._write(self._send(message))
        doing = type(message).__name__.upper()
        while True:
            event = await self._next_event(timeout_s)
            if isinstance(event, reply):
                return event
            if isinstance(event, Error):
                raise board_error(event, doing)
            logger.debug("%s: ignoring %r while waiting for %s", self.label, event, reply.__name__)

    # -- commands -----------------------------------------------------------------------------------------

    async def hello(self) -> Info:
        """HELLO -> INFO (also valid later, to re-read the board's state)."""
        return await self._request(Hello(features=DEFAULT_BRIDGE_FEATURES), Info, self.config.reply_timeout_s)

    async def begin(
        self,
        *,
        size: int,
        sha256: bytes,
        version: str,
        project: str,
        secure_version: int,
        restart: bool = False,
    ) -> BeginOk:
        """BEGIN -> BEGIN_OK(offset, window). The offset is > 0 when the board resumes a partial transfer."""
        message = Begin(
            size=size,
            sha256=sha256,
            secure_version=secure_version,
            flags=BeginFlags.RESTART if restart else BeginFlags.NONE,
            version=version[:32],
            project=project[:32],
        )
        timeout_s = max(self.config.begin_timeout_s, begin_timeout_s(size))
        return await self._request(message, BeginOk, timeout_s)

    async def upload(self, reader: ImageReader) -> AsyncGenerator[int, None]:
        """Send data frames within the window; yield each new acknowledged offset until the board has it all.

        Memory: one frame at a time, read from ``reader`` near the send cursor. The window is the smaller of the
        board's grant and ``config.max_window_bytes``.
        """
        connection = self.connection
        while not connection.transfer_complete:
            while (frame := connection.next_data_frame(reader.read)) is not None:
                await self.link.write_data(frame, timeout_s=self.config.ack_timeout_s)
                self.bytes_sent += len(frame) - DATA_FRAME_OVERHEAD_BYTES
                if self._window_exceeded():
                    break
                # Let notifications that already arrived move the window before the next write.
                while self.link.pending_notifications():
                    self.connection.receive_control(await self.link.recv_control(self.config.ack_timeout_s))
                    acked = self._drain_acks()
                    if acked is not None:
                        yield acked
            if connection.transfer_complete:
                break
            try:
                event = await self._next_event(self.config.ack_timeout_s)
            except BoardTimeoutError:
                try:
                    await self._write(connection.handle_timeout())  # SYNC: the board answers with its offset
                except ProtocolError as exc:
                    raise BoardTimeoutError(
                        f"{self.label} stopped acknowledging data at byte {connection.acked_offset:,}"
                    ) from exc
                continue
            if isinstance(event, Ack):
                yield event.next_offset
            elif isinstance(event, Error):
                raise board_error(event, "image data")
            elif isinstance(event, Nack):
                logger.debug("%s: NACK %d (%s)", self.label, event.next_offset, event.reason.name)

    def _window_exceeded(self) -> bool:
        """Our own cap on data in flight, below the board's grant when the grant is larger."""
        in_flight = self.connection.send_offset - self.connection.acked_offset
        return in_flight >= self.config.max_window_bytes

    def _drain_acks(self) -> int | None:
        """Consume queued events without waiting; the newest ACK offset, or None."""
        newest: int | None = None
        while True:
            try:
                event = self.connection.next_event()
            except ProtocolError as exc:
                raise ProtocolViolationError(
                    f"{self.label} broke the protocol: {exc.message}", hint=PROTOCOL_HINT
                ) from exc
            if event is None:
                return newest
            if isinstance(event, Ack):
                newest = event.next_offset
            elif isinstance(event, Error):
                raise board_error(event, "image data")

    async def finish(self) -> FinishOk:
        """FINISH -> FINISH_OK: the board checked the SHA-256 and the ESP32 image it wrote."""
        size = self.connection.image_size
        timeout_s = max(self.config.finish_timeout_s, finish_timeout_s(size))
        return await self._request(Finish(), FinishOk, timeout_s)

    async def commit(self) -> CommitOk:
        """COMMIT -> COMMIT_OK: the new image is the boot partition (it runs after the reboot)."""
        return await self._request(Commit(), CommitOk, self.config.reply_timeout_s)

    async def reboot(self) -> RebootOk:
        """REBOOT -> REBOOT_OK; the board restarts ``delay_ms`` later and the link drops."""
        return await self._request(Reboot(), RebootOk, self.config.reply_timeout_s)

    async def abort(self, reason: ErrorCode = ErrorCode.CANCELLED) -> bool:
        """Best effort: tell the board to drop the transfer, within ``abort_timeout_s``. True if written."""
        if not self.link.is_connected:
            return False
        try:
            datagrams = self.connection.send(Abort(reason=reason))
        except ProtocolError:
            return False
        try:
            async with asyncio.timeout(self.config.abort_timeout_s):
                for datagram in datagrams:
                    await self.link.write_control(datagram, timeout_s=self.config.abort_timeout_s)
        except (TransportError, TimeoutError) as exc:
            logger.info("%s: ABORT not delivered: %s", self.label, exc)
            return False
        logger.info("%s: told the board to abort (%s)", self.label, reason.name)
        return True

    async def wait_disconnected(self, timeout_s: float) -> bool:
        return await self.link.wait_disconnected(timeout_s)

    async def close(self) -> None:
        with contextlib.suppress(TransportError, DisconnectedError):
            await self.link.close()
