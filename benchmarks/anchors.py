"""The anchors: how today's protocols acknowledge, modelled on the same link and the same board.

Only what costs time is modelled: write sizes (headers included), who waits for what, and when the board may
answer (on RAM receipt or after flash). Facts: ``../shared/notes/espressif-ble-ota.md`` §1.3-1.6 and
``../shared/notes/peers-and-servers.md`` §1-2. Every anchor gets its most favourable bleak-side client: data
as write-without-response, the largest write the MTU allows (capped at 512 B), and the same board erase strategy
and host timings as our protocol.

* ``EspressifBleOta``: START command (write request, 20 B) -> command ACK; then 4 KB sectors, each cut into
  packets of ``min(512, MTU-3) - 3`` data bytes behind a 3-byte header (sector index u16, packet seq), the
  sector's CRC16 riding at the end of the last packet; the board ACKs (20 B) each sector once it is in its ring
  buffer; STOP -> ACK after the image is in flash. ``window_sectors=1`` is the stop-and-wait client (NimBLEOta's
  bleak script, Espressif's apps); ``window_sectors=3`` with a 12 KiB ring is the 2026 ``ble_ota_raw`` v0.2.0
  "sector send window" that Espressif's example advertises.
* ``SmpUpload``: MCUmgr image upload with one request in flight (smpclient): SMP header (8 B) + CBOR map
  {off, data[, len, sha]} split into write commands; the board (Zephyr img_mgmt) writes the chunk to flash before
  it answers {rc, off}.
* ``NordicDfu``: Secure DFU, 4 KB data objects: Create (write request) -> response; data packets of MTU-3; a
  receipt notification (PRN) every 12 packets that the sender waits for; Calculate Checksum -> CRC; Execute ->
  response after the object is in flash.
"""

from __future__ import annotations

from typing import NamedTuple

from benchmarks.board import BoardParams
from benchmarks.link import AttOp, AttPdu, Link
from benchmarks.session import Session

__all__ = ["EspressifBleOta", "NordicDfu", "SmpUpload"]

SECTOR = 4096


class _M(NamedTuple):
    """What a modelled PDU stands for: a kind and up to two numbers (sector, length, offset...)."""

    kind: str
    a: int = 0
    b: int = 0


def _meta(pdu: AttPdu) -> _M:
    assert isinstance(pdu.meta, _M), pdu.meta
    return pdu.meta


ESP_CMD_LEN = 20
ESP_ACK_LEN = 20
ESP_PACKET_HEADER = 3


class EspressifBleOta(Session):
    def __init__(
        self, link: Link, board: BoardParams, image: bytes, *, window_sectors: int = 1, ring_bytes: int = 8192
    ) -> None:
        if window_sectors < 1 or ring_bytes < SECTOR:
            raise ValueError("window_sectors >= 1 and ring_bytes >= 4096 required")
        super().__init__(link, board, image, ram_bytes=ring_bytes)
        self.window = window_sectors
        self.scheme = "espressif-ble-ota" if window_sectors == 1 else f"espressif-ble-ota-w{window_sectors}"
        self.n_sectors = -(-self.size // SECTOR)
        self.data_per_packet = link.params.max_write_len - ESP_PACKET_HEADER
        self.next_sector = 0
        self.acked = 0

    def start(self) -> None:
        self.link.write(AttPdu(AttOp.WRITE_REQ, "command", ESP_CMD_LEN, _M("START")))

    def _pump(self) -> None:
        while self.next_sector < self.n_sectors and self.next_sector - self.acked < self.window:
            s = self.next_sector
            sector_len = min(SECTOR, self.size - s * SECTOR)
            payload = sector_len + 2  # CRC16 of the sector after its data
            pos = 0
            while pos < payload:
                n = min(self.data_per_packet, payload - pos)
                pos += n
                last = pos == payload
                meta = _M("DATA", s, sector_len if last else 0)
                self.link.write(AttPdu(AttOp.WRITE_CMD, "recv_fw", ESP_PACKET_HEADER + n, meta))
            self.next_sector += 1
            self.note_in_flight((self.next_sector - self.acked) * SECTOR)

    def on_notify(self, pdu: AttPdu) -> None:
        kind = _meta(pdu).kind
        if kind == "ACK_START":
            self._pump()
        elif kind == "SECTOR_ACK":
            self.acked += 1
            if self.acked == self.n_sectors:
                self.link.write(AttPdu(AttOp.WRITE_REQ, "command", ESP_CMD_LEN, _M("STOP")))
            else:
                self._pump()
        elif kind == "ACK_STOP":
            self.finish()

    def accepts(self, pdu: AttPdu) -> bool:
        kind, _, sector_len = _meta(pdu)
        # The host task blocks on the ring buffer only when it hands over a complete sector.
        return not (kind == "DATA" and sector_len) or self.storage.free_bytes >= sector_len

    def on_write(self, pdu: AttPdu) -> None:
        kind, sector, sector_len = _meta(pdu)
        if kind == "START":
            self.storage.begin(self.size, lambda: self.link.notify("command", ESP_ACK_LEN, _M("ACK_START")))
        elif kind == "DATA" and sector_len:
            self.storage.write(sector_len)
            self.link.notify("recv_fw", ESP_ACK_LEN, _M("SECTOR_ACK", sector))
        elif kind == "STOP":
            self.storage.when_programmed(self.size, lambda: self.link.notify("command", ESP_ACK_LEN, _M("ACK_STOP")))


def _cbor_head_len(value: int) -> int:
    """Bytes of a CBOR head for an unsigned int or a byte-string length (RFC 8949 §3)."""
    if value < 24:
        return 1
    if value < 0x100:
        return 2
    if value < 0x10000:
        return 3
    return 5


SMP_HEADER = 8
SMP_RSP_LEN = SMP_HEADER + 1 + 3 + 1 + 4 + 5  # {"rc": 0, "off": u32}


class SmpUpload(Session):
    """One request in flight; ``buffer_bytes`` is the board's MCUmgr buffer the client fills each request to."""

    def __init__(self, link: Link, board: BoardParams, image: bytes, *, buffer_bytes: int = 512 + 30) -> None:
        super().__init__(link, board, image, ram_bytes=buffer_bytes)
        self.buffer_bytes = buffer_bytes
        self.scheme = "smp-1" if buffer_bytes < 1000 else f"smp-1-buf{buffer_bytes}"

    def _request_len(self, off: int, n: int) -> int:
        length = SMP_HEADER + 1 + 4 + _cbor_head_len(off) + 5 + _cbor_head_len(n) + n
        if off == 0:  # "len" and "sha" ride in the first request
            length += 4 + _cbor_head_len(self.size) + 4 + _cbor_head_len(32) + 32
        return length

    def _chunk_for(self, off: int) -> int:
        n = min(self.size - off, self.buffer_bytes)
        while n > 0 and self._request_len(off, n) > self.buffer_bytes:
            n -= 1
        return n

    def start(self) -> None:
        self._send(0)

    def _send(self, off: int) -> None:
        n = self._chunk_for(off)
        total = self._request_len(off, n)
        mw = self.link.params.max_write_len
        while total > 0:
            w = min(mw, total)
            total -= w
            meta = _M("END", off, n) if total == 0 else _M("FRAG", off)
            self.link.write(AttPdu(AttOp.WRITE_CMD, "smp", w, meta))
        self.note_in_flight(n)

    def on_notify(self, pdu: AttPdu) -> None:
        next_off = _meta(pdu).a
        if next_off >= self.size:
            self.finish()
        else:
            self._send(next_off)

    def accepts(self, pdu: AttPdu) -> bool:
        kind, _, n = _meta(pdu)
        return kind != "END" or self.storage.free_bytes >= n

    def on_write(self, pdu: AttPdu) -> None:
        kind, off, n = _meta(pdu)
        if kind != "END":
            return

        def store() -> None:
            self.storage.write(n)
            self.storage.when_programmed(off + n, lambda: self.link.notify("smp", SMP_RSP_LEN, _M("RSP", off + n)))

        if off == 0:
            self.storage.begin(self.size, store)
        else:
            store()


NORDIC_CREATE_LEN = 6  # op, type, size u32
NORDIC_SET_PRN_LEN = 3
NORDIC_SMALL_RSP = 3  # 0x60, op, result
NORDIC_CRC_RSP = 11  # 0x60, op, result, offset u32, crc u32 (also the PRN notification)


class NordicDfu(Session):
    def __init__(
        self, link: Link, board: BoardParams, image: bytes, *, prn: int = 12, object_bytes: int = SECTOR
    ) -> None:
        super().__init__(link, board, image, ram_bytes=object_bytes)
        self.prn = prn
        self.object_bytes = object_bytes
        self.scheme = f"nordic-dfu-prn{prn}"
        self.n_objects = -(-self.size // object_bytes)
        self.obj = 0
        self.obj_pos = 0  # bytes of the current object already written
        self.obj_packets = 0
        self.waiting_prn = False
        self.board_packets = 0

    def start(self) -> None:
        self.link.write(AttPdu(AttOp.WRITE_REQ, "cp", NORDIC_SET_PRN_LEN, _M("SET_PRN")))

    def _obj_len(self, i: int) -> int:
        return min(self.object_bytes, self.size - i * self.object_bytes)

    def _create(self) -> None:
        self.obj_pos = 0
        self.obj_packets = 0
        self.link.write(AttPdu(AttOp.WRITE_REQ, "cp", NORDIC_CREATE_LEN, _M("CREATE", self.obj)))

    def _send_packets(self) -> None:
        obj_len = self._obj_len(self.obj)
        mw = self.link.params.max_write_len
        while self.obj_pos < obj_len:
            n = min(mw, obj_len - self.obj_pos)
            self.obj_pos += n
            self.obj_packets += 1
            self.link.write(AttPdu(AttOp.WRITE_CMD, "packet", n, _M("DATA", n)))
            self.note_in_flight(self.obj_packets * mw)
            if self.obj_packets % self.prn == 0 and self.obj_pos < obj_len:
                self.waiting_prn = True
                return
        self.link.write(AttPdu(AttOp.WRITE_REQ, "cp", 1, _M("CALC", self.obj)))

    def on_notify(self, pdu: AttPdu) -> None:
        kind = _meta(pdu).kind
        if kind == "PRN_SET":
            self._create()
        elif kind == "CREATED":
            self._send_packets()
        elif kind == "PRN":
            if self.waiting_prn:
                self.waiting_prn = False
                self._send_packets()
        elif kind == "CRC":
            self.link.write(AttPdu(AttOp.WRITE_REQ, "cp", 1, _M("EXECUTE", self.obj)))
        elif kind == "EXECUTED":
            self.obj += 1
            if self.obj == self.n_objects:
                self.finish()
            else:
                self._create()

    def accepts(self, pdu: AttPdu) -> bool:
        kind, n, _ = _meta(pdu)
        return kind != "DATA" or self.storage.free_bytes >= n

    def on_write(self, pdu: AttPdu) -> None:
        kind, arg, _ = _meta(pdu)
        if kind == "SET_PRN":
            self.link.notify("cp", NORDIC_SMALL_RSP, _M("PRN_SET"))
        elif kind == "CREATE":
            self.board_packets = 0
            if arg == 0:
                self.storage.begin(self.size, lambda: self.link.notify("cp", NORDIC_SMALL_RSP, _M("CREATED")))
            else:
                self.link.notify("cp", NORDIC_SMALL_RSP, _M("CREATED", arg))
        elif kind == "DATA":
            self.storage.write(arg)
            self.board_packets += 1
            if self.board_packets % self.prn == 0:
                self.link.notify("packet", NORDIC_CRC_RSP, _M("PRN"))
        elif kind == "CALC":
            self.link.notify("cp", NORDIC_CRC_RSP, _M("CRC", arg))
        elif kind == "EXECUTE":
            end = min(self.size, (arg + 1) * self.object_bytes)
            self.storage.when_programmed(end, lambda: self.link.notify("cp", NORDIC_SMALL_RSP, _M("EXECUTED", arg)))
