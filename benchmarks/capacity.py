"""Link capacity ``C_link``: the same simulator with an infinite backlog of write commands, no app acks, no flash.

The board consumes every PDU at once (no processing time, unlimited buffers), so what remains is the radio (packet
times, T_IFS, per-event cap, event length, LL fragmentation), the central host (write latency, controller queue)
and the loss pattern. Capacity is measured over whole connection events and is the best over the write lengths a
sender could pick: ``MTU - 3`` (capped at 512 B) and every length that fills whole LL PDUs (``k * DLE - 7``).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.clock import VirtualClock
from benchmarks.link import AttOp, AttPdu, Link, LinkParams, aligned_write_lengths

__all__ = ["Capacity", "link_capacity", "write_capacity"]


class _Backlog:
    def __init__(self, link: Link, write_len: int) -> None:
        self.link = link
        self.write_len = write_len
        self.delivered = 0
        link.central_app = self
        link.board_app = self
        for _ in range(link.params.controller_queue_writes + 4):
            self._send()

    def _send(self) -> None:
        self.link.write(AttPdu(AttOp.WRITE_CMD, "data", self.write_len))

    def on_notify(self, pdu: AttPdu) -> None:
        return None

    def on_write_rsp(self, request: AttPdu) -> None:
        return None

    def accepts(self, pdu: AttPdu) -> bool:
        return True

    def on_write(self, pdu: AttPdu) -> None:
        self.delivered += pdu.value_len
        self._send()


def write_capacity(params: LinkParams, write_len: int, *, events: int = 200) -> float:
    """Bytes of write value per second with an infinite backlog of ``write_len``-byte write commands."""
    clock = VirtualClock()
    link = Link(clock, params, board_proc_us=0, board_acl_buffers=1 << 30)
    backlog = _Backlog(link, write_len)
    end_us = events * params.conn_interval_us
    link.run(lambda: clock.now_us >= end_us, limit_us=end_us + params.conn_interval_us)
    return backlog.delivered * 1e6 / end_us


@dataclass(frozen=True)
class Capacity:
    bytes_per_s: float
    write_len: int
    by_write_len: dict[int, float]


def link_capacity(params: LinkParams, *, events: int = 200) -> Capacity:
    candidates = sorted({params.max_write_len, *aligned_write_lengths(params.att_mtu, params.ll_payload_max)})
    by_len = {n: write_capacity(params, n, events=events) for n in candidates}
    best = max(by_len, key=lambda n: (by_len[n], n))
    return Capacity(by_len[best], best, by_len)
